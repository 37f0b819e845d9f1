-- Rollback plans, executions and the per-step journal (mirrors sqlite/0005_rollback.sql).
CREATE TABLE rollback_plans (
    plan_id            TEXT PRIMARY KEY,
    deployment_id      TEXT NOT NULL,
    environment        TEXT NOT NULL,
    service            TEXT NOT NULL,
    strategy           TEXT NOT NULL,
    from_version       TEXT NOT NULL,
    to_version         TEXT NOT NULL,
    reason             TEXT NOT NULL DEFAULT '',
    executable         BIGINT NOT NULL,
    estimated_duration DOUBLE PRECISION NOT NULL,
    estimate_basis     TEXT NOT NULL,
    created_at         DOUBLE PRECISION NOT NULL,
    plan_json          TEXT NOT NULL
);
CREATE INDEX rollback_plans_by_deployment ON rollback_plans (deployment_id, created_at);

CREATE TABLE rollback_executions (
    execution_id  TEXT PRIMARY KEY,
    plan_id       TEXT NOT NULL REFERENCES rollback_plans (plan_id) ON DELETE CASCADE,
    deployment_id TEXT NOT NULL,
    environment   TEXT NOT NULL,
    status        TEXT NOT NULL,
    started_at    DOUBLE PRECISION NOT NULL,
    finished_at   DOUBLE PRECISION,
    duration      DOUBLE PRECISION,
    runs          BIGINT NOT NULL DEFAULT 1,
    failed_step   TEXT,
    error         TEXT,
    owner_pid     BIGINT,
    owner_host    TEXT,
    owner_start   TEXT
);
CREATE INDEX rollback_executions_by_plan ON rollback_executions (plan_id, started_at);
CREATE INDEX rollback_executions_by_deployment ON rollback_executions (deployment_id, started_at);
-- One rollback at a time per environment, across processes.
CREATE UNIQUE INDEX rollback_one_running ON rollback_executions (environment) WHERE status = 'running';

CREATE TABLE rollback_steps (
    execution_id TEXT NOT NULL REFERENCES rollback_executions (execution_id) ON DELETE CASCADE,
    seq          BIGINT NOT NULL,
    name         TEXT NOT NULL,
    action       TEXT NOT NULL,
    environment  TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',
    attempts     BIGINT NOT NULL DEFAULT 0,
    started_at   DOUBLE PRECISION,
    finished_at  DOUBLE PRECISION,
    duration     DOUBLE PRECISION,
    detail       TEXT,
    result_json  TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (execution_id, seq)
);
CREATE INDEX rollback_steps_by_action ON rollback_steps (environment, action, status);
