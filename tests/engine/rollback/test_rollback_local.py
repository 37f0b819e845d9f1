"""Rollbacks on the local target (real processes, real HTTP) behind a real nginx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.deploy import DeploymentStatus
from engine.errors import InputError, NotFoundError
from engine.events import Event
from engine.rollback import RollbackManager, handle_rollback
from tests.engine.rollback.helpers import DEPLOYED_WITH, make_rigs

pytestmark = [pytest.mark.nginx]


@pytest.fixture
def rigs(request: pytest.FixtureRequest, tmp_path: Path, port_pool: Any) -> Iterator[Any]:
    yield from make_rigs(request, tmp_path, port_pool)


@pytest.mark.parametrize("strategy", ["immediate", "rolling", "blue_green", "canary"])
def test_each_strategy_puts_v1_back_and_records_it_live(rigs: Any, strategy: str) -> None:
    rig = rigs("local")
    rig.deploy("1", DEPLOYED_WITH[strategy])
    v2 = rig.deploy("2", DEPLOYED_WITH[strategy])
    assert rig.served() == "2" and rig.live() == "2"
    deployed = rig.orch.history.get(v2.deployment_id)
    events: list[Event] = []

    async def go() -> Any:
        manager = RollbackManager(workspace_dir=rig.workspace)
        try:
            plan = await manager.acreate_rollback_plan(v2.deployment_id, strategy, "v2 misbehaves")
            assert manager.get_plan(plan.plan_id) == plan
            assert [p.plan_id for p in manager.plans_for(v2.deployment_id)] == [plan.plan_id]
            return plan, await manager.execute_rollback(plan.plan_id, on_event=events.append)
        finally:
            await manager.aclose()

    plan, result = anyio.run(go)
    assert (plan.from_version, plan.to_version, plan.executable) == ("2", "1", True)
    assert result.status == "completed", result.errors
    assert result.completed_steps == [s.name for s in plan.steps]
    assert {rig.served() for _ in range(8)} == {"1"}
    running = anyio.run(rig.instances)
    assert running and {i.version for i in running} == {"1"} and all(i.alive for i in running)
    assert {rig.served(i.port) for i in running} == {"1"}
    assert rig.live() == "1"
    done = [e.job for e in events if e.kind == "rollback_step_finished"]
    assert done == [s.name for s in plan.steps]
    assert events[-1].kind == "rollback_finished" and events[-1].status == "completed"
    kinds = {e["kind"] for e in rig.orch.history.events(v2.deployment_id)}
    assert {"rollback_planned", "rollback_started", "rollback_finished"} <= kinds
    rolled = rig.orch.history.get(v2.deployment_id)
    assert rolled.status == DeploymentStatus.ROLLED_BACK
    assert rolled.reason == f"rolled back to 1 by rollback {result.execution_id} (v2 misbehaves)"
    assert (rolled.finished_at, rolled.duration) == (deployed.finished_at, deployed.duration)  # its own run


def test_default_target_version_errors_and_the_module_level_convenience(
    rigs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = rigs("local", router=False)
    v1 = rig.deploy("1", "rolling")
    manager = RollbackManager(workspace_dir=rig.workspace)
    try:
        with pytest.raises(NotFoundError, match="no deployment 'nope'"):
            manager.create_rollback_plan("nope")
        with pytest.raises(InputError, match="nothing to go back to"):
            manager.create_rollback_plan(v1.deployment_id)
        v2 = rig.deploy("2", "rolling")
        with pytest.raises(InputError, match=r"version '7' .* never verified .*newest first: 2, 1"):
            manager.create_rollback_plan(v2.deployment_id, to_version="7")
        # ROLLBACK_DEFAULT_STRATEGY is "immediate"
        assert manager.create_rollback_plan(v2.deployment_id).strategy == "immediate"
    finally:
        anyio.run(manager.aclose)
    result = handle_rollback(v2.deployment_id, "rolling", "by hand", workspace_dir=rig.workspace)
    assert result.status == "completed" and rig.live() == "1"
    assert {i.version for i in anyio.run(rig.instances)} == {"1"}
    # Rolling back again returns the finished execution; nothing is done twice.
    again = anyio.run(lambda: _execute(rig.workspace, v2.deployment_id))
    assert again.execution_id == result.execution_id and again.status == "completed"
    # A new plan is estimated from the durations just measured, and says so.
    monkeypatch.setenv("ROLLBACK_DEFAULT_STRATEGY", "rolling")
    manager = RollbackManager(workspace_dir=rig.workspace)
    try:
        plan = manager.create_rollback_plan(v2.deployment_id)
    finally:
        anyio.run(manager.aclose)
    assert plan.strategy == "rolling"
    assert [s.action for s in plan.steps] == ["prepare_release", "verify_health", "verify_health"]
    assert plan.estimate_basis == "measured" and {s.estimate_source for s in plan.steps} == {"measured"}
    assert plan.estimated_duration < sum(s.timeout for s in plan.steps)


async def _execute(workspace: Path, what: str) -> Any:
    manager = RollbackManager(workspace_dir=workspace)
    try:
        return await manager.execute_rollback(what)
    finally:
        await manager.aclose()


def test_a_rollback_whose_health_check_fails_reports_it_and_leaves_the_record_honest(rigs: Any) -> None:
    rig = rigs("local")
    rig.deploy("1", "rolling")
    v2 = rig.deploy("2", "rolling")
    # v1 no longer comes up healthy (its release directory now makes /health answer 500).
    release_dirs = list((rig.workspace / "deploy" / "svc" / "releases").glob("*/1"))
    assert len(release_dirs) == 1
    (release_dirs[0] / "health_status").write_text("500")
    result = anyio.run(lambda: _execute(rig.workspace, v2.deployment_id))
    assert result.status == "failed"
    assert result.failed_step == "verify_health"
    assert "step 4 (verify_health, verify_health) failed" in result.errors[0] and "500" in result.errors[0]
    assert result.completed_steps == ["stop_services", "restore_backup", "restart_services"]
    assert [s.status for s in result.steps][3:] == ["failed", "pending"]
    assert rig.live() == "2"  # not claimed to be 1: it never passed its health check
    assert rig.orch.history.get(v2.deployment_id).status == DeploymentStatus.SUCCESS
    events = rig.orch.history.events(v2.deployment_id)
    assert "the live-version record is unchanged" in events[-1]["message"]
