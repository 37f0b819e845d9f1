-- Rollbacks: stored plans, their executions, and a per-step journal written before and after
-- every step, so that a rollback interrupted by a dead process resumes at its first unfinished step.
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
CREATE INDEX rollback_plans_by_deployment ON rollback_plans (deployment_id, created_at);

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
CREATE INDEX rollback_executions_by_plan ON rollback_executions (plan_id, started_at);
CREATE INDEX rollback_executions_by_deployment ON rollback_executions (deployment_id, started_at);
-- One rollback at a time per environment, across processes.
CREATE UNIQUE INDEX rollback_one_running ON rollback_executions (environment) WHERE status = 'running';

-- The journal: one row per step of an execution, written before (running) and after (done | failed).
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
CREATE INDEX rollback_steps_by_action ON rollback_steps (environment, action, status);
