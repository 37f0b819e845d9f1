-- Insights: roll-ups kept by triggers, and ordered indexes for exact percentiles
-- (mirrors sqlite/0003_insights.sql; see there for the reasoning). The triggers are one
-- PL/pgSQL function: an update takes the old row's contribution out and puts the new
-- row's in, an insert only adds, a delete only takes out. SQLite's CAST(x / 3600 AS
-- INTEGER) truncates; PostgreSQL's rounds, so the hour is floor(x / 3600) here.

CREATE TABLE insights_job_hours (
    pipeline        TEXT NOT NULL,
    name            TEXT NOT NULL,
    hour            BIGINT NOT NULL,
    started         BIGINT NOT NULL DEFAULT 0,
    succeeded       BIGINT NOT NULL DEFAULT 0,
    failed          BIGINT NOT NULL DEFAULT 0,
    passed_on_retry BIGINT NOT NULL DEFAULT 0,
    dur_n           BIGINT NOT NULL DEFAULT 0,
    dur_sum         DOUBLE PRECISION NOT NULL DEFAULT 0,
    dur_sq          DOUBLE PRECISION NOT NULL DEFAULT 0,
    cpu_n           BIGINT NOT NULL DEFAULT 0,
    cpu_sum         DOUBLE PRECISION NOT NULL DEFAULT 0,
    cpu_sq          DOUBLE PRECISION NOT NULL DEFAULT 0,
    mem_n           BIGINT NOT NULL DEFAULT 0,
    mem_sum         DOUBLE PRECISION NOT NULL DEFAULT 0,
    mem_sq          DOUBLE PRECISION NOT NULL DEFAULT 0,
    queue_n         BIGINT NOT NULL DEFAULT 0,
    queue_sum       DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (pipeline, name, hour)
);

CREATE TABLE insights_run_totals (
    run_id      TEXT PRIMARY KEY,
    pipeline    TEXT NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    cpu_seconds DOUBLE PRECISION,
    peak_rss_mb DOUBLE PRECISION
);
CREATE INDEX insights_run_cpu ON insights_run_totals (pipeline, cpu_seconds, started_at);
CREATE INDEX insights_run_mem ON insights_run_totals (pipeline, peak_rss_mb, started_at);

-- One job row's contribution to its hour, times `s` (+1 adds it, -1 takes it out).
CREATE FUNCTION insights_job_hour_add(j jobs, s BIGINT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cpu DOUBLE PRECISION := j.cpu_user + j.cpu_system;
    mem DOUBLE PRECISION := j.peak_rss_kb::DOUBLE PRECISION / 1024;
BEGIN
    IF j.started_at IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO insights_job_hours AS h VALUES (
        j.pipeline, j.name, floor(j.started_at / 3600)::BIGINT, s,
        s * (j.status = 'succeeded')::INT, s * (j.status IN ('failed', 'timed_out'))::INT,
        s * (j.status = 'succeeded' AND j.attempts > 1)::INT,
        s * (j.duration IS NOT NULL)::INT, s * COALESCE(j.duration, 0), s * COALESCE(j.duration * j.duration, 0),
        s * (cpu IS NOT NULL)::INT, s * COALESCE(cpu, 0), s * COALESCE(cpu * cpu, 0),
        s * (mem IS NOT NULL)::INT, s * COALESCE(mem, 0), s * COALESCE(mem * mem, 0),
        s * (j.queue_wait IS NOT NULL)::INT, s * COALESCE(j.queue_wait, 0))
    ON CONFLICT (pipeline, name, hour) DO UPDATE SET
        started = h.started + excluded.started, succeeded = h.succeeded + excluded.succeeded,
        failed = h.failed + excluded.failed, passed_on_retry = h.passed_on_retry + excluded.passed_on_retry,
        dur_n = h.dur_n + excluded.dur_n, dur_sum = h.dur_sum + excluded.dur_sum, dur_sq = h.dur_sq + excluded.dur_sq,
        cpu_n = h.cpu_n + excluded.cpu_n, cpu_sum = h.cpu_sum + excluded.cpu_sum, cpu_sq = h.cpu_sq + excluded.cpu_sq,
        mem_n = h.mem_n + excluded.mem_n, mem_sum = h.mem_sum + excluded.mem_sum, mem_sq = h.mem_sq + excluded.mem_sq,
        queue_n = h.queue_n + excluded.queue_n, queue_sum = h.queue_sum + excluded.queue_sum;
END $$;

-- Per-run totals recomputed from the run's own job rows (a primary-key range: few rows).
CREATE FUNCTION insights_run_totals_recompute(p_run_id TEXT, p_pipeline TEXT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM insights_run_totals WHERE run_id = p_run_id;
    INSERT INTO insights_run_totals
    SELECT p_run_id, p_pipeline, MIN(started_at), SUM(cpu_user + cpu_system), MAX(peak_rss_kb) / 1024.0
      FROM jobs WHERE run_id = p_run_id AND started_at IS NOT NULL HAVING COUNT(*) > 0;
END $$;

-- Jobs of one run may be written by concurrent transactions (a runner's writes go through a
-- pool): a transaction-scoped lock per run serialises their run totals, and the recompute,
-- a statement after the lock, sees what the transaction before it committed.
CREATE FUNCTION insights_jobs_roll() RETURNS trigger LANGUAGE plpgsql AS $$
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
    IF TG_OP = 'INSERT' THEN
        -- An insert only adds: no need to read the run's other jobs.
        IF NEW.started_at IS NOT NULL THEN
            INSERT INTO insights_run_totals AS t VALUES (
                NEW.run_id, NEW.pipeline, NEW.started_at, NEW.cpu_user + NEW.cpu_system, NEW.peak_rss_kb / 1024.0)
            ON CONFLICT (run_id) DO UPDATE SET
                started_at = LEAST(t.started_at, excluded.started_at),
                cpu_seconds = CASE WHEN t.cpu_seconds IS NULL THEN excluded.cpu_seconds
                                   ELSE t.cpu_seconds + COALESCE(excluded.cpu_seconds, 0) END,
                peak_rss_mb = CASE WHEN t.peak_rss_mb IS NULL THEN excluded.peak_rss_mb
                                   ELSE GREATEST(t.peak_rss_mb, COALESCE(excluded.peak_rss_mb, t.peak_rss_mb)) END;
        END IF;
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

CREATE TRIGGER insights_jobs_roll AFTER INSERT OR UPDATE OR DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION insights_jobs_roll();

-- Value-ordered indexes: a median is an OFFSET into one job's slice of the index.
CREATE INDEX insights_jobs_duration ON jobs (pipeline, name, duration, started_at);
CREATE INDEX insights_jobs_cpu ON jobs (pipeline, name, (cpu_user + cpu_system), started_at);
CREATE INDEX insights_jobs_mem ON jobs (pipeline, name, peak_rss_kb, started_at);
CREATE INDEX insights_runs_duration ON runs (pipeline, status, duration, created_at);
CREATE INDEX insights_runs_trend ON runs (pipeline, status, created_at, duration);
CREATE INDEX insights_jobs_retried ON jobs (pipeline, started_at) WHERE attempts > 1;
