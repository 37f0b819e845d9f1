-- A run's owner holds a lease: the time until which its runner has promised to be alive,
-- renewed while it runs. An owner on another machine cannot be checked by pid; once its
-- lease has run out, any process may mark the run interrupted. NULL: a run recorded
-- before leases (its owner is checked by pid, as then).
ALTER TABLE runs ADD COLUMN lease_expires_at REAL;
