-- Jobs run on a named executor and keep its recovery record; jobs are listed by `seq`
-- (mirrors sqlite/0008_job_executor.sql; there is no rowid to number old rows by, and a
-- PostgreSQL store never held rows before this migration).
ALTER TABLE jobs ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN executor TEXT;
ALTER TABLE jobs ADD COLUMN recovery_json TEXT;
ALTER TABLE jobs DROP COLUMN pgid;
CREATE INDEX runs_by_created ON runs (created_at);
