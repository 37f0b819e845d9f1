"""Rollback plans, executions and the per-step journal in the store (migration 0005).

Every step is written before it runs (`running`, attempt n) and after (`done` or `failed`, with
its duration and what it touched), so a process that dies mid-rollback leaves a journal that
says exactly which steps finished. An execution whose owner process is gone is resumable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from engine._process import current_owner, owner_alive
from engine.deploy.history import DeploymentHistory
from engine.errors import ConflictError, NotFoundError
from engine.rollback.plans import RollbackPlan, RollbackStep
from engine.store.base import Row, Store

__all__ = ["Journal", "owner_alive"]


class Journal:
    """Store access for the rollback package. All SQL of the area lives here."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- plans ----------------------------------------------------------------------------------
    def save_plan(self, plan: RollbackPlan) -> None:
        self.store.execute(
            "INSERT INTO rollback_plans (plan_id, deployment_id, environment, service, strategy, from_version,"
            " to_version, reason, executable, estimated_duration, estimate_basis, created_at, plan_json)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                plan.plan_id,
                plan.deployment_id,
                plan.environment,
                plan.service,
                str(plan.strategy),
                plan.from_version,
                plan.to_version,
                plan.reason,
                int(plan.executable),
                plan.estimated_duration,
                plan.estimate_basis,
                plan.created_at,
                plan.model_dump_json(),
            ),
        )

    def get_plan(self, plan_id: str) -> RollbackPlan:
        """Raises: NotFoundError: no plan with that id."""
        row = self.store.query_one("SELECT plan_json FROM rollback_plans WHERE plan_id = ?", (plan_id,))
        if row is None:
            raise NotFoundError(f"no rollback plan {plan_id!r}")
        return RollbackPlan.model_validate_json(row["plan_json"])

    def plans_for(self, deployment_id: str) -> list[RollbackPlan]:
        """The plans made for a deployment, newest first."""
        rows = self.store.query(
            "SELECT plan_json FROM rollback_plans WHERE deployment_id = ? ORDER BY created_at DESC, rowid DESC",
            (deployment_id,),
        )
        return [RollbackPlan.model_validate_json(r["plan_json"]) for r in rows]

    def measured(self, environment: str, per_action: int = 20) -> dict[str, list[float]]:
        """Durations of the last `per_action` completed steps of each action in the environment."""
        rows = self.store.query(
            "SELECT action, duration FROM rollback_steps WHERE environment = ? AND status = 'done'"
            " AND duration IS NOT NULL ORDER BY finished_at DESC LIMIT 2000",
            (environment,),
        )
        out: dict[str, list[float]] = {}
        for r in rows:
            got = out.setdefault(r["action"], [])
            if len(got) < per_action:
                got.append(float(r["duration"]))
        return out

    # -- executions -----------------------------------------------------------------------------
    def _owner(self) -> tuple[int, str, str | None]:
        return current_owner()

    def _conflict(self, environment: str) -> ConflictError:
        deploying = DeploymentHistory(self.store).active(environment)
        if deploying is not None:
            return ConflictError(
                f"environment {environment!r} is busy: deployment {deploying.name!r} ({deploying.deployment_id}, "
                f"{deploying.service} {deploying.version}) is {deploying.status}; wait for it to finish"
            )
        row = self.store.query_one(
            "SELECT execution_id, deployment_id, owner_pid FROM rollback_executions"
            " WHERE environment = ? AND status = 'running'",
            (environment,),
        )
        who = f"{row['execution_id']} (deployment {row['deployment_id']}, pid {row['owner_pid']})" if row else "another"
        return ConflictError(f"environment {environment!r} is busy: rollback {who} is running; wait for it")

    def release_stale(self, environment: str) -> None:
        """Locks on the environment held by processes that are gone are released: an execution
        left `running` becomes `failed` (and resumable), a deployment left in progress is closed."""
        DeploymentHistory(self.store).clear_stale(environment)

    def new_execution(self, plan: RollbackPlan, execution_id: str) -> None:
        """Record a running execution and its steps (pending).

        Raises:
            ConflictError: another rollback runs in the environment.
        """
        pid, host, start = self._owner()
        self.release_stale(plan.environment)
        try:
            with self.store.transaction() as conn:
                conn.execute(
                    "INSERT INTO rollback_executions (execution_id, plan_id, deployment_id, environment, status,"
                    " started_at, owner_pid, owner_host, owner_start) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                    (execution_id, plan.plan_id, plan.deployment_id, plan.environment, time.time(), pid, host, start),
                )
                conn.executemany(
                    "INSERT INTO rollback_steps (execution_id, seq, name, action, environment) VALUES (?, ?, ?, ?, ?)",
                    [(execution_id, n, s.name, s.action, plan.environment) for n, s in enumerate(plan.steps)],
                )
        except ConflictError:
            raise self._conflict(plan.environment) from None

    def claim(self, execution_id: str, environment: str) -> None:
        """Take over an unfinished execution (failed, or running with its owner gone).

        Raises:
            ConflictError: it (or another rollback in the environment) is running in a live process.
        """
        self.release_stale(environment)
        pid, host, start = self._owner()
        try:
            changed = self.store.execute(
                "UPDATE rollback_executions SET status = 'running', runs = runs + 1, started_at = ?,"
                " finished_at = NULL, owner_pid = ?, owner_host = ?, owner_start = ?, error = NULL, failed_step = NULL"
                " WHERE execution_id = ? AND status = 'failed'",
                (time.time(), pid, host, start, execution_id),
            )
        except ConflictError:
            raise self._conflict(environment) from None
        if not changed:
            raise self._conflict(environment)

    def finish(
        self, execution_id: str, status: str, duration: float, failed_step: str | None = None, error: str | None = None
    ) -> None:
        self.store.execute(
            "UPDATE rollback_executions SET status = ?, finished_at = ?, duration = ?, failed_step = ?, error = ?"
            " WHERE execution_id = ?",
            (status, time.time(), duration, failed_step, error, execution_id),
        )

    def execution(self, execution_id: str) -> Row:
        """Raises: NotFoundError: no such execution."""
        row = self.store.query_one("SELECT * FROM rollback_executions WHERE execution_id = ?", (execution_id,))
        if row is None:
            raise NotFoundError(f"no rollback execution {execution_id!r}")
        return row

    def latest_execution(self, plan_id: str) -> Row | None:
        return self.store.query_one(
            "SELECT * FROM rollback_executions WHERE plan_id = ? ORDER BY started_at DESC, rowid DESC LIMIT 1",
            (plan_id,),
        )

    # -- the journal ----------------------------------------------------------------------------
    def step_started(self, execution_id: str, seq: int, attempt: int) -> None:
        self.store.execute(
            "UPDATE rollback_steps SET status = 'running', attempts = ?, started_at = ?, finished_at = NULL,"
            " duration = NULL WHERE execution_id = ? AND seq = ?",
            (attempt, time.time(), execution_id, seq),
        )

    def step_finished(
        self, execution_id: str, seq: int, status: str, duration: float, detail: str, result: dict[str, Any]
    ) -> None:
        self.store.execute(
            "UPDATE rollback_steps SET status = ?, finished_at = ?, duration = ?, detail = ?, result_json = ?"
            " WHERE execution_id = ? AND seq = ?",
            (status, time.time(), duration, detail, json.dumps(result, default=str), execution_id, seq),
        )

    def steps(self, execution_id: str) -> list[dict[str, Any]]:
        rows = self.store.query(
            "SELECT seq, name, action, status, attempts, started_at, finished_at, duration, detail, result_json"
            " FROM rollback_steps WHERE execution_id = ? ORDER BY seq",
            (execution_id,),
        )
        out = []
        for r in rows:
            d = dict(r)
            d["result"] = json.loads(d.pop("result_json") or "{}")
            out.append(d)
        return out


def step_names(steps: Sequence[RollbackStep]) -> list[str]:
    return [s.name for s in steps]
