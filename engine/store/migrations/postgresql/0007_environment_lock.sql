-- One change at a time per environment, across deployments and rollbacks (mirrors
-- sqlite/0007_environment_lock.sql). SQLite has one writer at a time, so a trigger's
-- check and the write that takes the lock cannot interleave with another process's; here
-- they can (READ COMMITTED), so each check first takes a transaction-scoped advisory lock
-- on the environment: the second writer waits for the first to commit, and its check
-- (a fresh snapshot per statement) then sees the first one's row. The error is a
-- constraint violation (SQLSTATE 23000), which the store reports as a conflict.
CREATE FUNCTION deployment_waits_for_rollback() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('cicd-environment:' || NEW.environment));
    IF EXISTS (SELECT 1 FROM rollback_executions WHERE environment = NEW.environment AND status = 'running') THEN
        RAISE EXCEPTION 'environment busy: a rollback is running' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER deployment_waits_for_rollback
BEFORE UPDATE OF status ON deployments
FOR EACH ROW WHEN (NEW.status = 'in_progress' AND OLD.status = 'planned')
EXECUTE FUNCTION deployment_waits_for_rollback();

CREATE FUNCTION rollback_waits_for_deployment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('cicd-environment:' || NEW.environment));
    IF EXISTS (SELECT 1 FROM deployments WHERE environment = NEW.environment
               AND status IN ('in_progress', 'rolling_back')) THEN
        RAISE EXCEPTION 'environment busy: a deployment is in progress'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER rollback_waits_for_deployment_insert
BEFORE INSERT ON rollback_executions
FOR EACH ROW WHEN (NEW.status = 'running')
EXECUTE FUNCTION rollback_waits_for_deployment();

CREATE TRIGGER rollback_waits_for_deployment_update
BEFORE UPDATE OF status ON rollback_executions
FOR EACH ROW WHEN (NEW.status = 'running' AND OLD.status <> 'running')
EXECUTE FUNCTION rollback_waits_for_deployment();
