"""Several processes on one PostgreSQL database, as a team's servers and runners share it: the
one-change-per-environment rule, cancellation, token revocation and the audit trail hold
across them. Real processes (servers over HTTP, a CLI runner, the token CLI, racing
writers), a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import httpx
import mcp
import pytest
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from engine.store import deployments as deployments_repo
from engine.store import open_store
from engine.store import rollbacks as rollbacks_repo
from tests._services import ROOT, load_services

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# One racer: wait for the start time, then take the environment one way or the other.
_RACER = r"""
import json, sys, time
from engine.errors import ConflictError
from engine.store import open_store, deployments, rollbacks
url, kind, ident, env, start = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
store = open_store("/nonexistent", url=url)
owner = (0, "racer", None)
store.query_one("SELECT 1 AS ok")   # connected before the start
while time.time() < start:
    time.sleep(0.001)
try:
    if kind == "deploy":
        got = deployments.begin(store, ident, previous_version=None, before_json="[]", owner=owner,
                                started_at=time.time(), from_status="planned", to_status="in_progress") == 1
    else:
        rollbacks.new_execution(store, execution_id=ident, plan_id="plan-" + env, deployment_id="base-" + env,
                                environment=env, status="running", started_at=time.time(), owner=owner,
                                steps=[("stop", "stop_instances")])
        got = True
except ConflictError:
    got = False
print(json.dumps({"id": ident, "got": got}))
"""


def test_one_change_per_environment_holds_across_racing_processes(postgres_url: str, tmp_path: Path) -> None:
    store = open_store(tmp_path, url=postgres_url)
    rounds, per_kind = 3, 3
    for r in range(rounds):
        env = f"env{r}"
        deployments_repo.create(store, {"deployment_id": f"base-{env}", "name": "base", "service": "svc",
                                        "environment": env, "version": "0", "strategy": "rolling",
                                        "status": "success", "created_at": 1.0})
        rollbacks_repo.save_plan(store, {
            "plan_id": f"plan-{env}", "deployment_id": f"base-{env}", "environment": env, "service": "svc",
            "strategy": "immediate", "from_version": "1", "to_version": "0", "executable": 1,
            "estimated_duration": 1.0, "estimate_basis": "timeouts", "created_at": 1.0, "plan_json": "{}"})
        for n in range(per_kind):
            deployments_repo.create(store, {"deployment_id": f"d{n}-{env}", "name": "web", "service": "svc",
                                            "environment": env, "version": str(n), "strategy": "rolling",
                                            "status": "planned", "created_at": 2.0})
    env_vars = {**os.environ, "PYTHONPATH": str(ROOT)}
    for r in range(rounds):
        env = f"env{r}"
        start = time.time() + 4.0  # every racer is up and connected by then
        procs = [subprocess.Popen([sys.executable, "-c", _RACER, postgres_url, kind, ident, env, str(start)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_vars)
                 for n in range(per_kind)
                 for kind, ident in (("deploy", f"d{n}-{env}"), ("rollback", f"rx{n}-{env}"))]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            results.append(json.loads(out))
        winners = [res["id"] for res in results if res["got"]]
        assert len(winners) == 1, (env, results)
        holders = store.query_one(
            "SELECT (SELECT COUNT(*) FROM deployments WHERE environment = ? AND status = 'in_progress')"
            " + (SELECT COUNT(*) FROM rollback_executions WHERE environment = ? AND status = 'running') AS n",
            (env, env))
        assert holders == {"n": 1}
    store.close()


# -- servers --------------------------------------------------------------------------------------

POLICY = """version: 1
stdio: {level: trusted}
read_only: false
confirm: {environments: [production]}
http: {anonymous_level: untrusted, tokens: []}
"""

SLOW = """name: slow-pipe
stages:
  - name: wait
    jobs:
      - name: long
        commands:
          - echo "long job running"
          - sleep 300
"""

QUICK = """name: quick-pipe
stages:
  - name: one
    jobs:
      - name: hello
        commands:
          - echo hello
"""


def _env(url: str, workspace: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PIPELINE_STORE_URL=url, PIPELINE_WORKSPACE=str(workspace), PYTHONPATH=str(ROOT))
    return env


def _cli(url: str, workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", *args], cwd=ROOT, env=_env(url, workspace),
                          capture_output=True, text=True, timeout=120)


@contextmanager
def _servers(url: str, root: Path, count: int) -> Iterator[list[str]]:
    """`count` HTTP servers, each with a workspace of its own, all on the database `url`."""
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    ports = load_services().PortPool(18950, 18989).take_many(count)   # 18990-18999: the SSH target tests
    procs = []
    try:
        for n, port in enumerate(ports):
            ws = root / f"host{n}"
            ws.mkdir()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", str(port),
                 "--policy", str(policy)], cwd=ROOT, env=_env(url, ws),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        for proc, port in zip(procs, ports, strict=True):
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                try:
                    httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, f"server on {port} did not come up"
                    time.sleep(0.1)
        yield [f"http://127.0.0.1:{port}/mcp" for port in ports]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()


@asynccontextmanager
async def _client(url: str, token: str) -> AsyncIterator[mcp.Client]:
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as hc:
        async with mcp.Client(streamable_http_client(url, http_client=hc)) as client:
            yield client


def _raw(url: str, token: str) -> httpx.Response:
    return httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                      headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
                      timeout=60)


@pytest.mark.anyio
async def test_two_servers_share_tokens_runs_cancellation_and_the_audit_trail(postgres_url: str,
                                                                             tmp_path: Path) -> None:
    made = _cli(postgres_url, tmp_path, "token", "create", "--level", "trusted", "--name", "team")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "slow.yaml").write_text(SLOW)
    (pipelines / "quick.yaml").write_text(QUICK)
    calls_each = 6
    store = open_store(tmp_path, url=postgres_url)
    with _servers(postgres_url, tmp_path, 2) as (a, b):
        # Concurrent callers on both servers: every call is answered and audited.
        statuses: list[str] = []

        async def caller(url: str) -> None:
            async with _client(url, token) as client:
                done = await client.call_tool("run_pipeline", {"config_path": str(pipelines / "quick.yaml")})
                assert not done.is_error and done.structured_content
                statuses.append(done.structured_content["status"])

        async with anyio.create_task_group() as tg:
            for _ in range(calls_each):
                tg.start_soon(caller, a)
                tg.start_soon(caller, b)
        assert statuses == ["succeeded"] * (2 * calls_each)

        # A run started on server A is cancelled through server B and ends cancelled on A.
        async with _client(a, token) as on_a, _client(b, token) as on_b:
            started = await on_a.call_tool("run_pipeline", {"config_path": str(pipelines / "slow.yaml"),
                                                            "wait": False})
            assert started.structured_content, started
            run_id = started.structured_content["run_id"]
            deadline = time.monotonic() + 60
            while (store.query_one("SELECT status FROM jobs WHERE run_id = ? AND name = 'long'", (run_id,))
                   or {}).get("status") != "running":
                assert time.monotonic() < deadline, "the slow job never started"
                await anyio.sleep(0.1)
            cancelled = await on_b.call_tool("cancel_run", {"run_id": run_id})
            assert not cancelled.is_error, cancelled
            deadline = time.monotonic() + 60
            while (row := store.query_one("SELECT status FROM runs WHERE run_id = ?", (run_id,))) is not None \
                    and row["status"] == "running":
                assert time.monotonic() < deadline, "the run was not cancelled"
                await anyio.sleep(0.1)
            assert row is not None and row["status"] == "cancelled"
            job = store.query_one("SELECT status FROM jobs WHERE run_id = ? AND name = 'long'", (run_id,))
            assert job == {"status": "cancelled"}

            # A CLI runner on a third workspace is cancelled through server A.
            cli_ws = tmp_path / "cli-host"
            runner = subprocess.Popen([sys.executable, "-m", "server", "run", str(pipelines / "slow.yaml"), "-q"],
                                      cwd=ROOT, env=_env(postgres_url, cli_ws), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
            try:
                deadline = time.monotonic() + 90
                while (found := store.query_one(
                        "SELECT j.run_id FROM jobs j JOIN runs r ON r.run_id = j.run_id WHERE j.name = 'long'"
                        " AND j.status = 'running' AND r.run_id <> ?", (run_id,))) is None:
                    assert runner.poll() is None and time.monotonic() < deadline, "the CLI run never started"
                    await anyio.sleep(0.1)
                cancelled = await on_a.call_tool("cancel_run", {"run_id": found["run_id"]})
                assert not cancelled.is_error, cancelled
                out, _ = runner.communicate(timeout=60)
            finally:
                if runner.poll() is None:
                    runner.kill()
                    runner.communicate()
            cli_run = store.query_one("SELECT status, owner_host FROM runs WHERE run_id = ?", (found["run_id"],))
            assert cli_run is not None and cli_run["status"] == "cancelled", out

            # Revoked through the CLI: both servers refuse the token at its next call.
            revoked = _cli(postgres_url, tmp_path, "token", "revoke", "team")
            assert revoked.returncode == 0, revoked.stderr
            for client in (on_a, on_b):
                with pytest.raises(MCPError):
                    await client.call_tool("pipeline_health", {})
        for url in (a, b):
            refused = _raw(url, token)
            assert refused.status_code == 401 and "revoked" in refused.text
    rows = store.query("SELECT tool, decision FROM audit WHERE caller = 'token:team'")
    store.close()
    allowed = [r["tool"] for r in rows if r["decision"] == "allowed"]
    assert allowed.count("run_pipeline") == 2 * calls_each + 1
    assert allowed.count("cancel_run") == 2
