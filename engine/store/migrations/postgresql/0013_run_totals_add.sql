-- A job that starts, or finishes, only adds to its run's totals (mirrors
-- sqlite/0013_run_totals_add.sql; see there for the reasoning): the trigger function is
-- replaced by one whose update branch adds in those two cases and re-aggregates otherwise.

CREATE OR REPLACE FUNCTION insights_jobs_roll() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Most writes of a running job change nothing the roll-ups count (its executor, recovery
    -- record, ready time): taking the old contribution out and putting it back is a no-op.
    IF TG_OP = 'UPDATE' AND (OLD.run_id, OLD.pipeline, OLD.name, OLD.started_at, OLD.status, OLD.attempts,
                             OLD.duration, OLD.cpu_user, OLD.cpu_system, OLD.peak_rss_kb, OLD.queue_wait)
            IS NOT DISTINCT FROM (NEW.run_id, NEW.pipeline, NEW.name, NEW.started_at, NEW.status, NEW.attempts,
                                  NEW.duration, NEW.cpu_user, NEW.cpu_system, NEW.peak_rss_kb, NEW.queue_wait) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_advisory_xact_lock(hashtext('cicd-run:' || OLD.run_id));
    ELSE
        PERFORM pg_advisory_xact_lock(hashtext('cicd-run:' || NEW.run_id));
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM insights_job_hour_add(OLD, -1);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM insights_job_hour_add(NEW, 1);
    END IF;
    IF TG_OP = 'INSERT' AND NEW.started_at IS NULL THEN
        NULL;   -- a job not started counts in no totals
    ELSIF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.started_at IS NOT NULL AND OLD.run_id = NEW.run_id
          AND OLD.pipeline = NEW.pipeline
          AND (OLD.started_at IS NULL OR (OLD.started_at = NEW.started_at
                                          AND OLD.cpu_user + OLD.cpu_system IS NULL AND OLD.peak_rss_kb IS NULL))) THEN
        -- An insert, a job that starts, or one that finishes (usage set on a row that counted none)
        -- only adds: no need to read the run's other jobs.
        INSERT INTO insights_run_totals AS t VALUES (
            NEW.run_id, NEW.pipeline, NEW.started_at, NEW.cpu_user + NEW.cpu_system, NEW.peak_rss_kb / 1024.0)
        ON CONFLICT (run_id) DO UPDATE SET
            started_at = LEAST(t.started_at, excluded.started_at),
            cpu_seconds = CASE WHEN t.cpu_seconds IS NULL THEN excluded.cpu_seconds
                               ELSE t.cpu_seconds + COALESCE(excluded.cpu_seconds, 0) END,
            peak_rss_mb = CASE WHEN t.peak_rss_mb IS NULL THEN excluded.peak_rss_mb
                               ELSE GREATEST(t.peak_rss_mb, COALESCE(excluded.peak_rss_mb, t.peak_rss_mb)) END;
    ELSIF TG_OP = 'UPDATE' THEN
        IF (NEW.started_at IS NOT NULL OR OLD.started_at IS NOT NULL)
           AND (OLD.started_at, OLD.cpu_user, OLD.cpu_system, OLD.peak_rss_kb)
               IS DISTINCT FROM (NEW.started_at, NEW.cpu_user, NEW.cpu_system, NEW.peak_rss_kb) THEN
            PERFORM insights_run_totals_recompute(NEW.run_id, NEW.pipeline);
        END IF;
    ELSIF OLD.started_at IS NOT NULL THEN
        PERFORM insights_run_totals_recompute(OLD.run_id, OLD.pipeline);
    END IF;
    RETURN NULL;
END $$;
