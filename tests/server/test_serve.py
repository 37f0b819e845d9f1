"""The server as a subprocess, driven as a real client would: stdio, streamable HTTP, SSE."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import mcp
import pytest
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from tests.server.conftest import REPO, policy_yaml
from tests.server.test_gate import text

HTTP_PORT, SSE_PORT, BIND_PORT = 18840, 18841, 18842   # outside every suite's port pool


def server_env(workspace: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_") or k == "PIPELINE_SANDBOX_WRITABLE"}
    env["PIPELINE_WORKSPACE"] = str(workspace)
    env["PYTHONPATH"] = str(REPO)
    return env


def cli(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", *args], cwd=REPO, env=server_env(workspace),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(policy_yaml())
    return p


def _wait_port(port: int, proc: subprocess.Popen[bytes], deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"server exited with {proc.returncode}: {err}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"server did not listen on {port}")


@contextmanager
def serving(workspace: Path, policy: Path, transport: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            pytest.fail(f"port {port} is taken by something else")
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--transport", transport, "--port", str(port),
         "--policy", str(policy)],
        cwd=REPO, env=server_env(workspace), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@asynccontextmanager
async def http_client(url: str, token: str | None = None) -> AsyncIterator[mcp.Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with create_mcp_http_client(headers=headers) as hc:   # ours to close: the transport only borrows it
        async with mcp.Client(streamable_http_client(url, http_client=hc)) as client:
            yield client


@pytest.mark.anyio
async def test_stdio_subprocess(workspace: Path, policy_file: Path, pipelines: dict[str, Path]) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "server", "serve", "--policy", str(policy_file)],
        env=server_env(workspace), cwd=str(REPO))
    async with mcp.Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        run = await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
        health = await client.call_tool("pipeline_health", {"pipeline_name": "ok-pipe"})
    assert {"run_pipeline", "pipeline_health", "get_run", "get_job_logs", "cancel_run"} <= names
    assert not run.is_error and run.structured_content and run.structured_content["status"] == "succeeded"
    assert health.structured_content and health.structured_content["pipelines"][0]["status"] == "healthy"


@pytest.mark.anyio
async def test_stdio_trust_level_flag(workspace: Path, policy_file: Path, pipelines: dict[str, Path]) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "server", "serve", "--policy", str(policy_file), "--trust-level", "untrusted"],
        env=server_env(workspace), cwd=str(REPO))
    async with mcp.Client(params) as client:
        refused = await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
    assert refused.is_error and "needs trust level trusted" in text(refused)
    audit = cli(workspace, "audit")
    assert audit.returncode == 0 and "run_pipeline" in audit.stdout and "denied" in audit.stdout


@pytest.mark.anyio
async def test_streamable_http_tokens(workspace: Path, policy_file: Path, pipelines: dict[str, Path]) -> None:
    made = cli(workspace, "token", "create", "--level", "trusted", "--name", "ops")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("cicd_") and "shown only this once" in made.stderr
    listed = cli(workspace, "token", "list", "--policy", str(policy_file))
    assert "ops" in listed.stdout and "live" in listed.stdout and token not in listed.stdout
    url = f"http://127.0.0.1:{HTTP_PORT}/mcp"
    with serving(workspace, policy_file, "http", HTTP_PORT):
        async with http_client(url) as anonymous:
            health = await anonymous.call_tool("pipeline_health", {})
            refused = await anonymous.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
        assert not health.is_error
        assert refused.is_error and "Authorization: Bearer" in text(refused)

        async with http_client(url, token) as trusted:
            run = await trusted.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
            assert not run.is_error and run.structured_content
            assert run.structured_content["status"] == "succeeded"

            revoked = cli(workspace, "token", "revoke", "ops")
            assert revoked.returncode == 0, revoked.stderr
            # The same session, no restart: refused at the next call.
            # (The SDK client reports the 401 as a generic error; the raw requests below show it.)
            with pytest.raises(MCPError):
                await trusted.call_tool("pipeline_health", {})

        bad = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                         headers={"Authorization": "Bearer nope", "Accept": "application/json, text/event-stream"})
        assert bad.status_code == 401 and "not recognised" in bad.text
        gone = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                          headers={"Authorization": f"Bearer {token}",
                                   "Accept": "application/json, text/event-stream"})
        assert gone.status_code == 401 and "revoked" in gone.text
    audit = cli(workspace, "audit", "--json")
    callers = {line for line in audit.stdout.splitlines() if '"token:ops"' in line}
    assert callers, audit.stdout


@pytest.mark.anyio
async def test_expired_tokens_are_refused_and_audited(
    workspace: Path, tmp_path: Path, pipelines: dict[str, Path]
) -> None:
    """A store token past its `--expires-in`, and a policy token past its `expires`, are refused
    at the next call (no restart) with a 401 that says so, are audited, and run nothing."""
    from engine.store import open_store
    from server.trust import hash_token

    assert cli(workspace, "token", "create", "--level", "trusted", "--expires-in", "0d").returncode == 2
    stale = "cicd_stale-policy-token"
    policy = tmp_path / "expiring.yaml"
    policy.write_text(policy_yaml(http=(
        "{anonymous_level: untrusted, tokens: [{name: old, level: trusted, sha256: "
        f"'{hash_token(stale)}', expires: '2026-01-01T00:00:00Z'}}]}}"
    )))
    url = f"http://127.0.0.1:{HTTP_PORT}/mcp"

    def post(token: str) -> httpx.Response:
        return httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                     "params": {"name": "run_pipeline",
                                                "arguments": {"config_path": str(pipelines["ok"])}}},
                          headers={"Authorization": f"Bearer {token}",
                                   "Accept": "application/json, text/event-stream"}, timeout=30)

    def runs() -> int:
        with open_store(workspace) as store:
            row = store.query_one("SELECT COUNT(*) AS n FROM runs")
        return int(row["n"]) if row else 0

    with serving(workspace, policy, "http", HTTP_PORT):
        refused = post(stale)
        assert refused.status_code == 401 and "'old' expired at 2026-01-01 00:00 UTC" in refused.text
        # Made once the server listens: a loaded machine may take longer than the token lives to start it.
        made = cli(workspace, "token", "create", "--level", "trusted", "--name", "brief", "--expires-in", "15s")
        assert made.returncode == 0, made.stderr
        brief = made.stdout.strip()
        assert "live until" in made.stderr
        async with http_client(url, brief) as client:
            ok = await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
            assert not ok.is_error
            assert runs() == 1
            while "expired" not in cli(workspace, "token", "list").stdout:
                time.sleep(0.2)
            with pytest.raises(MCPError):
                await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
        late = post(brief)
        assert late.status_code == 401 and "'brief' expired at" in late.text
    assert runs() == 1
    audit = cli(workspace, "audit", "--json").stdout
    assert audit.count("expired at") >= 3, audit


@pytest.mark.anyio
async def test_sse(workspace: Path, policy_file: Path) -> None:
    with serving(workspace, policy_file, "sse", SSE_PORT):
        async with mcp.Client(sse_client(f"http://127.0.0.1:{SSE_PORT}/sse")) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            health = await client.call_tool("pipeline_health", {})
            refused = await client.call_tool("cancel_run", {"run_id": "x"})
    assert "pipeline_health" in names and not health.is_error
    assert refused.is_error and "Bearer" in text(refused)


def test_non_loopback_bind_without_tokens_is_refused(workspace: Path, policy_file: Path) -> None:
    out = cli(workspace, "serve", "--transport", "http", "--host", "0.0.0.0", "--port", str(BIND_PORT),
              "--policy", str(policy_file))
    assert out.returncode == 2
    assert "refusing to listen on 0.0.0.0" in out.stderr and "token create" in out.stderr


def test_invalid_policy_stops_the_server(workspace: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ntools:\n  deploy: everyone\n")
    out = cli(workspace, "serve", "--policy", str(bad))
    assert out.returncode == 2
    assert f"{bad}:3" in out.stderr and "tools.deploy" in out.stderr
    missing = cli(workspace, "serve", "--policy", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2 and "cannot read the trust policy" in missing.stderr


def test_token_commands(workspace: Path) -> None:
    assert cli(workspace, "token", "create", "--level", "verified", "--name", "ci").returncode == 0
    dup = cli(workspace, "token", "create", "--level", "verified", "--name", "ci")
    assert dup.returncode == 2 and "already exists" in dup.stderr
    assert cli(workspace, "token", "revoke", "ci").returncode == 0
    again = cli(workspace, "token", "revoke", "ci")
    assert again.returncode == 2 and "no live token" in again.stderr
    listed = cli(workspace, "token", "list")
    assert "ci" in listed.stdout and "revoked" in listed.stdout
    # Under `cicd-mcp` (server.cli:main), whose --workspace comes before the command.
    mounted = subprocess.run([sys.executable, "-m", "server", "--workspace", str(workspace), "token", "list"],
                             cwd=REPO, env={**server_env(workspace), "PIPELINE_WORKSPACE": "/nonexistent"},
                             capture_output=True, text=True, timeout=120)
    assert mounted.returncode == 0, mounted.stderr
    assert "ci" in mounted.stdout and "revoked" in mounted.stdout


