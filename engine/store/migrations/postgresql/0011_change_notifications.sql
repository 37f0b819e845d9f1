-- Change notifications: every write to a run or its jobs notifies channel `cicd_runs` with
-- the run id, every write to a deployment or its events `cicd_deployments` with the
-- deployment id, so a waiter in any process wakes when something changed instead of
-- polling the tables (engine.store.notify). NOTIFY is delivered at commit and folds
-- repeats of one (channel, payload) within a transaction into one.
CREATE FUNCTION cicd_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    subject TEXT;
BEGIN
    IF TG_TABLE_NAME IN ('runs', 'jobs') THEN
        IF TG_OP = 'DELETE' THEN subject := OLD.run_id; ELSE subject := NEW.run_id; END IF;
        PERFORM pg_notify('cicd_runs', subject);
    ELSE
        IF TG_OP = 'DELETE' THEN subject := OLD.deployment_id; ELSE subject := NEW.deployment_id; END IF;
        PERFORM pg_notify('cicd_deployments', subject);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER runs_notify AFTER INSERT OR UPDATE OR DELETE ON runs
    FOR EACH ROW EXECUTE FUNCTION cicd_notify_change();
CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OR DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION cicd_notify_change();
CREATE TRIGGER deployments_notify AFTER INSERT OR UPDATE OR DELETE ON deployments
    FOR EACH ROW EXECUTE FUNCTION cicd_notify_change();
CREATE TRIGGER deployment_events_notify AFTER INSERT ON deployment_events
    FOR EACH ROW EXECUTE FUNCTION cicd_notify_change();
