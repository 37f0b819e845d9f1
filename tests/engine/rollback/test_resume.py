"""A rollback killed mid-way (SIGKILL of the process running it) resumes at its first unfinished
step: steps already done are not redone, as the journal and the real processes/containers show.

The kill lands at a known step: the environment's health checks include a command check that
blocks on a gate file, so the rollback process is known to sit in verify_health when killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.deploy import Environment
from engine.rollback import RollbackManager
from engine.rollback._journal import Journal
from engine.store.sqlite import SQLiteStore
from tests.engine.rollback.helpers import FAST_CHECK, make_rigs

ROOT = Path(__file__).resolve().parents[3]

RUNNER = """
import sys, anyio
from engine.rollback import RollbackManager

async def main() -> None:
    manager = RollbackManager(workspace_dir=sys.argv[1])
    await manager.execute_rollback(sys.argv[2])

anyio.run(main)
"""


@pytest.fixture
def rigs(request: pytest.FixtureRequest, tmp_path: Path, port_pool: Any) -> Iterator[Any]:
    yield from make_rigs(request, tmp_path, port_pool)


def _gate_environment(rig: Any, tmp_path: Path) -> tuple[Path, Path]:
    reached, gate = tmp_path / "reached", tmp_path / "gate"
    env = rig.orch.get_environment("svc").model_dump(mode="json")
    env["health_checks"] = [
        FAST_CHECK,
        {
            "type": "command",
            "command": f"touch {reached}; while [ ! -f {gate} ]; do sleep 0.05; done",
            "timeout": 300,
            "retries": 1,
        },
    ]
    rig.orch.register_environment(Environment.model_validate(env))
    return reached, gate


def _wait_for(path: Path, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"the rollback process ended before reaching the gate ({proc.returncode}): {out[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail("the rollback process never reached verify_health")
        time.sleep(0.05)


KINDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]


@pytest.mark.parametrize("how", ["resume_rollback", "execute_rollback"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_killed_rollback_resumes_where_it_stopped(rigs: Any, tmp_path: Path, kind: str, how: str) -> None:
    rig = rigs(kind, router=False)
    rig.deploy("1", "rolling")
    v2 = rig.deploy("2", "rolling")
    v2_refs = {i.ref for i in anyio.run(rig.instances)}
    reached, gate = _gate_environment(rig, tmp_path)
    plan = RollbackManager(workspace_dir=rig.workspace, store=rig.orch.store).create_rollback_plan(
        v2.deployment_id, "immediate", "killed half way"
    )
    assert [s.name for s in plan.steps] == ["stop_services", "restore_backup", "restart_services", "verify_health"]

    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(rig.workspace), plan.plan_id],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(reached, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout:
            proc.stdout.close()

    journal = Journal(SQLiteStore(rig.workspace / "state.db"))
    (row,) = journal.store.query("SELECT * FROM rollback_executions WHERE plan_id = ?", (plan.plan_id,))
    execution_id = row["execution_id"]
    assert row["status"] == "running" and row["owner_pid"] == proc.pid  # its owner is dead
    before = journal.steps(execution_id)
    assert [(s["name"], s["status"], s["attempts"]) for s in before] == [
        ("stop_services", "done", 1),
        ("restore_backup", "done", 1),
        ("restart_services", "done", 1),
        ("verify_health", "running", 1),
    ]
    # The world as the killed process left it: v2 stopped, v1 started (but not yet verified).
    mid = anyio.run(rig.instances)
    assert {i.version for i in mid if i.alive} == {"1"} and not v2_refs & {i.ref for i in mid}
    v1_refs = {i.slot: i.ref for i in mid}
    assert rig.live() == "2"

    gate.write_text("open")

    async def resume() -> Any:
        manager = RollbackManager(workspace_dir=rig.workspace)
        try:
            if how == "resume_rollback":
                return await manager.resume_rollback(execution_id)
            return await manager.execute_rollback(v2.deployment_id)
        finally:
            await manager.aclose()

    result = anyio.run(resume)
    assert result.execution_id == execution_id
    assert result.status == "completed", result.errors
    assert result.runs == 2
    assert result.skipped_steps == ["stop_services", "restore_backup", "restart_services"]
    after = journal.steps(execution_id)
    for old, new in zip(before[:3], after[:3], strict=True):
        # not redone: one attempt, finished when the killed process finished it
        assert (new["attempts"], new["finished_at"], new["result"]) == (1, old["finished_at"], old["result"])
    assert (after[3]["status"], after[3]["attempts"]) == ("done", 1)
    # The same v1 processes/containers serve: nothing was restarted.
    final = anyio.run(rig.instances)
    assert {i.slot: i.ref for i in final} == v1_refs
    assert {rig.served(i.port) for i in final} == {rig.body("1")}
    assert rig.live() == "1"
    journal.store.close()
