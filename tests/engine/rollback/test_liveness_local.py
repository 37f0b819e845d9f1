"""Rollback plans answer about what is live now (local target, real processes, no router).

The case from the field: v1, v2, v3 deployed; v3 rolled back (v2 live), then v2 rolled back (v1
live). A plan for v3's deployment made now must not claim "from 3 to 2": it would replace the
live v1 with v2, a roll forward, so it says so and runs only when forced. A replayed execution
says it was already completed and when.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.errors import InputError
from engine.rollback import RollbackManager
from tests.engine.rollback.helpers import make_rigs


@pytest.fixture
def rigs(request: pytest.FixtureRequest, tmp_path: Path, port_pool: Any) -> Iterator[Any]:
    yield from make_rigs(request, tmp_path, port_pool)


async def _versions(rig: Any) -> set[str]:
    return {i.version for i in await rig.instances() if i.alive}


def test_a_plan_for_a_rolled_back_deployment_made_while_v1_is_live_warns_and_needs_force(rigs: Any) -> None:
    rig = rigs("local", router=False)
    v1 = rig.deploy("1", "rolling")
    v2 = rig.deploy("2", "rolling")
    v3 = rig.deploy("3", "rolling")

    async def go() -> None:
        manager = RollbackManager(workspace_dir=rig.workspace)
        try:
            first = await manager.acreate_rollback_plan(v3.deployment_id)
            assert (first.from_version, first.to_version, first.deployment_live, first.warnings) == ("3", "2", True, [])
            done = await manager.execute_rollback(first.plan_id)
            assert done.status == "completed" and not done.replayed and rig.live() == "2"
            replay = await manager.execute_rollback(first.plan_id)
            assert replay.replayed and replay.execution_id == done.execution_id
            assert replay.finished_at is not None and replay.status == "completed"
            back = await manager.handle_rollback(v2.deployment_id)
            assert back.status == "completed" and rig.live() == "1" and await _versions(rig) == {"1"}

            plan = await manager.acreate_rollback_plan(v3.deployment_id)
            assert (plan.from_version, plan.to_version, plan.deployment_live) == ("1", "2", False)
            assert len(plan.warnings) == 1
            assert plan.warnings[0].startswith(
                f"deployment {v3.deployment_id} (version 3, rolled_back) is not live: "
                f"version 1 is (deployment {v1.deployment_id} since "
            )
            assert "this plan would replace 1 with 2" in plan.warnings[0]
            assert manager.get_plan(plan.plan_id).warnings == plan.warnings
            with pytest.raises(InputError, match="force=true"):
                await manager.execute_rollback(plan.plan_id)
            # Refused before anything was touched.
            assert rig.live() == "1" and await _versions(rig) == {"1"}
            forced = await manager.execute_rollback(plan.plan_id, force=True)
            assert forced.status == "completed" and rig.live() == "2" and await _versions(rig) == {"2"}
        finally:
            await manager.aclose()

    anyio.run(go)
