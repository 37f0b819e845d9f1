-- Deployments: what was deployed where, how it went, and which version is live (verified) where.
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
CREATE INDEX deployments_by_env ON deployments (environment, created_at);
CREATE INDEX deployments_by_name ON deployments (name, created_at);
-- One deployment per environment at a time, across processes.
CREATE UNIQUE INDEX deployments_one_active ON deployments (environment)
    WHERE status IN ('in_progress', 'rolling_back');

-- Progress events of a deployment (batch started, health check passed/failed, traffic shifted ...).
CREATE TABLE deployment_events (
    id            INTEGER PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments (deployment_id) ON DELETE CASCADE,
    ts            REAL NOT NULL,
    kind          TEXT NOT NULL,
    message       TEXT NOT NULL,
    data_json     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX deployment_events_by_dep ON deployment_events (deployment_id, id);

-- The plan of a deployment and how far it got, one row per step.
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

-- Which version is live (and verified healthy) for each service in each environment.
CREATE TABLE releases (
    environment   TEXT NOT NULL,
    service       TEXT NOT NULL,
    version       TEXT NOT NULL,
    deployment_id TEXT NOT NULL,                     -- the deployment that made it live
    artifacts_json TEXT NOT NULL DEFAULT '[]',
    verified_at   REAL NOT NULL,
    PRIMARY KEY (environment, service)
);

-- Every time a version was verified healthy and live: the history rollbacks choose from.
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
CREATE INDEX release_history_by_env ON release_history (environment, service, id);

-- Environments registered in code or loaded from a config file, so that other processes
-- (the server, a pipeline run) can deploy to them by name.
CREATE TABLE deploy_environments (
    name        TEXT PRIMARY KEY,
    spec_json   TEXT NOT NULL,
    source_path TEXT,
    updated_at  REAL NOT NULL
);
