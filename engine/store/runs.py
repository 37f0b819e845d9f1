"""Repository for pipelines, runs, jobs, attempts, artifacts and run/job metrics: the only SQL they need.

Every function takes the `Store` first and speaks in plain values; rows are read by column
name. The SQL is portable where it can be (`?` placeholders, `INSERT ... ON CONFLICT ... DO
UPDATE`, jobs ordered by their `seq` column), so a second dialect needs no change here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.store.base import Row, Store, Transaction

__all__ = [
    "JOB_COLUMNS",
    "Attempt",
    "Metric",
    "NewJob",
    "cancel_requested",
    "clear_recovery_record",
    "finish_job",
    "finish_run",
    "get_run",
    "insert_run",
    "job_log_path",
    "job_names",
    "job_recovery_records",
    "list_runs",
    "mark_interrupted",
    "orphaned_recovery_records",
    "pipeline_names",
    "pipeline_registered",
    "record_artifacts",
    "record_attempt",
    "record_metrics",
    "recent_run_ids",
    "registered_pipeline",
    "renew_lease",
    "request_cancel",
    "run_artifacts",
    "run_jobs",
    "save_pipeline",
    "start_run",
    "store_fingerprint",
    "unfinished_runs",
    "update_job",
]

_UNFINISHED_JOB = ("pending", "running", "retrying")

JOB_COLUMNS = frozenset({
    "status", "reason", "ready_at", "started_at", "finished_at", "duration", "queue_wait", "cpu_user", "cpu_system",
    "peak_rss_kb", "exit_code", "attempts", "executor", "recovery_json", "deployment_json",
})
"""The job columns `update_job` may set (the rest are written once, when the run starts)."""


@dataclass(frozen=True)
class NewJob:
    """A job row as a run starts: everything known before it runs."""

    name: str
    stage: str
    base_name: str
    matrix: Mapping[str, str]
    needs: Sequence[str]
    status: str
    allow_failure: bool
    log_path: str
    executor: str


@dataclass(frozen=True)
class Metric:
    ts: float
    name: str
    value: float
    unit: str
    pipeline: str | None = None
    run_id: str | None = None
    job: str | None = None
    tags: Mapping[str, str] | None = None


_INSERT_METRIC = (
    "INSERT INTO metrics (ts, name, value, unit, pipeline, run_id, job, tags_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _metric_rows(metrics: Iterable[Metric]) -> list[tuple[Any, ...]]:
    return [(m.ts, m.name, m.value, m.unit, m.pipeline, m.run_id, m.job, json.dumps(dict(m.tags or {})))
            for m in metrics]


# -- pipelines ------------------------------------------------------------------------------------

def save_pipeline(store: Store, name: str, *, source_path: str | None, spec_json: str, updated_at: float) -> None:
    """Register a pipeline by name (a second registration replaces the first)."""
    store.execute(
        "INSERT INTO pipelines (name, source_path, spec_json, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET source_path = excluded.source_path, spec_json = excluded.spec_json, "
        "updated_at = excluded.updated_at",
        (name, source_path, spec_json, updated_at),
    )


def registered_pipeline(store: Store, name: str) -> tuple[str | None, str] | None:
    """(source_path, spec_json) of a registered pipeline, or None."""
    row = store.query_one("SELECT source_path, spec_json FROM pipelines WHERE name = ?", (name,))
    return None if row is None else (row["source_path"], row["spec_json"])


def pipeline_registered(store: Store, name: str) -> bool:
    return store.query_one("SELECT 1 AS found FROM pipelines WHERE name = ?", (name,)) is not None


def pipeline_names(store: Store) -> list[str]:
    """Registered pipelines and pipelines that have runs, sorted."""
    names = {r["name"] for r in store.query("SELECT name FROM pipelines")}
    names |= {r["pipeline"] for r in store.query("SELECT DISTINCT pipeline FROM runs")}
    return sorted(names)


# -- runs -----------------------------------------------------------------------------------------

def insert_run(
    store: Store, run_id: str, *, pipeline: str, status: str, created_at: float, variables: Mapping[str, Any],
    context: Mapping[str, Any], spec_path: str | None, spec_json: str, max_workers: int,
) -> None:
    store.execute(
        "INSERT INTO runs (run_id, pipeline, status, created_at, variables_json, context_json, spec_path, "
        "spec_json, max_workers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, pipeline, status, created_at, json.dumps(dict(variables)), json.dumps(dict(context)), spec_path,
         spec_json, max_workers),
    )


def start_run(
    store: Store, run_id: str, *, pipeline: str, status: str, started_at: float,
    owner: tuple[int, str, str | None], jobs: Sequence[NewJob], warnings: Sequence[str] = (),
    lease_until: float | None = None,
) -> None:
    """The run is running under `owner` (pid, host, identity), whose lease lasts until
    `lease_until` (see `renew_lease`); its jobs are recorded in plan order.

    `warnings` join the run's context as `warning` (shown wherever the run is).
    """
    pid, host, identity = owner
    with store.transaction() as conn:
        if warnings:
            row = conn.query_one("SELECT context_json FROM runs WHERE run_id = ?", (run_id,))
            context = json.loads(row["context_json"]) if row is not None and row["context_json"] else {}
            context["warning"] = "; ".join(warnings)
            conn.execute("UPDATE runs SET context_json = ? WHERE run_id = ?", (json.dumps(context), run_id))
        conn.execute(
            "UPDATE runs SET status = ?, started_at = ?, owner_pid = ?, owner_host = ?, owner_start = ?, "
            "lease_expires_at = ? WHERE run_id = ?",
            (status, started_at, pid, host, identity, lease_until, run_id),
        )
        conn.executemany(
            "INSERT INTO jobs (run_id, name, pipeline, stage, base_name, matrix_json, needs_json, status, "
            "allow_failure, log_path, executor, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, j.name, pipeline, j.stage, j.base_name, json.dumps(dict(j.matrix)), json.dumps(list(j.needs)),
              j.status, int(j.allow_failure), j.log_path, j.executor, seq) for seq, j in enumerate(jobs)],
        )


def finish_run(
    store: Store, run_id: str, *, status: str, finished_at: float, duration: float, reason: str | None,
    metrics: Iterable[Metric] = (),
) -> None:
    """The run ended: its status and, in the same transaction, its metrics."""
    with store.transaction() as conn:
        conn.execute("UPDATE runs SET status = ?, finished_at = ?, duration = ?, reason = ? WHERE run_id = ?",
                     (status, finished_at, duration, reason, run_id))
        rows = _metric_rows(metrics)
        if rows:
            conn.executemany(_INSERT_METRIC, rows)


def get_run(store: Store, run_id: str) -> Row | None:
    return store.query_one("SELECT * FROM runs WHERE run_id = ?", (run_id,))


def recent_run_ids(store: Store, limit: int = 5) -> list[str]:
    return [r["run_id"] for r in store.query("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT ?", (limit,))]


def list_runs(store: Store, *, pipeline: str | None = None, status: str | None = None, limit: int = 50) -> list[Row]:
    """Runs, newest first."""
    sql, params, where = "SELECT * FROM runs", list[Any](), []
    if pipeline:
        where.append("pipeline = ?")
        params.append(pipeline)
    if status:
        where.append("status = ?")
        params.append(status)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC LIMIT ?"
    params.append(limit)
    return store.query(sql, params)


def unfinished_runs(store: Store) -> list[Row]:
    """Runs still queued or running (by the record: their runner may be gone)."""
    return store.query("SELECT * FROM runs WHERE status IN ('queued', 'running')")


def request_cancel(store: Store, run_id: str) -> None:
    store.execute("UPDATE runs SET cancel_requested = 1 WHERE run_id = ?", (run_id,))


def renew_lease(store: Store, run_id: str, *, until: float) -> bool:
    """Extend the run owner's lease to `until`; returns whether a cancel was requested (one
    round trip for both: the runner renews where it polls the cancel flag)."""
    rows = store.query("UPDATE runs SET lease_expires_at = ? WHERE run_id = ? RETURNING cancel_requested",
                       (until, run_id))
    return bool(rows and rows[0]["cancel_requested"])


def cancel_requested(store: Store, run_id: str) -> bool:
    row = store.query_one("SELECT cancel_requested FROM runs WHERE run_id = ?", (run_id,))
    return bool(row is not None and row["cancel_requested"])


def mark_interrupted(store: Store, run_id: str, *, status: str, job_status: str, reason: str, now: float,
                     keep_recovery: bool = False) -> None:
    """A run whose runner died: its unfinished jobs and attempts end, and so does the run.

    `keep_recovery` keeps the jobs' recovery records, for the runner's own host to act on
    (`orphaned_recovery_records`) when another machine marks the run."""
    recovery = "" if keep_recovery else ", recovery_json = NULL"
    with store.transaction() as conn:
        conn.execute(
            f"UPDATE jobs SET status = ?, reason = ?, finished_at = COALESCE(finished_at, ?){recovery} "
            "WHERE run_id = ? AND status IN (?, ?, ?)",
            (job_status, reason, now, run_id, *_UNFINISHED_JOB),
        )
        conn.execute(
            "UPDATE attempts SET status = 'interrupted', finished_at = COALESCE(finished_at, ?) "
            "WHERE run_id = ? AND status = 'running'", (now, run_id),
        )
        conn.execute(
            "UPDATE runs SET status = ?, reason = ?, finished_at = ?, "
            "duration = ? - COALESCE(started_at, created_at) WHERE run_id = ?",
            (status, reason, now, now, run_id),
        )


# -- jobs -----------------------------------------------------------------------------------------

def update_job(store: Store, run_id: str, name: str, /, **fields: Any) -> None:
    """Set some of a job's columns (names from JOB_COLUMNS).

    Raises:
        ValueError: a column that is not in JOB_COLUMNS.
    """
    if fields:
        _update_job(store, run_id, name, fields)


def _update_job(conn: Store | Transaction, run_id: str, name: str, fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - JOB_COLUMNS
    if unknown:
        raise ValueError(f"not a job column: {', '.join(sorted(unknown))}")
    cols = ", ".join(f"{k} = ?" for k in fields)
    conn.execute(f"UPDATE jobs SET {cols} WHERE run_id = ? AND name = ?", (*fields.values(), run_id, name))


@dataclass(frozen=True)
class Attempt:
    """One attempt of a job, as `record_attempt` writes it."""

    attempt: int
    status: str
    failure_class: str | None
    reason: str | None
    started_at: float
    finished_at: float | None
    exit_code: int | None = None
    cpu_user: float | None = None
    cpu_system: float | None = None
    peak_rss_kb: int | None = None


def finish_job(store: Store, run_id: str, name: str, fields: Mapping[str, Any], *, attempt: Attempt | None = None,
               metrics: Iterable[Metric] = ()) -> None:
    """A job's final row, its last attempt (when not written yet) and its metrics, in one transaction.

    Raises:
        ValueError: a column that is not in JOB_COLUMNS.
    """
    with store.transaction() as conn:
        if attempt is not None:
            _write_attempt(conn, run_id, name, attempt)
        _update_job(conn, run_id, name, fields)
        rows = _metric_rows(metrics)
        if rows:
            conn.executemany(_INSERT_METRIC, rows)


def run_jobs(store: Store, run_id: str) -> list[Row]:
    """A run's jobs in plan order."""
    return store.query("SELECT * FROM jobs WHERE run_id = ? ORDER BY seq", (run_id,))


def job_names(store: Store, run_id: str) -> list[str]:
    return [r["name"] for r in store.query("SELECT name FROM jobs WHERE run_id = ? ORDER BY seq", (run_id,))]


def job_log_path(store: Store, run_id: str, job: str) -> str | None:
    """Where the job's log is, or None when the run has no such job (or it has no log path)."""
    row = store.query_one("SELECT log_path FROM jobs WHERE run_id = ? AND name = ?", (run_id, job))
    return None if row is None else row["log_path"]


def job_recovery_records(store: Store, run_id: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(job, executor, recovery record) for each job of the run that left one."""
    rows = store.query("SELECT name, executor, recovery_json FROM jobs WHERE run_id = ? AND recovery_json IS NOT NULL "
                       "ORDER BY seq", (run_id,))
    return [(r["name"], r["executor"], json.loads(r["recovery_json"])) for r in rows]


def orphaned_recovery_records(store: Store, host: str) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    """(run_id, job, executor, recovery record) left by runners of `host` in runs already ended
    (marked interrupted from another machine while this one was away)."""
    rows = store.query(
        "SELECT j.run_id, j.name, j.executor, j.recovery_json FROM jobs j JOIN runs r ON r.run_id = j.run_id "
        "WHERE j.recovery_json IS NOT NULL AND r.owner_host = ? AND r.status NOT IN ('queued', 'running') "
        "ORDER BY j.run_id, j.seq", (host,))
    return [(r["run_id"], r["name"], r["executor"], json.loads(r["recovery_json"])) for r in rows]


def clear_recovery_record(store: Store, run_id: str, job: str) -> None:
    store.execute("UPDATE jobs SET recovery_json = NULL WHERE run_id = ? AND name = ?", (run_id, job))


def record_attempt(
    store: Store, run_id: str, job: str, attempt: int, *, status: str, failure_class: str | None,
    reason: str | None, started_at: float, finished_at: float | None, exit_code: int | None = None,
    cpu_user: float | None = None, cpu_system: float | None = None, peak_rss_kb: int | None = None,
) -> None:
    """Write (or rewrite) one attempt of a job."""
    _write_attempt(store, run_id, job, Attempt(attempt, status, failure_class, reason, started_at, finished_at,
                                               exit_code, cpu_user, cpu_system, peak_rss_kb))


def _write_attempt(conn: Store | Transaction, run_id: str, job: str, a: Attempt) -> None:
    duration = (a.finished_at - a.started_at) if a.finished_at is not None else None
    conn.execute(
        "INSERT INTO attempts (run_id, job, attempt, status, failure_class, reason, started_at, finished_at, "
        "duration, exit_code, cpu_user, cpu_system, peak_rss_kb) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (run_id, job, attempt) DO UPDATE SET status = excluded.status, "
        "failure_class = excluded.failure_class, reason = excluded.reason, started_at = excluded.started_at, "
        "finished_at = excluded.finished_at, duration = excluded.duration, exit_code = excluded.exit_code, "
        "cpu_user = excluded.cpu_user, cpu_system = excluded.cpu_system, peak_rss_kb = excluded.peak_rss_kb",
        (run_id, job, a.attempt, a.status, a.failure_class, a.reason, a.started_at, a.finished_at, duration,
         a.exit_code, a.cpu_user, a.cpu_system, a.peak_rss_kb),
    )


# -- artifacts and metrics ------------------------------------------------------------------------

def record_artifacts(store: Store, run_id: str, artifacts: Iterable[tuple[str, str, str, int, str]]) -> None:
    """Artifacts as (job, path, stored_path, size, sha256); a path collected again replaces the first."""
    rows = [(run_id, *a) for a in artifacts]
    if not rows:
        return
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO artifacts (run_id, job, path, stored_path, size, sha256) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (run_id, job, path) DO UPDATE SET stored_path = excluded.stored_path, "
            "size = excluded.size, sha256 = excluded.sha256",
            rows,
        )


def run_artifacts(store: Store, run_id: str) -> list[Row]:
    return store.query("SELECT * FROM artifacts WHERE run_id = ? ORDER BY job, path", (run_id,))


def record_metrics(store: Store, metrics: Iterable[Metric]) -> None:
    rows = _metric_rows(metrics)
    if rows:
        with store.transaction() as conn:
            conn.executemany(_INSERT_METRIC, rows)


# -- change detection -----------------------------------------------------------------------------

def store_fingerprint(store: Store) -> tuple[Any, ...]:
    """A value that changes whenever what a health report reads changes.

    A run is added (the newest creation time moves) or removed (the count drops), a run ends
    (the queued/running count drops: finished runs are final), a metric is recorded, a
    pipeline is registered. Cheap: each part is answered from an index.
    """
    row = store.query_one(
        "SELECT (SELECT COUNT(*) FROM runs) AS runs, (SELECT MAX(created_at) FROM runs) AS newest, "
        "(SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')) AS active, "
        "(SELECT MAX(id) FROM metrics) AS metric, (SELECT MAX(updated_at) FROM pipelines) AS registered"
    )
    assert row is not None
    return (row["runs"], row["newest"], row["active"], row["metric"], row["registered"])
