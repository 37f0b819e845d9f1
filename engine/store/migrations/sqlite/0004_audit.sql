-- The MCP server's trust gate: one audit row per decision, and bearer tokens (hashes only).
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
CREATE INDEX audit_by_ts ON audit (ts);
CREATE INDEX audit_by_tool ON audit (tool, ts);

CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL UNIQUE,       -- hex sha256 of the token; the token itself is never stored
    level      TEXT NOT NULL,              -- untrusted | verified | trusted
    created_at REAL NOT NULL,
    revoked_at REAL                        -- set by `cicd-mcp token revoke`; refused from the next call on
);
