-- A run's owner holds a lease (mirrors sqlite/0010_run_lease.sql).
ALTER TABLE runs ADD COLUMN lease_expires_at DOUBLE PRECISION;
