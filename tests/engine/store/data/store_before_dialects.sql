-- A state store as the engine left it before migrations moved under migrations/sqlite/
-- (recorded names are the bare file names). user_version was 7.
BEGIN TRANSACTION;
CREATE TABLE artifacts (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    job         TEXT NOT NULL,
    path        TEXT NOT NULL,                 -- relative to the job workspace
    stored_path TEXT NOT NULL,
    size        INTEGER NOT NULL,              -- bytes
    sha256      TEXT NOT NULL,
    PRIMARY KEY (run_id, job, path)
);
CREATE TABLE attempts (
    run_id        TEXT NOT NULL,
    job           TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    status        TEXT NOT NULL,
    failure_class TEXT,                        -- failure | timeout | infrastructure
    reason        TEXT,
    started_at    REAL NOT NULL,
    finished_at   REAL,
    duration      REAL,
    exit_code     INTEGER,
    cpu_user      REAL,
    cpu_system    REAL,
    peak_rss_kb   INTEGER,
    PRIMARY KEY (run_id, job, attempt),
    FOREIGN KEY (run_id) REFERENCES runs (run_id) ON DELETE CASCADE
);
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    ts          REAL NOT NULL,
    transport   TEXT NOT NULL,             -- stdio | sse | http | memory
    caller      TEXT NOT NULL,             -- "stdio", "token:<name>", "anonymous"
    level       TEXT NOT NULL,             -- the caller's trust level
    tool        TEXT NOT NULL,
    args_sha256 TEXT NOT NULL,             -- sha256 of the canonical JSON of the arguments
    decision    TEXT NOT NULL,             -- allowed | denied | confirmed | declined | confirmation_requested
    reason      TEXT,
    outcome     TEXT,                      -- ok | error | cancelled (what the tool did once allowed)
    duration_ms REAL NOT NULL              -- gate plus tool, wall clock
);
CREATE TABLE deploy_environments (
    name        TEXT PRIMARY KEY,
    spec_json   TEXT NOT NULL,
    source_path TEXT,
    updated_at  REAL NOT NULL
);
INSERT INTO "deploy_environments" VALUES('kept','{}',NULL,1.0);
CREATE TABLE deployment_events (
    id            INTEGER PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments (deployment_id) ON DELETE CASCADE,
    ts            REAL NOT NULL,
    kind          TEXT NOT NULL,
    message       TEXT NOT NULL,
    data_json     TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE deployment_steps (
    deployment_id TEXT NOT NULL REFERENCES deployments (deployment_id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    kind          TEXT NOT NULL,                     -- start | stop | verify | traffic | wait | analyze
    description   TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending',   -- pending | running | done | failed
    started_at    REAL,
    finished_at   REAL,
    detail        TEXT,
    PRIMARY KEY (deployment_id, seq)
);
CREATE TABLE deployments (
    deployment_id         TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,             -- the name given to create_deployment (may repeat)
    service               TEXT NOT NULL,
    environment           TEXT NOT NULL,
    version               TEXT NOT NULL,
    previous_version      TEXT,                      -- live (verified) version when it started
    strategy              TEXT NOT NULL,             -- recreate | rolling | blue_green | canary
    strategy_options_json TEXT NOT NULL DEFAULT '{}',
    artifacts_json        TEXT NOT NULL DEFAULT '[]',  -- absolute paths / image references
    rollback_on_failure   INTEGER NOT NULL DEFAULT 1,
    status                TEXT NOT NULL,             -- planned | in_progress | success | failure | rolling_back | rolled_back | rollback_failed
    reason                TEXT,                      -- why it ended as it did
    target_kind           TEXT,
    run_id                TEXT,                      -- the pipeline run that deployed it, if any
    created_at            REAL NOT NULL,
    started_at            REAL,
    finished_at           REAL,
    duration              REAL,                      -- seconds
    before_json           TEXT NOT NULL DEFAULT '[]',  -- instances found when it started
    instances_json        TEXT NOT NULL DEFAULT '[]',  -- instances when it finished
    owner_pid             INTEGER,                   -- the process deploying it (stale-lock detection)
    owner_host            TEXT,
    owner_start           TEXT
);
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
CREATE TABLE insights_run_totals (
    run_id      TEXT PRIMARY KEY,
    pipeline    TEXT NOT NULL,
    started_at  REAL NOT NULL,                   -- first job start
    cpu_seconds REAL,                            -- user + system, all jobs
    peak_rss_mb REAL                             -- largest job peak
) WITHOUT ROWID;
CREATE TABLE jobs (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    name        TEXT NOT NULL,                 -- expanded name, e.g. lint[py=3.11]
    pipeline    TEXT NOT NULL,
    stage       TEXT NOT NULL,
    base_name   TEXT NOT NULL,                 -- name before matrix expansion
    matrix_json TEXT NOT NULL DEFAULT '{}',
    needs_json  TEXT NOT NULL DEFAULT '[]',    -- expanded dependency names
    status      TEXT NOT NULL,                 -- pending | running | retrying | succeeded | failed | timed_out | cancelled | skipped
    reason      TEXT,
    allow_failure INTEGER NOT NULL DEFAULT 0,
    ready_at    REAL,                          -- dependencies done; waiting for a worker from here
    started_at  REAL,
    finished_at REAL,
    duration    REAL,                          -- seconds, all attempts
    queue_wait  REAL,                          -- seconds between ready_at and started_at
    cpu_user    REAL,                          -- seconds, all attempts
    cpu_system  REAL,                          -- seconds, all attempts
    peak_rss_kb INTEGER,                       -- largest resident set of any process of the job
    exit_code   INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    log_path    TEXT,
    pgid        INTEGER,                       -- process group of the running command (for orphan clean-up)
    PRIMARY KEY (run_id, name)
);
CREATE TABLE metrics (
    id        INTEGER PRIMARY KEY,
    ts        REAL NOT NULL,
    name      TEXT NOT NULL,                   -- e.g. job.duration, run.duration, job.peak_rss
    value     REAL NOT NULL,
    unit      TEXT NOT NULL,                   -- s | MB | count | ...
    pipeline  TEXT,
    run_id    TEXT,
    job       TEXT,
    tags_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE pipelines (
    name        TEXT PRIMARY KEY,
    source_path TEXT,
    spec_json   TEXT NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE TABLE release_history (
    id            INTEGER PRIMARY KEY,
    environment   TEXT NOT NULL,
    service       TEXT NOT NULL,
    version       TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    artifacts_json TEXT NOT NULL DEFAULT '[]',
    how           TEXT NOT NULL,                     -- deployed | rolled_back
    verified_at   REAL NOT NULL
);
CREATE TABLE releases (
    environment   TEXT NOT NULL,
    service       TEXT NOT NULL,
    version       TEXT NOT NULL,
    deployment_id TEXT NOT NULL,                     -- the deployment that made it live
    artifacts_json TEXT NOT NULL DEFAULT '[]',
    verified_at   REAL NOT NULL,
    PRIMARY KEY (environment, service)
);
CREATE TABLE rollback_executions (
    execution_id  TEXT PRIMARY KEY,
    plan_id       TEXT NOT NULL REFERENCES rollback_plans (plan_id) ON DELETE CASCADE,
    deployment_id TEXT NOT NULL,
    environment   TEXT NOT NULL,
    status        TEXT NOT NULL,                    -- running | completed | failed
    started_at    REAL NOT NULL,
    finished_at   REAL,
    duration      REAL,                             -- seconds of the last run (a resume is a run)
    runs          INTEGER NOT NULL DEFAULT 1,       -- how many times it was started or resumed
    failed_step   TEXT,
    error         TEXT,
    owner_pid     INTEGER,                          -- the process running it (a dead one: resumable)
    owner_host    TEXT,
    owner_start   TEXT
);
CREATE TABLE rollback_plans (
    plan_id            TEXT PRIMARY KEY,
    deployment_id      TEXT NOT NULL,               -- the deployment being rolled back
    environment        TEXT NOT NULL,
    service            TEXT NOT NULL,
    strategy           TEXT NOT NULL,               -- immediate | rolling | blue_green | canary | manual
    from_version       TEXT NOT NULL,
    to_version         TEXT NOT NULL,
    reason             TEXT NOT NULL DEFAULT '',
    executable         INTEGER NOT NULL,            -- 0 for manual: a runbook for a person
    estimated_duration REAL NOT NULL,               -- seconds
    estimate_basis     TEXT NOT NULL,               -- timeouts | measured | measured+timeouts
    created_at         REAL NOT NULL,
    plan_json          TEXT NOT NULL                -- the whole RollbackPlan (steps, runbook, release)
);
CREATE TABLE rollback_steps (
    execution_id TEXT NOT NULL REFERENCES rollback_executions (execution_id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    name         TEXT NOT NULL,
    action       TEXT NOT NULL,                     -- the operation: stop_instances, start_release, ...
    environment  TEXT NOT NULL,                     -- for measured durations of past steps
    status       TEXT NOT NULL DEFAULT 'pending',   -- pending | running | done | failed
    attempts     INTEGER NOT NULL DEFAULT 0,
    started_at   REAL,
    finished_at  REAL,
    duration     REAL,                              -- seconds of the attempt that ended it
    detail       TEXT,                              -- what it did, or why it failed
    result_json  TEXT NOT NULL DEFAULT '{}',        -- what it touched (instance refs, backends)
    PRIMARY KEY (execution_id, seq)
);
CREATE TABLE runs (
    run_id           TEXT PRIMARY KEY,
    pipeline         TEXT NOT NULL,
    status           TEXT NOT NULL,            -- queued | running | succeeded | failed | cancelled | interrupted
    reason           TEXT,                     -- why it ended as it did (masked)
    created_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    duration         REAL,                     -- seconds
    variables_json   TEXT NOT NULL DEFAULT '{}',  -- masked
    context_json     TEXT NOT NULL DEFAULT '{}',  -- branch, event, provider
    spec_path        TEXT,
    spec_json        TEXT,
    max_workers      INTEGER,
    owner_pid        INTEGER,                  -- the process running it
    owner_host       TEXT,
    owner_start      TEXT,                     -- start time of owner_pid (guards against pid reuse)
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at REAL);
INSERT INTO "schema_migrations" VALUES('0001_pipelines.sql',1.79604162842011141777e+09);
INSERT INTO "schema_migrations" VALUES('0002_deployments.sql',1.79604162842077517514e+09);
INSERT INTO "schema_migrations" VALUES('0003_insights.sql',1.79604162842211508748e+09);
INSERT INTO "schema_migrations" VALUES('0004_audit.sql',1.7960416284223544598e+09);
INSERT INTO "schema_migrations" VALUES('0005_rollback.sql',1.79604162842282104491e+09);
INSERT INTO "schema_migrations" VALUES('0006_token_expiry.sql',1.79604162842350101466e+09);
INSERT INTO "schema_migrations" VALUES('0007_environment_lock.sql',1.79604162842370820049e+09);
CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL UNIQUE,       -- hex sha256 of the token; the token itself is never stored
    level      TEXT NOT NULL,              -- untrusted | verified | trusted
    created_at REAL NOT NULL,
    revoked_at REAL                        -- set by `cicd-mcp token revoke`; refused from the next call on
, expires_at REAL);
CREATE INDEX runs_by_pipeline ON runs (pipeline, created_at);
CREATE INDEX runs_by_status ON runs (status);
CREATE INDEX jobs_by_pipeline ON jobs (pipeline, started_at);
CREATE INDEX metrics_by_name ON metrics (name, pipeline, ts);
CREATE INDEX metrics_by_run ON metrics (run_id);
CREATE INDEX deployments_by_env ON deployments (environment, created_at);
CREATE INDEX deployments_by_name ON deployments (name, created_at);
CREATE UNIQUE INDEX deployments_one_active ON deployments (environment)
    WHERE status IN ('in_progress', 'rolling_back');
CREATE INDEX deployment_events_by_dep ON deployment_events (deployment_id, id);
CREATE INDEX release_history_by_env ON release_history (environment, service, id);
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
CREATE INDEX insights_run_cpu ON insights_run_totals (pipeline, cpu_seconds, started_at);
CREATE INDEX insights_run_mem ON insights_run_totals (pipeline, peak_rss_mb, started_at);
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
CREATE INDEX insights_jobs_duration ON jobs (pipeline, name, duration, started_at);
CREATE INDEX insights_jobs_cpu ON jobs (pipeline, name, cpu_user + cpu_system, started_at);
CREATE INDEX insights_jobs_mem ON jobs (pipeline, name, peak_rss_kb, started_at);
CREATE INDEX insights_runs_duration ON runs (pipeline, status, duration, created_at);
CREATE INDEX insights_runs_trend ON runs (pipeline, status, created_at, duration);
CREATE INDEX insights_jobs_retried ON jobs (pipeline, started_at) WHERE attempts > 1;
CREATE INDEX audit_by_ts ON audit (ts);
CREATE INDEX audit_by_tool ON audit (tool, ts);
CREATE INDEX rollback_plans_by_deployment ON rollback_plans (deployment_id, created_at);
CREATE INDEX rollback_executions_by_plan ON rollback_executions (plan_id, started_at);
CREATE INDEX rollback_executions_by_deployment ON rollback_executions (deployment_id, started_at);
CREATE UNIQUE INDEX rollback_one_running ON rollback_executions (environment) WHERE status = 'running';
CREATE INDEX rollback_steps_by_action ON rollback_steps (environment, action, status);
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
COMMIT;
