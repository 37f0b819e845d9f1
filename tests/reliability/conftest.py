"""Shared helpers for the reliability suite: workspaces, policies, servers in-process and as
subprocesses (stdio, streamable HTTP on 127.0.0.1 ports 18700-18799)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import mcp
import mcp_types as types
import pytest

from engine.settings import Settings, get_settings
from server.app import build_server
from server.gate import CicdServer
from server.trust import Level, TrustPolicy, parse_policy

REPO = Path(__file__).resolve().parents[2]
PORTS = range(18700, 18750)   # 18750-18799: target ports of test_faults
_taken: set[int] = set()


def policy_text(**overrides: str) -> str:
    base = {
        "stdio": "{level: trusted}",
        "read_only": "false",
        "confirm": "{environments: [production]}",
        "http": "{anonymous_level: untrusted, tokens: []}",
    }
    base.update(overrides)
    return "version: 1\n" + "".join(f"{k}: {v}\n" for k, v in base.items())


def text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def free_port() -> int:
    """A port of this suite's range that nothing listens on (each handed out once per session)."""
    for port in PORTS:
        if port in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise AssertionError("no free port left in 18700-18749")


def server_env(workspace: Path, **extra: str) -> dict[str, str]:
    # The session's PIPELINE_SANDBOX_WRITABLE stays: jobs leave marks in the tests' temp dirs.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIPELINE_", "CICD_")) or k == "PIPELINE_SANDBOX_WRITABLE"}
    env["PIPELINE_WORKSPACE"] = str(workspace)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def cli(workspace: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", *args], cwd=REPO, env=server_env(workspace, **env),
                          capture_output=True, text=True, timeout=timeout)


def stdio_params(workspace: Path, policy: Path, *args: str, **env: str) -> Any:
    from mcp.client.stdio import StdioServerParameters

    return StdioServerParameters(command=sys.executable, args=["-m", "server", "serve", "--policy", str(policy), *args],
                                 env=server_env(workspace, **env), cwd=str(REPO))


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def serving_http(workspace: Path, policy: Path, port: int, *args: str, host: str = "127.0.0.1",
                 transport: str = "http", **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """The server as a subprocess on streamable HTTP (or SSE) at host:port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--transport", transport, "--host", host, "--port", str(port),
         "--policy", str(policy), *args],
        cwd=REPO, env=server_env(workspace, **env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def listening() -> bool:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"server exited with {proc.returncode}: {err}")
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family) as s:
                return s.connect_ex((host, port)) == 0

        wait_for(listening, 60, f"the server to listen on {port}")
        yield proc
    finally:
        if proc.poll() is None:
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
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with create_mcp_http_client(headers=headers) as hc:
        async with mcp.Client(streamable_http_client(url, http_client=hc)) as client:
            yield client


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def settings(workspace: Path) -> Settings:
    return get_settings(PIPELINE_WORKSPACE=workspace)


MakeServer = Callable[..., CicdServer]


@pytest.fixture
def make_server(settings: Settings) -> Iterator[MakeServer]:
    made: list[CicdServer] = []

    def make(policy: TrustPolicy | str | None = None, *, transport: str = "memory",
             trust_level: Level | None = None, environ: dict[str, str] | None = None,
             settings_: Settings | None = None) -> CicdServer:
        if policy is None:
            policy = policy_text()
        if isinstance(policy, str):
            policy = parse_policy(policy, "reliability-policy.yaml")
        server = build_server(policy, settings=settings_ or settings, transport=transport, trust_level=trust_level,
                              environ=environ)
        made.append(server)
        return server

    yield make
    for s in made:
        s.state.store.close()


def count(server_or_store: Any, table: str) -> int:
    store = getattr(getattr(server_or_store, "state", None), "store", server_or_store)
    return int(store.query_one(f"SELECT COUNT(*) AS n FROM {table}")["n"])
