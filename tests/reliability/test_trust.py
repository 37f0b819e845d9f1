"""Trust bypass attempts: every destructive tool, below its level, through every transport.

One shared world per module: a workspace with a run in progress (a real runner process
waiting on a gate file), a service deployed twice on the local target (real processes
answering HTTP), a pipeline and a deployment config whose commands would leave marker files.
Each refused call must leave that world exactly as it was (no run, no deployment, no plan, no
rollback, no cancellation, no marker, the same version serving) and add a `denied` audit row.
The last test is the positive control: the same calls by a trusted caller do change it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp
import pytest
from mcp.shared.exceptions import MCPError

from engine.store import SQLiteStore, open_store
from server.serve import check_bind
from server.tokens import TokenStore
from server.trust import Level, parse_policy
from tests.engine.deploy.helpers import APP_COMMAND, make_release, served_version
from tests.reliability.conftest import (
    REPO,
    cli,
    free_port,
    http_client,
    policy_text,
    serving_http,
    stdio_params,
    text,
    wait_for,
)

pytestmark = pytest.mark.anyio


@dataclass
class World:
    root: Path
    ws: Path
    markers: Path
    pipeline: Path
    deploy_config: Path
    release: Path
    port: int
    running_run: str
    deployment: str
    runner: subprocess.Popen[bytes]
    tokens: dict[str, str] = field(default_factory=dict)

    def store(self) -> SQLiteStore:
        return open_store(self.ws)

    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        """Every call that changes something, one per gated tool and path to it."""
        deploy = {"config_path": str(self.deploy_config), "environment": "staging", "version": "9.9",
                  "artifacts": [str(self.release)]}
        return [
            ("run_pipeline", {"config_path": str(self.pipeline)}),
            ("run_pipeline", {"config_path": str(self.pipeline), "wait": False}),
            ("run_pipeline", {"config_path": str(self.pipeline), "environment": "production"}),
            ("cancel_run", {"run_id": self.running_run}),
            ("deploy", deploy),
            ("execute_rollback", {"deployment_id": self.deployment}),
            ("create_rollback_plan", {"deployment_id": self.deployment}),
            ("call_module_function", {"module": "ci_cd_automation", "function": "run_pipeline",
                                      "arguments": {"config_path": str(self.pipeline)}}),
            ("call_module_function", {"module": "ci_cd_automation", "function": "manage_deployments",
                                      "arguments": deploy}),
            ("call_module_function", {"module": "ci_cd_automation", "function": "handle_rollback",
                                      "arguments": {"deployment_id": self.deployment}}),
            # Not listed by the server: refused all the same, never dispatched.
            ("shell_exec", {"command": f"touch {self.markers}/hidden-ran"}),
            ("execute_rollback_now", {"deployment_id": self.deployment}),
        ]

    def snapshot(self) -> dict[str, Any]:
        with self.store() as store:
            counts = {t: store.query_one(f"SELECT COUNT(*) AS n FROM {t}")["n"]
                      for t in ("runs", "jobs", "deployments", "rollback_plans", "rollback_executions",
                                "release_history")}
            run = store.query_one("SELECT status, cancel_requested FROM runs WHERE run_id = ?", (self.running_run,))
        return {**counts, "run": tuple(run.values()), "markers": sorted(p.name for p in self.markers.iterdir()),
                "serving": served_version(self.port)}

    def audit(self) -> list[tuple[str, str, str]]:
        with self.store() as store:
            rows = store.query("SELECT tool, decision, caller FROM audit ORDER BY id")
        return [(r["tool"], r["decision"], r["caller"]) for r in rows]


PIPELINE = """\
name: marker-pipe
source: null
stages:
  - name: s
    jobs:
      - name: touch
        commands: ["touch {markers}/pipeline-ran"]
"""

GATED_RUN = """\
name: gated
source: null
stages:
  - name: s
    jobs:
      - name: wait
        commands: ["while [ ! -e {gate} ]; do sleep 0.1; done"]
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from engine.deploy.orchestrator import DeploymentOrchestrator
    root = tmp_path_factory.mktemp("trust")
    ws, markers = root / "ws", root / "markers"
    markers.mkdir()
    pipeline = root / "pipe.yaml"
    pipeline.write_text(PIPELINE.format(markers=markers))
    port = free_port()
    deploy_config = root / "deploy.yaml"
    deploy_config.write_text(textwrap.dedent(f"""\
        environments:
          - name: staging
            type: testing
            target: {{kind: local, command: "{APP_COMMAND}", ports: [{port}]}}
            pre_deploy_hooks: ["touch {markers}/deploy-$DEPLOY_VERSION"]
            health_checks: [{{type: http, url: "http://{{host}}:{{port}}/health", retries: 50, interval: 0.1}}]
        """))
    # Two real deployments, so that a rollback has somewhere to go.
    orch = DeploymentOrchestrator(deploy_config, ws)
    deployment = ""
    for version in ("1", "2"):
        orch.create_deployment(f"svc-{version}", version, "staging", [str(make_release(root, version))])
        result = orch.deploy(f"svc-{version}")
        assert str(result.status) == "success", result.reason
        deployment = result.deployment_id
    (markers / "deploy-1").unlink()
    (markers / "deploy-2").unlink()
    # A run in progress, owned by another process.
    gate = root / "gate"
    gated = root / "gated.yaml"
    gated.write_text(GATED_RUN.format(gate=gate))
    code = ("from engine.pipeline.manager import PipelineManager; "
            f"PipelineManager({str(ws)!r}).run_pipeline({str(gated)!r})")
    runner = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        def running() -> str | None:
            with open_store(ws) as s:
                row = s.query_one("SELECT r.run_id FROM runs r JOIN jobs j ON j.run_id = r.run_id "
                                  "WHERE r.pipeline = 'gated' AND j.status = 'running'")
            return row["run_id"] if row else None

        run_id = wait_for(running, 60, "the gated run to start")
        world = World(root, ws, markers, pipeline, deploy_config, make_release(root, "9.9"), port, run_id,
                      deployment, runner)
        with open_store(ws) as s:
            tokens = TokenStore(s)
            for level in Level:
                world.tokens[str(level)] = tokens.create(level, f"t-{level}")[0]
            world.tokens["revoked"] = tokens.create(Level.TRUSTED, "t-revoked")[0]
            tokens.revoke("t-revoked")
            world.tokens["expired"] = tokens.create(Level.TRUSTED, "t-expired", lifetime=3600)[0]
            s.execute("UPDATE tokens SET expires_at = ? WHERE name = 't-expired'", (time.time() - 1,))
        assert served_version(port) == "2"
        yield world
    finally:
        gate.touch()
        try:
            runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            runner.kill()

        async def stop() -> None:
            env = orch.get_environment("staging")
            target = orch.target_for(env)
            for inst in await target.instances(env.service_name):
                await target.stop(inst)
            await orch.aclose()

        anyio.run(stop)


def _refused_everywhere(world: World, results: list[tuple[str, Any]], before: dict[str, Any],
                        audit_before: int, caller: str | None = None) -> None:
    problems = []
    for tool, result in results:
        message = result if isinstance(result, str) else text(result)
        if not isinstance(result, str) and not result.is_error:
            problems.append(f"{tool}: not refused: {message[:200]}")
        elif "refused by the trust policy" not in message:
            problems.append(f"{tool}: refused for another reason: {message[:200]}")
    assert not problems, "\n".join(problems)
    assert world.snapshot() == before, "a refused call changed something"
    new = world.audit()[audit_before:]
    assert [(tool, "denied") for tool, _ in results] == [(t, d) for t, d, _ in new]
    if caller is not None:
        assert {c for _, _, c in new} == {caller}


def _calls_for(world: World, level: Level | None) -> list[tuple[str, dict[str, Any]]]:
    """The calls a caller of `level` must be refused (None: read-only mode, everything that changes)."""
    if level == Level.VERIFIED:
        return [c for c in world.calls() if c[0] != "create_rollback_plan"]
    return world.calls()


async def _call_all(client: mcp.Client, calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, Any]]:
    return [(tool, await client.call_tool(tool, args)) for tool, args in calls]


# -- in-memory ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "level"), [("level", Level.UNTRUSTED), ("level", Level.VERIFIED),
                                             ("read_only", Level.TRUSTED)])
async def test_in_memory(world: World, mode: str, level: Level) -> None:
    from engine.settings import get_settings
    from server.app import build_server

    policy = parse_policy(policy_text(read_only="true" if mode == "read_only" else "false"), "p.yaml")
    server = build_server(policy, settings=get_settings(PIPELINE_WORKSPACE=world.ws), transport="memory",
                          trust_level=level)
    before, audit_before = world.snapshot(), len(world.audit())
    calls = _calls_for(world, None if mode == "read_only" else level)
    async with mcp.Client(server) as client:
        results = await _call_all(client, calls)
    server.state.store.close()
    _refused_everywhere(world, results, before, audit_before, "stdio")


# -- stdio subprocess -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["untrusted", "read_only"])
async def test_stdio_subprocess(world: World, mode: str) -> None:
    policy = world.root / f"policy-stdio-{mode}.yaml"
    policy.write_text(policy_text(read_only="true" if mode == "read_only" else "false"))
    args = ("--trust-level", "untrusted") if mode == "untrusted" else ()
    before, audit_before = world.snapshot(), len(world.audit())
    async with mcp.Client(stdio_params(world.ws, policy, *args)) as client:
        results = await _call_all(client, _calls_for(world, Level.UNTRUSTED))
    _refused_everywhere(world, results, before, audit_before, "stdio")


# -- streamable HTTP subprocess -------------------------------------------------------------------


async def test_http_subprocess(world: World) -> None:
    policy = world.root / "policy-http.yaml"
    policy.write_text(policy_text())
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with serving_http(world.ws, policy, port):
        for token, level, caller in ((None, Level.UNTRUSTED, "anonymous"),
                                     (world.tokens["untrusted"], Level.UNTRUSTED, "token:t-untrusted"),
                                     (world.tokens["verified"], Level.VERIFIED, "token:t-verified")):
            before, audit_before = world.snapshot(), len(world.audit())
            async with http_client(url, token) as client:
                listed = {t.name for t in (await client.list_tools()).tools}
                results = await _call_all(client, _calls_for(world, level))
            # Listed: only what this level can call; the gate still refuses the rest by name.
            assert "shell_exec" not in listed and "run_pipeline" not in listed and "get_run" in listed
            _refused_everywhere(world, results, before, audit_before, caller)

        # Unknown, revoked, expired and malformed credentials never reach a tool.
        before = world.snapshot()
        for auth in ("Bearer not-a-token", f"Bearer {world.tokens['revoked']}", f"Bearer {world.tokens['expired']}",
                     "Basic dXNlcjpwYXNz",
                     f"Bearer {world.tokens['trusted']}x", "Bearer"):
            for tool, args in world.calls():
                reply = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                              "params": {"name": tool, "arguments": args}},
                                   headers={"Authorization": auth, "Accept": "application/json, text/event-stream",
                                            "MCP-Protocol-Version": "2025-06-18"}, timeout=30)
                assert reply.status_code == 401, (auth, tool, reply.status_code, reply.text[:200])
        assert world.snapshot() == before

        # A token revoked while its session is open is refused from its next call.
        with open_store(world.ws) as s:
            token, _ = TokenStore(s).create(Level.TRUSTED, "t-soon-revoked")
        async with http_client(url, token) as client:
            assert not (await client.call_tool("pipeline_health", {})).is_error
            assert cli(world.ws, "token", "revoke", "t-soon-revoked").returncode == 0
            before = world.snapshot()
            for tool, args in world.calls():
                with pytest.raises(MCPError):
                    await client.call_tool(tool, args)
        assert world.snapshot() == before


async def test_http_read_only_refuses_a_trusted_token(world: World) -> None:
    policy = world.root / "policy-http-ro.yaml"
    policy.write_text(policy_text(read_only="true"))
    port = free_port()
    with serving_http(world.ws, policy, port):
        before, audit_before = world.snapshot(), len(world.audit())
        async with http_client(f"http://127.0.0.1:{port}/mcp", world.tokens["trusted"]) as client:
            results = await _call_all(client, world.calls())
    _refused_everywhere(world, results, before, audit_before, "token:t-trusted")


async def test_http_rejected_credentials_are_audited(world: World) -> None:
    policy = world.root / "policy-http-audit.yaml"
    policy.write_text(policy_text())
    port = free_port()
    with serving_http(world.ws, policy, port):
        audit_before = len(world.audit())
        reply = httpx.post(f"http://127.0.0.1:{port}/mcp",
                           json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                 "params": {"name": "run_pipeline", "arguments": {"config_path": str(world.pipeline)}}},
                           headers={"Authorization": "Bearer guessed", "Accept": "application/json, text/event-stream"})
        assert reply.status_code == 401
    assert len(world.audit()) > audit_before


# -- the policy file and the bind address --------------------------------------------------------

BAD_POLICIES = {
    "unknown_level.yaml": "version: 1\ntools: {deploy: everyone}\n",
    "lowered_by_typo.yaml": "version: 1\ntools: {deplyo: untrusted}\n",
    "unknown_field.yaml": "version: 1\nallow_all: true\n",
    "version_2.yaml": "version: 2\n",
    "read_only_string.yaml": "version: 1\nread_only: nope\n",
    "duplicate_key.yaml": "version: 1\nread_only: true\nread_only: false\n",
    "bad_yaml.yaml": "version: 1\ntools: [\n",
    "not_a_mapping.yaml": "- version: 1\n",
    "bomb.yaml": "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join(f"*{chr(97 + i)}" for _ in range(10)) + "]\n"
        for i in range(8)),
    "token_expiry_without_timezone.yaml": "version: 1\nhttp: {tokens: [{name: x, level: trusted, env: X, "
                                          "expires: '2027-01-01T00:00:00'}]}\n",
    "token_bad_hash.yaml": "version: 1\nhttp: {tokens: [{name: x, level: trusted, sha256: abc}]}\n",
    "token_both_sources.yaml": "version: 1\nhttp: {tokens: [{name: x, level: trusted, sha256: '"
                               + "a" * 64 + "', env: X}]}\n",
    "token_env_unset.yaml": "version: 1\nhttp: {tokens: [{name: x, level: trusted, env: RELIABILITY_UNSET_TOKEN}]}\n",
    "token_duplicate_names.yaml": "version: 1\nhttp: {tokens: [{name: x, level: trusted, sha256: '" + "a" * 64
                                  + "'}, {name: x, level: verified, sha256: '" + "b" * 64 + "'}]}\n",
    "empty.yaml": "",
    "tools_list.yaml": "version: 1\ntools: [deploy]\n",
}


def test_tampered_or_invalid_policy_stops_the_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every bad policy through the serve command in-process (the policy is read before any transport)."""
    from server.cli import main

    problems = []
    for name, content in BAD_POLICIES.items():
        path = tmp_path / name
        path.write_text(content)
        code = main(["serve", "--workspace", str(tmp_path / "ws"), "--policy", str(path)])
        err = capsys.readouterr().err
        if code != 2 or name not in err:
            problems.append(f"{name}: exit {code}: {err[-300:]}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("transport", "name"), [("stdio", "lowered_by_typo.yaml"), ("http", "token_env_unset.yaml")])
def test_invalid_policy_stops_the_server_process(tmp_path: Path, transport: str, name: str) -> None:
    path = tmp_path / name
    path.write_text(BAD_POLICIES[name])
    out = cli(tmp_path / "ws", "serve", "--transport", transport, "--port", str(free_port()), "--policy", str(path))
    assert out.returncode == 2 and name in out.stderr and "Traceback" not in out.stderr, out.stderr[-500:]


def test_non_utf8_policy_stops_the_server_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nstdio: {level: \xff}\n")
    out = cli(tmp_path / "ws", "serve", "--policy", str(path))
    assert out.returncode != 0   # it does stop (fail closed) ...
    assert out.returncode == 2 and "latin1.yaml" in out.stderr and "Traceback" not in out.stderr   # ... but crashes


def test_empty_policy_is_the_strict_default(tmp_path: Path) -> None:
    """An empty file is refused (above); a minimal one falls back to strict defaults, never to allowing."""
    from server.trust import Caller, ToolFacts, decide

    policy = parse_policy("version: 1\n", "minimal.yaml")
    for transport in ("stdio", "http"):
        caller = Caller("x", policy.stdio.level if transport == "stdio" else policy.http.anonymous_level, transport)
        for tool in ("run_pipeline", "deploy", "execute_rollback", "cancel_run", "no_such_tool"):
            facts = ToolFacts(tool, None if tool == "no_such_tool" else Level.TRUSTED, False, True)
            assert type(decide(policy, caller, facts)).__name__ == "Deny", (transport, tool)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", "127.0.0.1.nip.io",
                                  "[::ffff:8.8.8.8]", ""])
def test_binding_off_loopback_without_tokens_is_refused(host: str, tmp_path: Path) -> None:
    from engine.errors import InputError
    from engine.settings import get_settings
    from server.app import build_server

    server = build_server(parse_policy(policy_text(), "p.yaml"),
                          settings=get_settings(PIPELINE_WORKSPACE=tmp_path / "ws"), transport="http")
    try:
        with pytest.raises(InputError, match="refusing to listen"):
            check_bind(server, host)
        for loopback in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
            check_bind(server, loopback)
    finally:
        server.state.store.close()


def test_binding_off_loopback_is_refused_by_the_cli(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(policy_text())
    out = cli(tmp_path / "ws", "serve", "--transport", "http", "--host", "0.0.0.0", "--port", str(free_port()),
              "--policy", str(policy))
    assert out.returncode == 2 and "refusing to listen on 0.0.0.0" in out.stderr


def test_http_binds_loopback_by_default(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(policy_text())
    port = free_port()
    with serving_http(tmp_path / "ws", policy, port) as proc:
        listening = _listening_addresses(proc.pid, port)
    assert listening == {"127.0.0.1"}, listening


def _listening_addresses(pid: int, port: int) -> set[str]:
    """Local addresses the process listens on at `port`, from /proc/net/tcp{,6} and its socket inodes."""
    import ipaddress

    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            addr, hexport = cols[1].split(":")
            if int(hexport, 16) != port or cols[3] != "0A" or cols[9] not in inodes:
                continue
            raw = bytes.fromhex(addr)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(raw)) if width == 4 else str(ipaddress.IPv6Address(raw)))
    return found


# -- positive control (last: it changes the world) -----------------------------------------------


async def test_control_a_trusted_caller_does_change_the_world(world: World) -> None:
    """Without this, every refusal above could be a call that would have done nothing anyway."""
    from engine.settings import get_settings
    from server.app import build_server

    server = build_server(parse_policy(policy_text(), "p.yaml"), settings=get_settings(PIPELINE_WORKSPACE=world.ws),
                          transport="memory", trust_level=Level.TRUSTED)
    before = world.snapshot()
    async with mcp.Client(server) as client:
        ran = await client.call_tool("run_pipeline", {"config_path": str(world.pipeline)})
        deployed = await client.call_tool("deploy", {"config_path": str(world.deploy_config), "environment": "staging",
                                                     "version": "9.9", "artifacts": [str(world.release)]})
        new_id = deployed.structured_content["deployment_id"] if deployed.structured_content else "none"
        rolled = await client.call_tool("execute_rollback", {"deployment_id": new_id})
        cancelled = await client.call_tool("cancel_run", {"run_id": world.running_run})
        hidden = await client.call_tool("shell_exec", {"command": f"touch {world.markers}/hidden-ran"})
    server.state.store.close()
    assert not ran.is_error and not deployed.is_error, (text(ran), text(deployed))
    assert not rolled.is_error, text(rolled)
    assert not cancelled.is_error and cancelled.structured_content["cancel_requested"]
    assert hidden.is_error and "hidden-ran" not in [p.name for p in world.markers.iterdir()]
    after = world.snapshot()
    assert after["runs"] == before["runs"] + 1 and after["deployments"] > before["deployments"]
    assert after["rollback_executions"] == before["rollback_executions"] + 1
    assert {"pipeline-ran", "deploy-9.9"} <= set(after["markers"])
    assert after["run"][1] == 1
    wait_for(lambda: world.runner.poll() is not None, 30, "the cancelled runner to exit")
