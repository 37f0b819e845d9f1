"""Rollback plans, executions and the per-step journal, kept through the rollbacks repository
(`engine.store.rollbacks`, where the SQL is). Execution status moves are checked against
`engine.deploy.states.EXECUTION_TRANSITIONS`.

Every step is written before it runs (`running`, attempt n) and after (`done` or `failed`, with
its duration and what it touched), so a process that dies mid-rollback leaves a journal that
says exactly which steps finished. An execution whose owner process is gone is resumable.
"""

from __future__ import annotations

import json
import time
from typing import Any

from engine._process import current_owner, owner_alive
from engine.deploy.history import DeploymentHistory
from engine.deploy.states import ExecutionStatus, check_execution_move
from engine.errors import ConflictError, NotFoundError
from engine.rollback.plans import RollbackPlan
from engine.store import deployments as deployments_repo
from engine.store import rollbacks as repo
from engine.store.base import Row, Store

__all__ = ["Journal", "owner_alive"]


class Journal:
    """Store access for the rollback package."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- plans ----------------------------------------------------------------------------------
    def save_plan(self, plan: RollbackPlan) -> None:
        repo.save_plan(
            self.store,
            {
                "plan_id": plan.plan_id,
                "deployment_id": plan.deployment_id,
                "environment": plan.environment,
                "service": plan.service,
                "strategy": str(plan.strategy),
                "from_version": plan.from_version,
                "to_version": plan.to_version,
                "reason": plan.reason,
                "executable": int(plan.executable),
                "estimated_duration": plan.estimated_duration,
                "estimate_basis": plan.estimate_basis,
                "created_at": plan.created_at,
                "plan_json": plan.model_dump_json(),
            },
        )

    def get_plan(self, plan_id: str) -> RollbackPlan:
        """Raises: NotFoundError: no plan with that id."""
        text = repo.plan_json(self.store, plan_id)
        if text is None:
            raise NotFoundError(f"no rollback plan {plan_id!r}")
        return RollbackPlan.model_validate_json(text)

    def plans_for(self, deployment_id: str) -> list[RollbackPlan]:
        """The plans made for a deployment, newest first."""
        return [RollbackPlan.model_validate_json(text) for text in repo.plans_json(self.store, deployment_id)]

    def measured(self, environment: str, per_action: int = 20) -> dict[str, list[float]]:
        """Durations of the last `per_action` completed steps of each action in the environment."""
        out: dict[str, list[float]] = {}
        for r in repo.step_durations(self.store, environment):
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
        row = deployments_repo.running_execution(self.store, environment)
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
            repo.new_execution(
                self.store,
                execution_id=execution_id,
                plan_id=plan.plan_id,
                deployment_id=plan.deployment_id,
                environment=plan.environment,
                status=str(ExecutionStatus.RUNNING),
                started_at=time.time(),
                owner=(pid, host, start),
                steps=[(s.name, s.action) for s in plan.steps],
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
            changed = repo.claim_execution(
                self.store,
                execution_id,
                from_status=str(ExecutionStatus.FAILED),
                to_status=str(check_execution_move(execution_id, ExecutionStatus.FAILED, ExecutionStatus.RUNNING)),
                started_at=time.time(),
                owner=(pid, host, start),
            )
        except ConflictError:
            raise self._conflict(environment) from None
        if not changed:
            raise self._conflict(environment)

    def finish(
        self, execution_id: str, status: str, duration: float, failed_step: str | None = None, error: str | None = None
    ) -> None:
        """running -> completed | failed.

        Raises:
            InvalidTransition: `status` is not a state a running execution may end in.
        """
        new = check_execution_move(execution_id, ExecutionStatus.RUNNING, ExecutionStatus(status))
        repo.finish_execution(
            self.store,
            execution_id,
            from_status=str(ExecutionStatus.RUNNING),
            to_status=str(new),
            finished_at=time.time(),
            duration=duration,
            failed_step=failed_step,
            error=error,
        )

    def execution(self, execution_id: str) -> Row:
        """Raises: NotFoundError: no such execution."""
        row = repo.execution(self.store, execution_id)
        if row is None:
            raise NotFoundError(f"no rollback execution {execution_id!r}")
        return row

    def latest_execution(self, plan_id: str) -> Row | None:
        return repo.latest_execution(self.store, plan_id)

    # -- the journal ----------------------------------------------------------------------------
    def step_started(self, execution_id: str, seq: int, attempt: int) -> None:
        repo.step_started(self.store, execution_id, seq, attempt, time.time())

    def step_finished(
        self, execution_id: str, seq: int, status: str, duration: float, detail: str, result: dict[str, Any]
    ) -> None:
        repo.step_finished(
            self.store, execution_id, seq, status=status, finished_at=time.time(), duration=duration, detail=detail,
            result_json=json.dumps(result, default=str),
        )

    def steps(self, execution_id: str) -> list[dict[str, Any]]:
        out = []
        for r in repo.steps(self.store, execution_id):
            d = dict(r)
            d["result"] = json.loads(d.pop("result_json") or "{}")
            out.append(d)
        return out
