-- An explicit insertion order for the tables read "newest first" with ties on a timestamp
-- (deployments by name, a deployment's rollback plans, a plan's executions): queries order by
-- `seq` instead of SQLite's rowid, which another dialect does not have (there: an identity column).
ALTER TABLE deployments ADD COLUMN seq INTEGER;
UPDATE deployments SET seq = rowid;
CREATE TRIGGER deployments_seq AFTER INSERT ON deployments WHEN NEW.seq IS NULL
BEGIN
    UPDATE deployments SET seq = NEW.rowid WHERE rowid = NEW.rowid;
END;

ALTER TABLE rollback_plans ADD COLUMN seq INTEGER;
UPDATE rollback_plans SET seq = rowid;
CREATE TRIGGER rollback_plans_seq AFTER INSERT ON rollback_plans WHEN NEW.seq IS NULL
BEGIN
    UPDATE rollback_plans SET seq = NEW.rowid WHERE rowid = NEW.rowid;
END;

ALTER TABLE rollback_executions ADD COLUMN seq INTEGER;
UPDATE rollback_executions SET seq = rowid;
CREATE TRIGGER rollback_executions_seq AFTER INSERT ON rollback_executions WHEN NEW.seq IS NULL
BEGIN
    UPDATE rollback_executions SET seq = NEW.rowid WHERE rowid = NEW.rowid;
END;
