-- One change at a time per environment, across deployments and rollbacks. Each already had its
-- own lock (a unique partial index on the active rows); these triggers make each respect the
-- other's, in the same write that takes the lock, so two processes cannot both get in.
-- RAISE(ABORT) surfaces as a constraint error, which the engine reports as "environment busy".
CREATE TRIGGER deployment_waits_for_rollback
BEFORE UPDATE OF status ON deployments
WHEN NEW.status = 'in_progress' AND OLD.status = 'planned'
 AND EXISTS (SELECT 1 FROM rollback_executions WHERE environment = NEW.environment AND status = 'running')
BEGIN
    SELECT RAISE(ABORT, 'environment busy: a rollback is running');
END;

CREATE TRIGGER rollback_waits_for_deployment_insert
BEFORE INSERT ON rollback_executions
WHEN NEW.status = 'running'
 AND EXISTS (SELECT 1 FROM deployments WHERE environment = NEW.environment
             AND status IN ('in_progress', 'rolling_back'))
BEGIN
    SELECT RAISE(ABORT, 'environment busy: a deployment is in progress');
END;

CREATE TRIGGER rollback_waits_for_deployment_update
BEFORE UPDATE OF status ON rollback_executions
WHEN NEW.status = 'running' AND OLD.status <> 'running'
 AND EXISTS (SELECT 1 FROM deployments WHERE environment = NEW.environment
             AND status IN ('in_progress', 'rolling_back'))
BEGIN
    SELECT RAISE(ABORT, 'environment busy: a deployment is in progress');
END;
