"""Rollbacks on a real Docker engine and real sshd hosts (the deploy tests' fixtures), behind a
real nginx; and a MANUAL runbook whose commands, run here with bash, roll the docker target back."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.errors import InputError
from engine.rollback import RollbackManager
from tests.engine.rollback.helpers import DEPLOYED_WITH, make_rigs

pytestmark = [pytest.mark.slow]


@pytest.fixture
def rigs(request: pytest.FixtureRequest, tmp_path: Path, port_pool: Any) -> Iterator[Any]:
    yield from make_rigs(request, tmp_path, port_pool)


KINDS = [
    pytest.param("docker", marks=[pytest.mark.docker, pytest.mark.nginx]),
    pytest.param("ssh", marks=[pytest.mark.ssh, pytest.mark.nginx]),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("strategy", ["immediate", "rolling", "blue_green", "canary"])
def test_each_strategy_puts_v1_back_on_the_real_target(rigs: Any, kind: str, strategy: str) -> None:
    rig = rigs(kind)
    rig.deploy("1", DEPLOYED_WITH[strategy])
    v2 = rig.deploy("2", DEPLOYED_WITH[strategy])
    assert rig.served() == rig.body("2")

    async def go() -> Any:
        manager = RollbackManager(workspace_dir=rig.workspace)
        try:
            return await manager.handle_rollback(v2.deployment_id, strategy, "v2 misbehaves")
        finally:
            await manager.aclose()

    result = anyio.run(go)
    assert result.status == "completed", result.errors
    assert {rig.served() for _ in range(8)} == {rig.body("1")}
    running = anyio.run(rig.instances)
    assert running and {i.version for i in running} == {"1"} and all(i.alive for i in running)
    assert {rig.served(i.port) for i in running} == {rig.body("1")}
    assert rig.live() == "1"


@pytest.mark.docker
def test_a_manual_runbook_run_by_bash_rolls_the_docker_target_back(rigs: Any, docker_client: Any) -> None:
    rig = rigs("docker", router=False)
    rig.deploy("1", "rolling")
    v2 = rig.deploy("2", "rolling")
    v2_ids = {i.ref for i in anyio.run(rig.instances)}
    manager = RollbackManager(workspace_dir=rig.workspace)
    try:
        plan = manager.create_rollback_plan(v2.deployment_id, "manual", "operator wants to do it")
        assert not plan.executable and plan.runbook
        assert "not executable" in plan.runbook
        with pytest.raises(InputError, match="not executable"):
            anyio.run(manager.execute_rollback, plan.plan_id)
        # Planning changed nothing.
        assert {i.ref for i in anyio.run(rig.instances)} == v2_ids and rig.live() == "2"

        blocks = re.findall(r"```bash\n(.*?)```", plan.runbook, flags=re.S)
        assert len(blocks) == len(plan.steps)
        for block in blocks:
            done = subprocess.run(["bash", "-e", "-c", block], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"

        running = anyio.run(rig.instances)
        assert {i.version for i in running} == {"1"} and all(i.alive for i in running)
        assert not v2_ids & {i.ref for i in running}
        assert {rig.served(i.port) for i in running} == {"v1"}
        assert all(docker_client.containers.get(i.ref).attrs["HostConfig"]["Init"] for i in running)
        assert rig.live() == "2"  # the engine was not told yet
        assert anyio.run(manager.confirm_manual, plan.plan_id) is True
        assert rig.live() == "1"
    finally:
        anyio.run(manager.aclose)
