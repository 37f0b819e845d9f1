"""The deployments repository: deployments, their events and steps, live releases and their
history, stored environments, and the environment lock.

The lock is the store's: one active deployment per environment (a unique partial index) and
one running rollback execution (another), and triggers that make each respect the other in
the write that takes it. A write refused by them raises `ConflictError` (see `begin`).
Values come in and go out as plain rows and strings (JSON columns stay JSON text); what they
mean is the deploy package's business.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.store._sql import insert
from engine.store.base import Row, Store

__all__ = [
    "active",
    "active_deployments",
    "add_event",
    "begin",
    "close_orphan",
    "create",
    "environment_names",
    "environment_spec",
    "events",
    "fail_execution",
    "get",
    "latest_by_name",
    "live_release",
    "mark_live",
    "recent",
    "replace_steps",
    "running_execution",
    "save_environment",
    "save_steps",
    "set_step",
    "steps",
    "update",
    "verified_releases",
]

# The columns `update` may set (a caller never names a column the schema lacks, nor injects one).
_UPDATABLE = frozenset({"status", "reason", "instances_json", "finished_at", "duration"})
_ACTIVE = ("in_progress", "rolling_back")


# -- deployments ------------------------------------------------------------------------------
def create(store: Store, values: Mapping[str, Any]) -> None:
    """Insert a deployment row (column -> value)."""
    insert(store, "deployments", values)


def get(store: Store, deployment_id: str) -> Row | None:
    return store.query_one("SELECT * FROM deployments WHERE deployment_id = ?", (deployment_id,))


def latest_by_name(store: Store, name: str) -> Row | None:
    return store.query_one(
        "SELECT * FROM deployments WHERE name = ? ORDER BY created_at DESC, seq DESC LIMIT 1", (name,)
    )


def recent(store: Store, environment: str | None, limit: int) -> list[Row]:
    """Deployments newest first, of one environment or all."""
    if environment is None:
        return store.query("SELECT * FROM deployments ORDER BY created_at DESC LIMIT ?", (limit,))
    return store.query(
        "SELECT * FROM deployments WHERE environment = ? ORDER BY created_at DESC LIMIT ?", (environment, limit)
    )


def active(store: Store, environment: str) -> Row | None:
    """The deployment holding the environment (in progress or rolling back), if any."""
    return store.query_one(
        "SELECT * FROM deployments WHERE environment = ? AND status IN (?, ?)", (environment, *_ACTIVE)
    )


def active_deployments(store: Store, environment: str | None = None) -> list[Row]:
    """Owner columns (deployment_id, status, owner_pid, owner_host, owner_start) of the active
    deployments, of one environment or all."""
    sql = (
        "SELECT deployment_id, status, owner_pid, owner_host, owner_start FROM deployments"
        " WHERE status IN (?, ?)"
    )
    if environment is None:
        return store.query(sql, _ACTIVE)
    return store.query(sql + " AND environment = ?", (*_ACTIVE, environment))


def begin(
    store: Store, deployment_id: str, *, previous_version: str | None, before_json: str,
    owner: tuple[int, str, str | None], started_at: float, from_status: str, to_status: str,
) -> int:
    """Move a planned deployment in progress and take the environment's lock in one write;
    returns the rows changed (0: it was no longer `from_status`).

    Raises:
        ConflictError: the environment is held (another deployment, or a running rollback).
    """
    pid, host, identity = owner
    return store.execute(
        "UPDATE deployments SET status = ?, started_at = ?, previous_version = ?, before_json = ?,"
        " owner_pid = ?, owner_host = ?, owner_start = ? WHERE deployment_id = ? AND status = ?",
        (to_status, started_at, previous_version, before_json, pid, host, identity, deployment_id, from_status),
    )


def close_orphan(
    store: Store, deployment_id: str, *, from_status: str, to_status: str, reason: str, finished_at: float
) -> int:
    """Close a deployment whose process is gone (only if it is still `from_status`)."""
    return store.execute(
        "UPDATE deployments SET status = ?, reason = ?, finished_at = ? WHERE deployment_id = ? AND status = ?",
        (to_status, reason, finished_at, deployment_id, from_status),
    )


def update(store: Store, deployment_id: str, fields: Mapping[str, Any]) -> None:
    """Set some of status, reason, instances_json, finished_at, duration.

    Raises:
        ValueError: a field that may not be set this way (a programming error).
    """
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"deployment fields {sorted(unknown)} cannot be updated")
    if not fields:
        return
    cols = list(fields)
    store.execute(
        f"UPDATE deployments SET {', '.join(f'{c} = ?' for c in cols)} WHERE deployment_id = ?",
        (*(fields[c] for c in cols), deployment_id),
    )


# -- the environment lock, as rollback executions hold it --------------------------------------
def running_execution(store: Store, environment: str) -> Row | None:
    """The rollback execution running in the environment (execution_id, deployment_id and its
    owner columns), if any."""
    return store.query_one(
        "SELECT execution_id, deployment_id, owner_pid, owner_host, owner_start FROM rollback_executions"
        " WHERE environment = ? AND status = 'running'",
        (environment,),
    )


def fail_execution(store: Store, execution_id: str, *, from_status: str, to_status: str, error: str) -> int:
    """Mark a rollback execution whose process is gone as failed (only if still `from_status`)."""
    return store.execute(
        "UPDATE rollback_executions SET status = ?, error = ? WHERE execution_id = ? AND status = ?",
        (to_status, error, execution_id, from_status),
    )


# -- events and steps -------------------------------------------------------------------------
def add_event(store: Store, deployment_id: str, ts: float, kind: str, message: str, data_json: str) -> None:
    store.execute(
        "INSERT INTO deployment_events (deployment_id, ts, kind, message, data_json) VALUES (?, ?, ?, ?, ?)",
        (deployment_id, ts, kind, message, data_json),
    )


def events(store: Store, deployment_id: str) -> list[Row]:
    """(ts, kind, message, data_json) in the order they were added."""
    return store.query(
        "SELECT ts, kind, message, data_json FROM deployment_events WHERE deployment_id = ? ORDER BY id",
        (deployment_id,),
    )


def save_steps(store: Store, deployment_id: str, steps: Iterable[tuple[int, str, str]]) -> None:
    """Record planned steps (seq, kind, description), replacing any with the same seq."""
    store.executemany(
        "INSERT INTO deployment_steps (deployment_id, seq, kind, description) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (deployment_id, seq) DO UPDATE SET kind = excluded.kind,"
        " description = excluded.description, status = 'pending', started_at = NULL, finished_at = NULL,"
        " detail = NULL",
        [(deployment_id, seq, kind, desc) for seq, kind, desc in steps],
    )


def replace_steps(store: Store, deployment_id: str, steps: Iterable[tuple[int, str, str]]) -> None:
    """Record a plan in place of every step saved before."""
    with store.transaction() as tx:
        tx.execute("DELETE FROM deployment_steps WHERE deployment_id = ?", (deployment_id,))
        tx.executemany(
            "INSERT INTO deployment_steps (deployment_id, seq, kind, description) VALUES (?, ?, ?, ?)",
            [(deployment_id, seq, kind, desc) for seq, kind, desc in steps],
        )


def set_step(store: Store, deployment_id: str, seq: int, status: str, ts: float, detail: str | None) -> None:
    """A step's status; `ts` is its start when it starts running, else its finish."""
    col = "started_at" if status == "running" else "finished_at"
    store.execute(
        f"UPDATE deployment_steps SET status = ?, {col} = ?, detail = COALESCE(?, detail)"
        " WHERE deployment_id = ? AND seq = ?",
        (status, ts, detail, deployment_id, seq),
    )


def steps(store: Store, deployment_id: str) -> list[Row]:
    return store.query(
        "SELECT seq, kind, description, status, detail FROM deployment_steps WHERE deployment_id = ? ORDER BY seq",
        (deployment_id,),
    )


# -- releases ---------------------------------------------------------------------------------
def mark_live(
    store: Store, environment: str, service: str, version: str, deployment_id: str, artifacts_json: str,
    how: str, verified_at: float,
) -> None:
    """Record `version` as the live, verified release, and add it to the release history."""
    with store.transaction() as tx:
        tx.execute(
            "INSERT INTO releases"
            " (environment, service, version, deployment_id, artifacts_json, verified_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (environment, service) DO UPDATE SET"
            " version = excluded.version, deployment_id = excluded.deployment_id,"
            " artifacts_json = excluded.artifacts_json, verified_at = excluded.verified_at",
            (environment, service, version, deployment_id, artifacts_json, verified_at),
        )
        tx.execute(
            "INSERT INTO release_history"
            " (environment, service, version, deployment_id, artifacts_json, how,"
            " verified_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (environment, service, version, deployment_id, artifacts_json, how, verified_at),
        )


def live_release(store: Store, environment: str, service: str) -> Row | None:
    return store.query_one("SELECT * FROM releases WHERE environment = ? AND service = ?", (environment, service))


def verified_releases(store: Store, environment: str, service: str, limit: int) -> list[Row]:
    """Release history rows, newest first."""
    return store.query(
        "SELECT * FROM release_history WHERE environment = ? AND service = ? ORDER BY id DESC LIMIT ?",
        (environment, service, limit),
    )


# -- stored environments ----------------------------------------------------------------------
def save_environment(store: Store, name: str, spec_json: str, source_path: str | None, updated_at: float) -> None:
    store.execute(
        "INSERT INTO deploy_environments (name, spec_json, source_path, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET spec_json = excluded.spec_json,"
        " source_path = excluded.source_path, updated_at = excluded.updated_at",
        (name, spec_json, source_path, updated_at),
    )


def environment_spec(store: Store, name: str) -> str | None:
    """The stored spec (JSON text) of an environment, or None."""
    row = store.query_one("SELECT spec_json FROM deploy_environments WHERE name = ?", (name,))
    return None if row is None else str(row["spec_json"])


def environment_names(store: Store) -> list[str]:
    return [r["name"] for r in store.query("SELECT name FROM deploy_environments ORDER BY name")]
