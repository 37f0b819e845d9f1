"""The rollbacks repository: rollback plans, their executions and the per-step journal.

Plans are stored whole (JSON) beside the columns they are looked up by. An execution row
holds the environment lock while it is `running` (see `engine.store.deployments`); creating
or resuming one the lock refuses raises `ConflictError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.store._sql import insert
from engine.store.base import Row, Store

__all__ = [
    "claim_execution",
    "execution",
    "finish_execution",
    "latest_execution",
    "new_execution",
    "plan_json",
    "plans_json",
    "save_plan",
    "step_durations",
    "step_finished",
    "step_started",
    "steps",
]


# -- plans ------------------------------------------------------------------------------------
def save_plan(store: Store, values: Mapping[str, Any]) -> None:
    """Insert a plan row (column -> value, `plan_json` the whole plan)."""
    insert(store, "rollback_plans", values)


def plan_json(store: Store, plan_id: str) -> str | None:
    row = store.query_one("SELECT plan_json FROM rollback_plans WHERE plan_id = ?", (plan_id,))
    return None if row is None else str(row["plan_json"])


def plans_json(store: Store, deployment_id: str) -> list[str]:
    """The plans made for a deployment, newest first."""
    rows = store.query(
        "SELECT plan_json FROM rollback_plans WHERE deployment_id = ? ORDER BY created_at DESC, seq DESC",
        (deployment_id,),
    )
    return [str(r["plan_json"]) for r in rows]


def step_durations(store: Store, environment: str, limit: int = 2000) -> list[Row]:
    """(action, duration) of the environment's completed steps, newest first."""
    return store.query(
        "SELECT action, duration FROM rollback_steps WHERE environment = ? AND status = 'done'"
        " AND duration IS NOT NULL ORDER BY finished_at DESC LIMIT ?",
        (environment, limit),
    )


# -- executions -------------------------------------------------------------------------------
def new_execution(
    store: Store, *, execution_id: str, plan_id: str, deployment_id: str, environment: str, status: str,
    started_at: float, owner: tuple[int, str, str | None], steps: Sequence[tuple[str, str]],
) -> None:
    """Record an execution and its steps (name, action), pending, in one transaction.

    Raises:
        ConflictError: the environment lock refused it.
    """
    pid, host, start = owner
    with store.transaction() as tx:
        tx.execute(
            "INSERT INTO rollback_executions (execution_id, plan_id, deployment_id, environment, status,"
            " started_at, owner_pid, owner_host, owner_start) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (execution_id, plan_id, deployment_id, environment, status, started_at, pid, host, start),
        )
        tx.executemany(
            "INSERT INTO rollback_steps (execution_id, seq, name, action, environment) VALUES (?, ?, ?, ?, ?)",
            [(execution_id, n, name, action, environment) for n, (name, action) in enumerate(steps)],
        )


def claim_execution(
    store: Store, execution_id: str, *, from_status: str, to_status: str, started_at: float,
    owner: tuple[int, str, str | None],
) -> int:
    """Take over an execution that is still `from_status`, as a new run; returns rows changed.

    Raises:
        ConflictError: the environment lock refused it.
    """
    pid, host, start = owner
    return store.execute(
        "UPDATE rollback_executions SET status = ?, runs = runs + 1, started_at = ?,"
        " finished_at = NULL, owner_pid = ?, owner_host = ?, owner_start = ?, error = NULL, failed_step = NULL"
        " WHERE execution_id = ? AND status = ?",
        (to_status, started_at, pid, host, start, execution_id, from_status),
    )


def finish_execution(
    store: Store, execution_id: str, *, from_status: str, to_status: str, finished_at: float, duration: float,
    failed_step: str | None, error: str | None,
) -> int:
    """End an execution that is still `from_status`; returns rows changed."""
    return store.execute(
        "UPDATE rollback_executions SET status = ?, finished_at = ?, duration = ?, failed_step = ?, error = ?"
        " WHERE execution_id = ? AND status = ?",
        (to_status, finished_at, duration, failed_step, error, execution_id, from_status),
    )


def execution(store: Store, execution_id: str) -> Row | None:
    return store.query_one("SELECT * FROM rollback_executions WHERE execution_id = ?", (execution_id,))


def latest_execution(store: Store, plan_id: str) -> Row | None:
    return store.query_one(
        "SELECT * FROM rollback_executions WHERE plan_id = ? ORDER BY started_at DESC, seq DESC LIMIT 1",
        (plan_id,),
    )


# -- the journal ------------------------------------------------------------------------------
def step_started(store: Store, execution_id: str, seq: int, attempt: int, started_at: float) -> None:
    store.execute(
        "UPDATE rollback_steps SET status = 'running', attempts = ?, started_at = ?, finished_at = NULL,"
        " duration = NULL WHERE execution_id = ? AND seq = ?",
        (attempt, started_at, execution_id, seq),
    )


def step_finished(
    store: Store, execution_id: str, seq: int, *, status: str, finished_at: float, duration: float, detail: str,
    result_json: str,
) -> None:
    store.execute(
        "UPDATE rollback_steps SET status = ?, finished_at = ?, duration = ?, detail = ?, result_json = ?"
        " WHERE execution_id = ? AND seq = ?",
        (status, finished_at, duration, detail, result_json, execution_id, seq),
    )


def steps(store: Store, execution_id: str) -> list[Row]:
    """The journal of an execution, in step order."""
    return store.query(
        "SELECT seq, name, action, status, attempts, started_at, finished_at, duration, detail, result_json"
        " FROM rollback_steps WHERE execution_id = ? ORDER BY seq",
        (execution_id,),
    )
