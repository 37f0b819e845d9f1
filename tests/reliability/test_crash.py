"""SIGKILL the server (a stdio subprocess) in the middle of a pipeline run, a deployment and a
rollback; restart it and check what survived.

The killed server is driven with raw JSON-RPC lines on its stdin (so that the test owns the
process and can kill it mid-call); the restarted one through the SDK's stdio client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import anyio
import mcp
import pytest

from engine.store import open_store
from tests.engine.deploy.helpers import APP_COMMAND, make_release, served_version
from tests.reliability.conftest import REPO, free_port, policy_text, server_env, stdio_params, text, wait_for

pytestmark = pytest.mark.anyio


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # gone: FileNotFoundError, or ProcessLookupError when it dies while read
        return False


class RawStdioServer:
    """`python -m server serve` on pipes; requests written as JSON lines, answers not awaited."""

    def __init__(self, workspace: Path, policy: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--policy", str(policy)], cwd=REPO, env=server_env(workspace),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._id = 0
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "crash-test", "version": "1"}})
        self._read_reply(1)
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _send(self, msg: dict[str, Any]) -> None:
        stdin: IO[bytes] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(json.dumps(msg).encode() + b"\n")
        stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> int:
        self._id += 1
        self._send({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        return self._id

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self._read_reply(self.request("tools/call", {"name": tool, "arguments": arguments}))

    def _read_reply(self, want: int) -> dict[str, Any]:
        stdout: IO[bytes] | None = self.proc.stdout
        assert stdout is not None
        while True:
            line = stdout.readline()
            assert line, "the server closed its stdout"
            msg = json.loads(line)
            if msg.get("id") == want:
                assert "result" in msg, msg
                result: dict[str, Any] = msg["result"]
                return result

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(policy_text())
    return p


# -- pipeline run ---------------------------------------------------------------------------------

CRASHY = """\
name: crashy
source: null
stages:
  - name: build
    jobs:
      - name: first
        commands:
          - echo "first job output line"
          - echo first-done > out.txt
        artifacts: [out.txt]
  - name: slow
    jobs:
      - name: long
        runs_on: local   # a host pid in the pid file, and a job that outlives its runner until recovery
        commands: ["echo $$ > {pidfile}; while [ ! -e {gate} ]; do sleep 0.1; done"]
"""


def kill_runner(workspace: Path, run_id: str) -> None:
    """SIGKILL the runner process that owns `run_id` (as the OOM killer or a crash would)."""
    with open_store(workspace) as store:
        owner = store.query_one("SELECT owner_pid FROM runs WHERE run_id = ?", (run_id,))
    assert owner is not None and owner["owner_pid"], "a running run has its runner on record"
    os.kill(int(owner["owner_pid"]), signal.SIGKILL)
    wait_for(lambda: not alive(int(owner["owner_pid"])), 10, "the runner to die")


async def test_sigkill_mid_run(tmp_path: Path, workspace: Path, policy: Path) -> None:
    pidfile, gate = tmp_path / "job.pid", tmp_path / "gate"
    pipeline = tmp_path / "crashy.yaml"
    pipeline.write_text(CRASHY.format(pidfile=pidfile, gate=gate))
    server = RawStdioServer(workspace, policy)
    try:
        started = server.call("run_pipeline", {"config_path": str(pipeline), "wait": False})
        run_id = started["structuredContent"]["run_id"]
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 60, "the long job to start")
        job_pid = int(pidfile.read_text())
        kill_runner(workspace, run_id)   # the run's own runner process: runs outlive the server by design
        server.kill()
    finally:
        if server.proc.poll() is None:
            server.kill()
    assert alive(job_pid), "the job should outlive its killed runner (nothing has cleaned up yet)"
    with open_store(workspace) as store:
        assert store.query_one("SELECT status FROM runs WHERE run_id = ?", (run_id,))["status"] == "running"

    async with mcp.Client(stdio_params(workspace, policy)) as client:
        got = await client.call_tool("get_run", {"run_id": run_id})
        run = got.structured_content
        assert run is not None and run["status"] == "interrupted", text(got)
        jobs = {j["name"]: j for j in run["jobs"]}
        assert jobs["first"]["status"] == "succeeded" and jobs["long"]["status"] == "cancelled"
        wait_for(lambda: not alive(job_pid), 10, "the orphaned job to be killed")
        logs = await client.call_tool("get_job_logs", {"run_id": run_id, "job": "first"})
        assert "first job output line" in text(logs)
        whole = await client.read_resource(f"cicd://runs/{run_id}/logs/first")
        assert "first job output line" in str(whole.contents[0])
        gate.touch()
        again = await client.call_tool("run_pipeline", {"config_path": str(pipeline)})
        assert again.structured_content and again.structured_content["status"] == "succeeded", text(again)
    with open_store(workspace) as store:
        art = store.query_one("SELECT stored_path, sha256 FROM artifacts WHERE run_id = ? AND job = 'first'",
                              (run_id,))
        statuses = [r["status"] for r in store.query("SELECT status FROM runs ORDER BY created_at")]
    assert Path(art["stored_path"]).read_text() == "first-done\n"
    assert statuses == ["interrupted", "succeeded"]


async def test_restart_alone_recovers_the_killed_run(tmp_path: Path, workspace: Path, policy: Path) -> None:
    pidfile, gate = tmp_path / "job.pid", tmp_path / "gate"
    pipeline = tmp_path / "crashy.yaml"
    pipeline.write_text(CRASHY.format(pidfile=pidfile, gate=gate))
    server = RawStdioServer(workspace, policy)
    try:
        run_id = server.call("run_pipeline", {"config_path": str(pipeline), "wait": False})["structuredContent"][
            "run_id"]
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 60, "the long job to start")
        job_pid = int(pidfile.read_text())
        kill_runner(workspace, run_id)
    finally:
        server.kill()
    try:
        async with mcp.Client(stdio_params(workspace, policy)) as client:
            await client.call_tool("pipeline_health", {})
            with open_store(workspace) as store:
                status = store.query_one("SELECT status FROM runs WHERE run_id = ?", (run_id,))["status"]
            orphan = alive(job_pid)
    finally:
        if alive(job_pid):
            os.killpg(job_pid, signal.SIGKILL)
    assert status == "interrupted" and not orphan


# -- deployment and rollback ----------------------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path, workspace: Path) -> Iterator[dict[str, Any]]:
    """A deployment config on the local target whose health check waits for a gate file, so a
    deployment or a rollback can be caught mid-way; versions 1 and 2 already deployed."""
    from engine.deploy.orchestrator import DeploymentOrchestrator

    gate = tmp_path / "healthy"
    gate.touch()
    port = free_port()
    config = tmp_path / "deploy.yaml"
    config.write_text(textwrap.dedent(f"""\
        environments:
          - name: staging
            type: testing
            target: {{kind: local, command: "{APP_COMMAND}", ports: [{port}]}}
            strategy: recreate
            health_checks:
              - {{type: http, url: "http://{{host}}:{{port}}/health", retries: 100, interval: 0.1}}
              - {{type: command, command: "test -e {gate}", retries: 3000, interval: 0.1}}
        """))
    orch = DeploymentOrchestrator(config, workspace)
    ids = {}
    for version in ("1", "2"):
        orch.create_deployment(f"svc-{version}", version, "staging", [str(make_release(tmp_path, version))])
        result = orch.deploy(f"svc-{version}")
        assert str(result.status) == "success", result.reason
        ids[version] = result.deployment_id
    yield {"config": config, "gate": gate, "port": port, "ids": ids, "release3": make_release(tmp_path, "3")}

    async def stop() -> None:
        fresh = DeploymentOrchestrator(config, workspace)
        env = fresh.get_environment("staging")
        target = fresh.target_for(env)
        for inst in await target.instances(env.service_name):
            await target.stop(inst)
        await fresh.aclose()
        await orch.aclose()

    anyio.run(stop)


def _live(workspace: Path) -> str | None:
    from engine.deploy.history import DeploymentHistory

    with open_store(workspace) as store:
        rec = DeploymentHistory(store).live_release("staging", "staging")
    return rec.version if rec else None


def _status(workspace: Path, deployment_id: str) -> str:
    with open_store(workspace) as store:
        return str(store.query_one("SELECT status FROM deployments WHERE deployment_id = ?",
                                   (deployment_id,))["status"])


def _newest_deployment(workspace: Path) -> str:
    with open_store(workspace) as store:
        return str(store.query_one("SELECT deployment_id FROM deployments ORDER BY created_at DESC")["deployment_id"])


def _serving(port: int) -> str | None:
    try:
        return served_version(port)
    except Exception:  # noqa: BLE001 - nothing listening is an answer too
        return None


async def test_sigkill_mid_deployment(workspace: Path, policy: Path, service: dict[str, Any]) -> None:
    gate, port = service["gate"], service["port"]
    gate.unlink()   # version 3's health check now waits
    server = RawStdioServer(workspace, policy)
    try:
        server.request("tools/call", {"name": "deploy", "arguments": {
            "config_path": str(service["config"]), "environment": "staging", "version": "3",
            "artifacts": [str(service["release3"])], "rollback_on_failure": True}})
        wait_for(lambda: _serving(port) == "3", 60, "version 3 to be started and under health check")
        deployment = _newest_deployment(workspace)
        assert _status(workspace, deployment) == "in_progress"
    finally:
        server.kill()
    gate.touch()
    # The restarted server deploys again: the dead deployment is marked, not left blocking.
    async with mcp.Client(stdio_params(workspace, policy)) as client:
        again = await client.call_tool("deploy", {"config_path": str(service["config"]), "environment": "staging",
                                                  "version": "3", "name": "svc-3-again",
                                                  "artifacts": [str(service["release3"])]})
        assert again.structured_content and again.structured_content["status"] == "success", text(again)
        record = await client.read_resource(f"cicd://deployments/{deployment}")
    assert json.loads(str(record.contents[0].text))["status"] == "failure"   # type: ignore[union-attr]
    assert "interrupted" in (json.loads(str(record.contents[0].text))["reason"] or "")  # type: ignore[union-attr]
    assert _serving(port) == "3" and _live(workspace) == "3"


async def test_restart_marks_the_killed_deployment(workspace: Path, policy: Path, service: dict[str, Any]) -> None:
    gate, port = service["gate"], service["port"]
    gate.unlink()
    server = RawStdioServer(workspace, policy)
    try:
        server.request("tools/call", {"name": "deploy", "arguments": {
            "config_path": str(service["config"]), "environment": "staging", "version": "3",
            "artifacts": [str(service["release3"])]}})
        wait_for(lambda: _serving(port) == "3", 60, "version 3 to be under health check")
        deployment = _newest_deployment(workspace)
    finally:
        server.kill()
    gate.touch()
    async with mcp.Client(stdio_params(workspace, policy)) as client:
        record = await client.read_resource(f"cicd://deployments/{deployment}")
    assert json.loads(str(record.contents[0].text))["status"] != "in_progress"   # type: ignore[union-attr]


async def test_sigkill_mid_rollback_resumes_from_the_journal(workspace: Path, policy: Path,
                                                             service: dict[str, Any]) -> None:
    gate, port = service["gate"], service["port"]
    assert _serving(port) == "2" and _live(workspace) == "2"
    gate.unlink()   # version 1's health check, inside the rollback, now waits
    server = RawStdioServer(workspace, policy)
    try:
        server.request("tools/call", {"name": "execute_rollback", "arguments": {"deployment_id": service["ids"]["2"]}})
        wait_for(lambda: _serving(port) == "1", 60, "version 1 to be started by the rollback")
        with open_store(workspace) as store:
            execution = store.query_one("SELECT * FROM rollback_executions")
            done_before = [r["name"] for r in store.query(
                "SELECT name FROM rollback_steps WHERE execution_id = ? AND status = 'done' ORDER BY seq",
                (execution["execution_id"],))]
        assert execution["status"] == "running"
    finally:
        server.kill()
    assert _live(workspace) == "2"   # not verified yet: the record must not claim version 1
    gate.touch()
    async with mcp.Client(stdio_params(workspace, policy)) as client:
        resumed = await client.call_tool("execute_rollback", {"deployment_id": service["ids"]["2"]})
    out = resumed.structured_content
    assert out is not None and out["status"] == "completed", text(resumed)
    assert out["execution_id"] == execution["execution_id"]   # the same execution, resumed
    # Steps the killed server finished are not run again; the rest are.
    assert done_before and out["skipped_steps"] == done_before
    assert all(s["status"] == "done" for s in out["steps"])
    assert _serving(port) == "1" and _live(workspace) == "1"
