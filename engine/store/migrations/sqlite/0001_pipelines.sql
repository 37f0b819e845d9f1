-- Pipelines, runs, jobs, attempts, artifacts and metrics.
CREATE TABLE pipelines (
    name        TEXT PRIMARY KEY,
    source_path TEXT,
    spec_json   TEXT NOT NULL,
    updated_at  REAL NOT NULL
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
CREATE INDEX runs_by_pipeline ON runs (pipeline, created_at);
CREATE INDEX runs_by_status ON runs (status);

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
CREATE INDEX jobs_by_pipeline ON jobs (pipeline, started_at);

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

CREATE TABLE artifacts (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    job         TEXT NOT NULL,
    path        TEXT NOT NULL,                 -- relative to the job workspace
    stored_path TEXT NOT NULL,
    size        INTEGER NOT NULL,              -- bytes
    sha256      TEXT NOT NULL,
    PRIMARY KEY (run_id, job, path)
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
CREATE INDEX metrics_by_name ON metrics (name, pipeline, ts);
CREATE INDEX metrics_by_run ON metrics (run_id);
