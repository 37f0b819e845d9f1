-- Insights: rollups kept by triggers, and ordered indexes for exact percentiles.
--
-- analyze_performance must stay fast and flat in memory over a million job records, so
-- (1) additive figures (counts, sums, sums of squares) are kept per pipeline, job and
-- hour by triggers on `jobs`: every insert, update and delete takes the old row's
-- contribution out and puts the new row's in, so the rollup always equals the table
-- whatever order the engine writes in; (2) per-run totals (CPU seconds, peak memory)
-- are re-aggregated from the run's own job rows on each change; (3) medians, p95,
-- minima and maxima are read exactly by walking the indexes below in value order.
-- A job row contributes once it has started (started_at set); each metric counts when
-- its value is set.

CREATE TABLE insights_job_hours (
    pipeline        TEXT NOT NULL,
    name            TEXT NOT NULL,
    hour            INTEGER NOT NULL,            -- CAST(started_at / 3600 AS INTEGER)
    started         INTEGER NOT NULL DEFAULT 0,  -- jobs that started in this hour
    succeeded       INTEGER NOT NULL DEFAULT 0,
    failed          INTEGER NOT NULL DEFAULT 0,  -- failed or timed out
    passed_on_retry INTEGER NOT NULL DEFAULT 0,  -- succeeded with more than one attempt
    dur_n           INTEGER NOT NULL DEFAULT 0,
    dur_sum         REAL NOT NULL DEFAULT 0,     -- seconds
    dur_sq          REAL NOT NULL DEFAULT 0,
    cpu_n           INTEGER NOT NULL DEFAULT 0,
    cpu_sum         REAL NOT NULL DEFAULT 0,     -- seconds (user + system)
    cpu_sq          REAL NOT NULL DEFAULT 0,
    mem_n           INTEGER NOT NULL DEFAULT 0,
    mem_sum         REAL NOT NULL DEFAULT 0,     -- MB (kB / 1024)
    mem_sq          REAL NOT NULL DEFAULT 0,
    queue_n         INTEGER NOT NULL DEFAULT 0,
    queue_sum       REAL NOT NULL DEFAULT 0,     -- seconds
    PRIMARY KEY (pipeline, name, hour)
) WITHOUT ROWID;

CREATE TRIGGER insights_jobs_ins AFTER INSERT ON jobs WHEN NEW.started_at IS NOT NULL
BEGIN
    INSERT INTO insights_job_hours VALUES (
        NEW.pipeline, NEW.name, CAST(NEW.started_at / 3600 AS INTEGER), 1,
        NEW.status = 'succeeded', NEW.status IN ('failed', 'timed_out'),
        NEW.status = 'succeeded' AND NEW.attempts > 1,
        NEW.duration IS NOT NULL, IFNULL(NEW.duration, 0), IFNULL(NEW.duration * NEW.duration, 0),
        NEW.cpu_user + NEW.cpu_system IS NOT NULL, IFNULL(NEW.cpu_user + NEW.cpu_system, 0),
        IFNULL((NEW.cpu_user + NEW.cpu_system) * (NEW.cpu_user + NEW.cpu_system), 0),
        NEW.peak_rss_kb IS NOT NULL, IFNULL(NEW.peak_rss_kb / 1024.0, 0),
        IFNULL((NEW.peak_rss_kb / 1024.0) * (NEW.peak_rss_kb / 1024.0), 0),
        NEW.queue_wait IS NOT NULL, IFNULL(NEW.queue_wait, 0))
    ON CONFLICT DO UPDATE SET
        started = started + excluded.started, succeeded = succeeded + excluded.succeeded,
        failed = failed + excluded.failed, passed_on_retry = passed_on_retry + excluded.passed_on_retry,
        dur_n = dur_n + excluded.dur_n, dur_sum = dur_sum + excluded.dur_sum, dur_sq = dur_sq + excluded.dur_sq,
        cpu_n = cpu_n + excluded.cpu_n, cpu_sum = cpu_sum + excluded.cpu_sum, cpu_sq = cpu_sq + excluded.cpu_sq,
        mem_n = mem_n + excluded.mem_n, mem_sum = mem_sum + excluded.mem_sum, mem_sq = mem_sq + excluded.mem_sq,
        queue_n = queue_n + excluded.queue_n, queue_sum = queue_sum + excluded.queue_sum;
END;

CREATE TRIGGER insights_jobs_del AFTER DELETE ON jobs WHEN OLD.started_at IS NOT NULL
BEGIN
    INSERT INTO insights_job_hours VALUES (
        OLD.pipeline, OLD.name, CAST(OLD.started_at / 3600 AS INTEGER), -1,
        -(OLD.status = 'succeeded'), -(OLD.status IN ('failed', 'timed_out')),
        -(OLD.status = 'succeeded' AND OLD.attempts > 1),
        -(OLD.duration IS NOT NULL), -IFNULL(OLD.duration, 0), -IFNULL(OLD.duration * OLD.duration, 0),
        -(OLD.cpu_user + OLD.cpu_system IS NOT NULL), -IFNULL(OLD.cpu_user + OLD.cpu_system, 0),
        -IFNULL((OLD.cpu_user + OLD.cpu_system) * (OLD.cpu_user + OLD.cpu_system), 0),
        -(OLD.peak_rss_kb IS NOT NULL), -IFNULL(OLD.peak_rss_kb / 1024.0, 0),
        -IFNULL((OLD.peak_rss_kb / 1024.0) * (OLD.peak_rss_kb / 1024.0), 0),
        -(OLD.queue_wait IS NOT NULL), -IFNULL(OLD.queue_wait, 0))
    ON CONFLICT DO UPDATE SET
        started = started + excluded.started, succeeded = succeeded + excluded.succeeded,
        failed = failed + excluded.failed, passed_on_retry = passed_on_retry + excluded.passed_on_retry,
        dur_n = dur_n + excluded.dur_n, dur_sum = dur_sum + excluded.dur_sum, dur_sq = dur_sq + excluded.dur_sq,
        cpu_n = cpu_n + excluded.cpu_n, cpu_sum = cpu_sum + excluded.cpu_sum, cpu_sq = cpu_sq + excluded.cpu_sq,
        mem_n = mem_n + excluded.mem_n, mem_sum = mem_sum + excluded.mem_sum, mem_sq = mem_sq + excluded.mem_sq,
        queue_n = queue_n + excluded.queue_n, queue_sum = queue_sum + excluded.queue_sum;
END;

-- An update is a delete of the old row's contribution and an insert of the new one's.
CREATE TRIGGER insights_jobs_upd_old AFTER UPDATE ON jobs WHEN OLD.started_at IS NOT NULL
BEGIN
    INSERT INTO insights_job_hours VALUES (
        OLD.pipeline, OLD.name, CAST(OLD.started_at / 3600 AS INTEGER), -1,
        -(OLD.status = 'succeeded'), -(OLD.status IN ('failed', 'timed_out')),
        -(OLD.status = 'succeeded' AND OLD.attempts > 1),
        -(OLD.duration IS NOT NULL), -IFNULL(OLD.duration, 0), -IFNULL(OLD.duration * OLD.duration, 0),
        -(OLD.cpu_user + OLD.cpu_system IS NOT NULL), -IFNULL(OLD.cpu_user + OLD.cpu_system, 0),
        -IFNULL((OLD.cpu_user + OLD.cpu_system) * (OLD.cpu_user + OLD.cpu_system), 0),
        -(OLD.peak_rss_kb IS NOT NULL), -IFNULL(OLD.peak_rss_kb / 1024.0, 0),
        -IFNULL((OLD.peak_rss_kb / 1024.0) * (OLD.peak_rss_kb / 1024.0), 0),
        -(OLD.queue_wait IS NOT NULL), -IFNULL(OLD.queue_wait, 0))
    ON CONFLICT DO UPDATE SET
        started = started + excluded.started, succeeded = succeeded + excluded.succeeded,
        failed = failed + excluded.failed, passed_on_retry = passed_on_retry + excluded.passed_on_retry,
        dur_n = dur_n + excluded.dur_n, dur_sum = dur_sum + excluded.dur_sum, dur_sq = dur_sq + excluded.dur_sq,
        cpu_n = cpu_n + excluded.cpu_n, cpu_sum = cpu_sum + excluded.cpu_sum, cpu_sq = cpu_sq + excluded.cpu_sq,
        mem_n = mem_n + excluded.mem_n, mem_sum = mem_sum + excluded.mem_sum, mem_sq = mem_sq + excluded.mem_sq,
        queue_n = queue_n + excluded.queue_n, queue_sum = queue_sum + excluded.queue_sum;
END;

CREATE TRIGGER insights_jobs_upd_new AFTER UPDATE ON jobs WHEN NEW.started_at IS NOT NULL
BEGIN
    INSERT INTO insights_job_hours VALUES (
        NEW.pipeline, NEW.name, CAST(NEW.started_at / 3600 AS INTEGER), 1,
        NEW.status = 'succeeded', NEW.status IN ('failed', 'timed_out'),
        NEW.status = 'succeeded' AND NEW.attempts > 1,
        NEW.duration IS NOT NULL, IFNULL(NEW.duration, 0), IFNULL(NEW.duration * NEW.duration, 0),
        NEW.cpu_user + NEW.cpu_system IS NOT NULL, IFNULL(NEW.cpu_user + NEW.cpu_system, 0),
        IFNULL((NEW.cpu_user + NEW.cpu_system) * (NEW.cpu_user + NEW.cpu_system), 0),
        NEW.peak_rss_kb IS NOT NULL, IFNULL(NEW.peak_rss_kb / 1024.0, 0),
        IFNULL((NEW.peak_rss_kb / 1024.0) * (NEW.peak_rss_kb / 1024.0), 0),
        NEW.queue_wait IS NOT NULL, IFNULL(NEW.queue_wait, 0))
    ON CONFLICT DO UPDATE SET
        started = started + excluded.started, succeeded = succeeded + excluded.succeeded,
        failed = failed + excluded.failed, passed_on_retry = passed_on_retry + excluded.passed_on_retry,
        dur_n = dur_n + excluded.dur_n, dur_sum = dur_sum + excluded.dur_sum, dur_sq = dur_sq + excluded.dur_sq,
        cpu_n = cpu_n + excluded.cpu_n, cpu_sum = cpu_sum + excluded.cpu_sum, cpu_sq = cpu_sq + excluded.cpu_sq,
        mem_n = mem_n + excluded.mem_n, mem_sum = mem_sum + excluded.mem_sum, mem_sq = mem_sq + excluded.mem_sq,
        queue_n = queue_n + excluded.queue_n, queue_sum = queue_sum + excluded.queue_sum;
END;

-- Per-run totals, recomputed from the run's own job rows (a primary-key range: few rows).
CREATE TABLE insights_run_totals (
    run_id      TEXT PRIMARY KEY,
    pipeline    TEXT NOT NULL,
    started_at  REAL NOT NULL,                   -- first job start
    cpu_seconds REAL,                            -- user + system, all jobs
    peak_rss_mb REAL                             -- largest job peak
) WITHOUT ROWID;
CREATE INDEX insights_run_cpu ON insights_run_totals (pipeline, cpu_seconds, started_at);
CREATE INDEX insights_run_mem ON insights_run_totals (pipeline, peak_rss_mb, started_at);

-- An insert only adds: no need to read the run's other jobs.
CREATE TRIGGER insights_run_totals_ins AFTER INSERT ON jobs WHEN NEW.started_at IS NOT NULL
BEGIN
    INSERT INTO insights_run_totals VALUES (
        NEW.run_id, NEW.pipeline, NEW.started_at, NEW.cpu_user + NEW.cpu_system, NEW.peak_rss_kb / 1024.0)
    ON CONFLICT DO UPDATE SET
        started_at = MIN(started_at, excluded.started_at),
        cpu_seconds = CASE WHEN cpu_seconds IS NULL THEN excluded.cpu_seconds
                           ELSE cpu_seconds + IFNULL(excluded.cpu_seconds, 0) END,
        peak_rss_mb = CASE WHEN peak_rss_mb IS NULL THEN excluded.peak_rss_mb
                           ELSE MAX(peak_rss_mb, IFNULL(excluded.peak_rss_mb, peak_rss_mb)) END;
END;

CREATE TRIGGER insights_run_totals_upd AFTER UPDATE ON jobs
WHEN NEW.started_at IS NOT NULL OR OLD.started_at IS NOT NULL
BEGIN
    DELETE FROM insights_run_totals WHERE run_id = OLD.run_id;
    INSERT OR REPLACE INTO insights_run_totals
    SELECT NEW.run_id, NEW.pipeline, MIN(started_at), SUM(cpu_user + cpu_system), MAX(peak_rss_kb) / 1024.0
      FROM jobs WHERE run_id = NEW.run_id AND started_at IS NOT NULL HAVING COUNT(*) > 0;
END;

CREATE TRIGGER insights_run_totals_del AFTER DELETE ON jobs WHEN OLD.started_at IS NOT NULL
BEGIN
    DELETE FROM insights_run_totals WHERE run_id = OLD.run_id;
    INSERT INTO insights_run_totals
    SELECT OLD.run_id, OLD.pipeline, MIN(started_at), SUM(cpu_user + cpu_system), MAX(peak_rss_kb) / 1024.0
      FROM jobs WHERE run_id = OLD.run_id AND started_at IS NOT NULL HAVING COUNT(*) > 0;
END;

-- Value-ordered indexes: a median is an OFFSET into one job's slice of the index.
CREATE INDEX insights_jobs_duration ON jobs (pipeline, name, duration, started_at);
CREATE INDEX insights_jobs_cpu ON jobs (pipeline, name, cpu_user + cpu_system, started_at);
CREATE INDEX insights_jobs_mem ON jobs (pipeline, name, peak_rss_kb, started_at);
CREATE INDEX insights_runs_duration ON runs (pipeline, status, duration, created_at);
CREATE INDEX insights_runs_trend ON runs (pipeline, status, created_at, duration);
-- Retried jobs are rare: only they are joined with their attempts.
CREATE INDEX insights_jobs_retried ON jobs (pipeline, started_at) WHERE attempts > 1;
