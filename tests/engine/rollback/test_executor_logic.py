"""Executor logic with the in-memory FakeTarget/FakeRouter shipped beside the real ones and an
httpx MockTransport for the instances' HTTP: retries, a step that keeps failing, a step that
times out, and the one-rollback-per-environment lock. These paths are hard to provoke on real
processes; every strategy also runs for real (test_rollback_local.py, test_rollback_real_targets.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from engine._clock import FakeClock
from engine.deploy import DeploymentOrchestrator, DeploymentStatus, Environment
from engine.deploy.routers.base import Backend
from engine.deploy.routers.fake import FakeRouter
from engine.deploy.targets.base import Instance
from engine.deploy.targets.fake import FakeTarget
from engine.errors import ConflictError, RouterError
from engine.events import Event
from engine.rollback import RollbackManager
from engine.store.sqlite import SQLiteStore


class FlakyRouter(FakeRouter):
    """Refuses the next `failures` changes (as a failing nginx reload would)."""

    failures = 0

    async def set_backends(self, service: str, backends: Sequence[Backend]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise RouterError("fake router: reload failed")
        await super().set_backends(service, backends)


class HangingTarget(FakeTarget):
    """A target whose stop never returns (a wedged engine)."""

    hang = False

    async def stop(self, instance: Instance) -> None:
        if self.hang:
            await anyio.sleep_forever()
        await super().stop(instance)


def build(tmp_path: Path) -> tuple[DeploymentOrchestrator, HangingTarget, FlakyRouter, Any]:
    target, router = HangingTarget(), FlakyRouter()

    def answer(request: httpx.Request) -> httpx.Response:
        inst = next((i for i in target.running.values() if i.port == request.url.port), None)
        if inst is None:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200 if target.is_healthy(inst) else 500, text=str(inst.version))

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    orch = DeploymentOrchestrator(
        workspace_dir=tmp_path,
        store=SQLiteStore(tmp_path / "state.db"),
        clock=FakeClock(),
        targets={"env": target},
        routers={"env": router},
        http=http,
    )
    orch.register_environment(
        Environment.model_validate(
            {"name": "env", "service": "web", "health_checks": [{"type": "http", "retries": 3, "interval": 1}]}
        )
    )
    for v in ("1", "2"):
        orch.create_deployment(f"web-{v}", v, "env", [f"img:{v}"], "rolling")
        assert anyio.run(orch.adeploy, f"web-{v}").status == DeploymentStatus.SUCCESS
    return orch, target, router, http


def manager_for(orch: DeploymentOrchestrator, http: Any) -> RollbackManager:
    return RollbackManager(workspace_dir=orch.workspace, orchestrator=orch, clock=FakeClock(), http=http)


def test_a_failing_step_is_retried_and_the_journal_counts_the_attempts(tmp_path: Path) -> None:
    orch, target, router, http = build(tmp_path)
    manager = manager_for(orch, http)
    router.failures = 1
    events: list[Event] = []
    result = anyio.run(lambda: manager.handle_rollback("web-2", "immediate", "", on_event=events.append))
    assert result.status == "completed", result.errors
    step = next(s for s in result.steps if s.name == "switch_traffic")
    assert (step.status, step.attempts) == ("done", 2)
    assert [e.kind for e in events if e.job == "switch_traffic"] == [
        "rollback_step_started",
        "rollback_step_retrying",
        "rollback_step_started",
        "rollback_step_finished",
    ]
    assert router.weights("web") == {"1": 2}
    assert target.serving("web") == {"1"}


def test_a_step_that_keeps_failing_stops_the_plan_and_says_which_and_why(tmp_path: Path) -> None:
    orch, target, router, http = build(tmp_path)
    manager = manager_for(orch, http)
    router.failures = 99
    plan = manager.create_rollback_plan("web-2", "rolling")
    result = anyio.run(manager.execute_rollback, plan.plan_id)
    assert result.status == "failed"
    first = plan.steps[1]
    assert (result.failed_step, first.name, first.action) == ("batch 1: drain", "batch 1: drain", "route_traffic")
    assert result.errors == [
        "step 2 (batch 1: drain, route_traffic) failed: fake router: reload failed (after 3 attempts)"
    ]
    assert [s.status for s in result.steps] == ["done", "failed"] + ["pending"] * (len(plan.steps) - 2)
    assert target.serving("web") == {"2"}  # nothing after the failed step ran
    live = orch.history.live_release("env", "web")
    assert live is not None and live.version == "2"
    # Fixed, a plain execute_rollback of the deployment continues at the failed step.
    router.failures = 0
    again = anyio.run(manager.execute_rollback, "web-2")
    assert again.execution_id == result.execution_id and again.status == "completed"
    assert again.skipped_steps == ["restore_backup"] and again.runs == 2
    assert target.serving("web") == {"1"}


def test_a_step_that_hangs_is_cut_at_its_timeout(tmp_path: Path) -> None:
    orch, target, router, http = build(tmp_path)
    manager = manager_for(orch, http)
    plan = manager.create_rollback_plan("web-2", "immediate")
    quick = plan.model_copy(
        update={
            "plan_id": plan.plan_id + "-quick",
            "steps": [s.model_copy(update={"timeout": 0.2, "retries": 0}) for s in plan.steps],
        }
    )
    manager.journal.save_plan(quick)
    target.hang = True
    result = anyio.run(manager.execute_rollback, quick.plan_id)
    assert (result.status, result.failed_step) == ("failed", "stop_services")
    assert "timed out after 0.2s" in result.errors[0]


def test_one_rollback_at_a_time_per_environment(tmp_path: Path) -> None:
    orch, target, router, http = build(tmp_path)
    manager = manager_for(orch, http)
    plan = manager.create_rollback_plan("web-2", "immediate")
    manager.journal.new_execution(plan, "rx-held")  # running, owned by this live process
    with pytest.raises(ConflictError, match="rollback rx-held"):
        anyio.run(manager.execute_rollback, plan.plan_id)
    with pytest.raises(ConflictError, match="rx-held"):
        anyio.run(manager.resume_rollback, "rx-held")


def test_a_deployment_and_a_rollback_never_run_at_once_in_an_environment(tmp_path: Path) -> None:
    """Deployments and rollbacks share one lock per environment: each refuses while the other
    runs (naming it), and a lock left by a process that is gone is released, not waited on."""
    orch, target, router, http = build(tmp_path)
    manager = manager_for(orch, http)
    plan = manager.create_rollback_plan("web-2", "immediate")
    manager.journal.new_execution(plan, "rx-busy")  # running, owned by this live process
    orch.create_deployment("web-3", "3", "env", ["img:3"], "rolling")
    with pytest.raises(ConflictError, match="rollback rx-busy .* is running"):
        anyio.run(orch.adeploy, "web-3")
    assert orch.get_deployment("web-3").status == DeploymentStatus.PLANNED
    assert {i.version for i in target.running.values()} == {"2"}

    # The rollback's process dies (its owner is rewritten to a pid that is not running).
    orch.store.execute("UPDATE rollback_executions SET owner_pid = 2147483646 WHERE execution_id = 'rx-busy'")
    assert anyio.run(orch.adeploy, "web-3").status == DeploymentStatus.SUCCESS
    row = orch.store.query_one("SELECT status, error FROM rollback_executions WHERE execution_id = 'rx-busy'")
    assert row is not None and row["status"] == "failed" and "interrupted" in row["error"]

    # Now a deployment in progress (this live process) holds the environment.
    orch.create_deployment("web-4", "4", "env", ["img:4"], "rolling")
    orch.history.begin(orch.get_deployment("web-4").deployment_id, "3", [])
    plan3 = manager.create_rollback_plan("web-3", "immediate")
    with pytest.raises(ConflictError, match="deployment 'web-4' .* is in_progress"):
        anyio.run(manager.execute_rollback, plan3.plan_id)
    with pytest.raises(ConflictError, match="deployment 'web-4'"):
        anyio.run(manager.resume_rollback, "rx-busy")
    assert {i.version for i in target.running.values()} == {"3"}
