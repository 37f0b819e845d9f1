"""The breaks an attacker's-eye test of `cicd-mcp serve` found, each over the transport it was found on.

Every test here drives a real server (a stdio or HTTP/SSE subprocess) the way the attacker did:
a trusted client that cannot elicit, a stolen session id, another loopback address, a flood of
anonymous sessions, half-sent requests on raw sockets. Attack traffic goes only to 127.0.0.x/::1
and is bounded in count and time.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import mcp
import mcp_types as types
import pytest

from engine.store import open_store
from server.tokens import TokenStore
from server.trust import Level
from tests.reliability.conftest import REPO, free_port, policy_text, server_env, serving_http, stdio_params, text

pytestmark = pytest.mark.anyio

PROTOCOL_2025 = "2025-11-25"


# -- helpers ---------------------------------------------------------------------------------------


def audit(ws: Path) -> list[dict[str, Any]]:
    with open_store(ws) as store:
        return [dict(r) for r in store.query("SELECT caller, tool, decision, reason FROM audit ORDER BY id")]


def refusals(rows: list[dict[str, Any]]) -> int:
    """How many refusals audit `rows` stand for: a window's summary row counts those it summarizes."""
    total = 0
    for row in rows:
        summary = re.match(r"(\d+) more refused within", row["reason"] or "")
        total += int(summary.group(1)) if summary else 1
    return total


def runs(ws: Path) -> int:
    with open_store(ws) as store:
        return int(store.query_one("SELECT COUNT(*) AS n FROM runs")["n"])


def token(ws: Path, name: str, level: Level = Level.TRUSTED) -> str:
    with open_store(ws) as store:
        secret, _ = TokenStore(store).create(level, name)
    return secret


def marker_pipeline(root: Path, name: str, marker: Path, *, environment: str | None = None,
                    sleep: float = 0) -> Path:
    stage_env = f"    environment: {environment}\n" if environment else ""
    pre = f'"sleep {sleep}", ' if sleep else ""
    path = root / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nsource: null\nstages:\n  - name: s\n{stage_env}    jobs:\n"
        f"      - name: j\n        commands: [{pre}\"touch {marker}\"]\n"
    )
    return path


@asynccontextmanager
async def client_over(url: str, transport: str, bearer: str | None, seen: dict[str, str],
                      **kwargs: Any) -> AsyncIterator[mcp.Client]:
    """An MCP client (2025 handshake) whose requests' session id and protocol version land in `seen`."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}

    async def hook(request: Any) -> None:
        sid = request.headers.get("mcp-session-id") or request.url.params.get("session_id")
        if sid:
            seen["session"] = sid
        if request.headers.get("mcp-protocol-version"):
            seen["version"] = request.headers["mcp-protocol-version"]

    def factory(headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(headers=headers, timeout=timeout or httpx2.Timeout(30, read=300), auth=auth,
                                  event_hooks={"request": [hook]})

    if transport == "sse":
        from mcp.client.sse import sse_client

        async with mcp.Client(sse_client(url, headers=headers, httpx_client_factory=factory), mode="legacy",
                              **kwargs) as client:
            yield client
    else:
        from mcp.client.streamable_http import streamable_http_client

        async with factory(headers=headers) as hc, \
                mcp.Client(streamable_http_client(url, http_client=hc), mode="legacy", **kwargs) as client:
            yield client


def raw_headers(seen: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if seen:
        if "session" in seen:
            headers["mcp-session-id"] = seen["session"]
        headers["mcp-protocol-version"] = seen.get("version", PROTOCOL_2025)
    headers.update(extra)
    return headers


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": PROTOCOL_2025, "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    return d


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(policy_text())
    return p


# -- 1. the production confirmation is decided on what the call changes ------------------------------


async def test_compat_arguments_as_a_json_string_are_confirmed(ws: Path, policy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pipe = marker_pipeline(tmp_path, "p", marker)
    async with mcp.Client(stdio_params(ws, policy)) as client:
        result = await client.call_tool("call_module_function", {
            "module": "ci_cd_automation", "function": "run_pipeline",
            "arguments": json.dumps({"config_path": str(pipe), "environment": "production"})})
    assert result.is_error and "human confirmation" in text(result), text(result)
    assert not marker.exists() and runs(ws) == 0
    assert audit(ws)[-1]["decision"] == "denied"


def _production_deployment_and_plan(ws: Path) -> None:
    from engine.rollback.plans import RollbackPlan
    from engine.store import deployments, rollbacks

    plan = RollbackPlan(plan_id="rp-prod-1", deployment_id="dep-prod-1", environment="production", service="web",
                        strategy="immediate", reason="", from_version="2", to_version="1",
                        to_deployment_id="dep-prod-0", target_kind="local", steps=[], estimated_duration=1.0)
    with open_store(ws) as store:
        deployments.create(store, {"deployment_id": "dep-prod-1", "name": "web-2", "service": "web",
                                   "environment": "production", "version": "2", "strategy": "recreate",
                                   "status": "success", "created_at": time.time()})
        rollbacks.save_plan(store, {"plan_id": "rp-prod-1", "deployment_id": "dep-prod-1",
                                    "environment": "production", "service": "web", "strategy": "immediate",
                                    "from_version": "2", "to_version": "1", "executable": 1,
                                    "estimated_duration": 1.0, "estimate_basis": "timeouts",
                                    "created_at": time.time(), "plan_json": plan.model_dump_json()})


@pytest.mark.parametrize("arguments", [{"plan_id": "dep-prod-1"}, {"deployment_id": "rp-prod-1"}],
                         ids=["plan_id=deployment", "deployment_id=plan"])
async def test_rollback_ids_given_the_other_way_round_are_confirmed(ws: Path, policy: Path,
                                                                    arguments: dict[str, str]) -> None:
    _production_deployment_and_plan(ws)
    async with mcp.Client(stdio_params(ws, policy)) as client:
        result = await client.call_tool("execute_rollback", arguments)
    assert result.is_error and "human confirmation" in text(result), text(result)
    assert audit(ws)[-1]["decision"] == "denied"


async def test_a_call_whose_target_cannot_be_resolved_is_refused(ws: Path, policy: Path) -> None:
    async with mcp.Client(stdio_params(ws, policy)) as client:
        result = await client.call_tool("execute_rollback", {"plan_id": "no-such-plan"})
    assert result.is_error and "refused by the trust policy" in text(result), text(result)
    assert audit(ws)[-1]["decision"] == "denied"


async def test_a_pipelines_deploy_stage_is_confirmed(ws: Path, policy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pipe = marker_pipeline(tmp_path, "ships", marker, environment="production")
    async with mcp.Client(stdio_params(ws, policy)) as client:
        by_path = await client.call_tool("run_pipeline", {"config_path": str(pipe)})
        by_compat = await client.call_tool("call_module_function", {
            "module": "ci_cd_automation", "function": "run_pipeline", "arguments": {"config_path": str(pipe)}})
    for result in (by_path, by_compat):
        assert result.is_error and "human confirmation" in text(result), text(result)
    assert not marker.exists() and runs(ws) == 0
    assert [r["decision"] for r in audit(ws)] == ["denied", "denied"]


@pytest.mark.parametrize("wait", [True, False])
async def test_a_pipeline_changed_after_the_gate_looked_does_not_run(make_server: Any, tmp_path: Path,
                                                                      wait: bool) -> None:
    """The gate decides on the file as it was; the engine refuses the run if the file it loads deploys
    anywhere else (here the gate is made to see a version of the file without the production stage)."""
    import dataclasses

    marker = tmp_path / "ran"
    pipe = marker_pipeline(tmp_path, "swapped", marker, environment="production")
    server = make_server()
    spec = server.specs["run_pipeline"]
    server.specs["run_pipeline"] = dataclasses.replace(spec, environment=lambda _a, _s: frozenset())
    async with mcp.Client(server) as client:
        result = await client.call_tool("run_pipeline", {"config_path": str(pipe), "wait": wait})
    assert result.is_error and "which this run was not allowed to change" in text(result), text(result)
    assert not marker.exists()
    assert server.state.store.query_one("SELECT COUNT(*) AS n FROM runs")["n"] == 0


# -- 2. sessions belong to the principal that opened them ----------------------------------------------


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_another_principal_cannot_answer_a_sessions_elicitation(ws: Path, policy: Path, tmp_path: Path,
                                                                       transport: str) -> None:
    marker = tmp_path / "ran"
    pipe = marker_pipeline(tmp_path, "p", marker)
    secret = token(ws, "owner")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/sse" if transport == "sse" else f"{base}/mcp"
    seen: dict[str, str] = {}
    attacks: list[int] = []

    async def answer(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        # Before the owner answers, an anonymous caller holding the session id answers "yes".
        post = f"{base}/messages/?session_id={seen['session']}" if transport == "sse" else url
        async with httpx.AsyncClient(timeout=10) as attacker:
            for rid in range(4):
                reply = {"jsonrpc": "2.0", "id": rid, "result": {"action": "accept", "content": {"confirm": True}}}
                r = await attacker.post(post, json=reply, headers=raw_headers(seen))
                attacks.append(r.status_code)
            if transport == "http":
                async with attacker.stream("GET", url, headers=raw_headers(seen)) as stream:
                    attacks.append(stream.status_code)
        await anyio.sleep(0.5)
        return types.ElicitResult(action="decline")

    with serving_http(ws, policy, port, transport=transport):
        async with client_over(url, transport, secret, seen, elicitation_callback=answer) as client:
            result = await client.call_tool("run_pipeline", {"config_path": str(pipe), "environment": "production"})
    assert result.is_error and "nothing was changed" in text(result), text(result)
    assert not marker.exists() and runs(ws) == 0
    assert attacks and all(code in (403, 404) for code in attacks), attacks
    rows = audit(ws)
    refused = [r for r in rows if r["caller"] == "anonymous" and r["decision"] == "denied"]
    assert refusals(refused) == len(attacks) and all("session" in (r["reason"] or "") for r in refused), rows
    assert [r["decision"] for r in rows if r["caller"] == "token:owner"][-1] == "declined"


async def test_another_principal_cannot_cancel_a_sessions_request(ws: Path, policy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pipe = marker_pipeline(tmp_path, "slow", marker, sleep=2)
    secret = token(ws, "owner")
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    seen: dict[str, str] = {}
    codes: list[int] = []
    with serving_http(ws, policy, port):
        async with client_over(url, "http", secret, seen) as client:
            async with anyio.create_task_group() as tg:
                async def attack() -> None:
                    await anyio.sleep(1.0)
                    async with httpx.AsyncClient(timeout=10) as attacker:
                        for rid in range(8):
                            note = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                    "params": {"requestId": rid, "reason": "attacker"}}
                            codes.append((await attacker.post(url, json=note, headers=raw_headers(seen))).status_code)

                tg.start_soon(attack)
                result = await client.call_tool("run_pipeline", {"config_path": str(pipe)})
    assert not result.is_error and result.structured_content, text(result)
    assert result.structured_content["status"] == "succeeded" and marker.exists()
    assert codes and all(code in (403, 404) for code in codes), codes
    refused = [r for r in audit(ws) if r["caller"] == "anonymous" and r["decision"] == "denied"]
    assert refusals(refused) == len(codes)


# -- 3. Host / Origin allow-list on every loopback address ---------------------------------------------


@pytest.mark.parametrize(("bind", "connect"), [("127.0.0.2", "127.0.0.2"), ("0:0:0:0:0:0:0:1", "[::1]")])
async def test_dns_rebinding_is_refused_on_other_loopback_addresses(ws: Path, policy: Path, bind: str,
                                                                     connect: str) -> None:
    port = free_port()
    url = f"http://{connect}:{port}/mcp"
    with serving_http(ws, policy, port, host=bind):
        async with httpx.AsyncClient(timeout=10) as raw:
            evil_host = await raw.post(url, json=INITIALIZE, headers=raw_headers(host="evil.example"))
            evil_origin = await raw.post(url, json=INITIALIZE, headers=raw_headers(origin="http://evil.example"))
            good = await raw.post(url, json=INITIALIZE, headers=raw_headers(origin=f"http://{connect}:{port}"))
    assert evil_host.status_code == 421, evil_host.text
    assert evil_origin.status_code == 403, evil_origin.text
    assert good.status_code == 200, good.text
    refused = [r for r in audit(ws) if r["decision"] == "denied"]
    assert len(refused) == 2 and "evil.example" in (refused[0]["reason"] or "")


async def test_a_flood_of_refusals_is_counted_not_written_row_by_row(ws: Path, policy: Path) -> None:
    # 120 refused requests of two kinds: each kind is one audited refusal plus one row counting the
    # rest (written when its window closes, here when the server stops), naming the address.
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with serving_http(ws, policy, port):
        async with httpx.AsyncClient(timeout=10) as raw:
            async def codes(**headers: str) -> list[int]:
                return [(await raw.post(url, json=INITIALIZE, headers=raw_headers(**headers))).status_code
                        for _ in range(60)]

            misdirected = await codes(host="evil.example")
            bad_token = await codes(authorization="Bearer cicd_forged")
    assert set(misdirected) == {421} and set(bad_token) == {401}
    refused = [r for r in audit(ws) if r["decision"] == "denied"]
    assert len(refused) == 4 and refusals(refused) == 120, refused
    summaries = [r["reason"] or "" for r in refused if re.match(r"\d+ more refused", r["reason"] or "")]
    assert len(summaries) == 2 and all(s.startswith("59 more refused") and "127.0.0.1" in s for s in summaries)


# -- 4. an expired token is not a token ----------------------------------------------------------------


def test_an_expired_token_does_not_open_a_non_loopback_bind(ws: Path, policy: Path) -> None:
    with open_store(ws) as store:
        TokenStore(store).create(Level.TRUSTED, "gone", lifetime=0.5)
    time.sleep(0.6)
    # 192.0.2.1 (TEST-NET-1) is not an address of this machine: were the check passed, the bind would fail.
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--transport", "http", "--host", "192.0.2.1", "--port", "18799",
         "--policy", str(policy)], cwd=REPO, env=server_env(ws), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no bearer token" in done.stderr, done.stderr


# -- 5. what an anonymous caller can cost ------------------------------------------------------------


async def test_anonymous_expensive_calls_are_limited(ws: Path, policy: Path) -> None:
    from engine.pipeline.manager import PipelineManager

    manager = PipelineManager(workspace_dir=ws)
    run = manager.run_pipeline({"name": "logs", "stages": [{"name": "s", "jobs": [
        {"name": "j", "commands": ["printf 'a%.0s' $(seq 24); echo '!'"]}]}]})
    manager.store.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with serving_http(ws, policy, port):
        async with client_over(url, "http", None, {}) as client:
            results: list[types.CallToolResult] = []

            async def grep() -> None:
                results.append(await client.call_tool("get_job_logs", {"run_id": run.run_id, "grep": "(a+)+$"}))

            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(grep)
    limited = [r for r in results if r.is_error and "too many" in text(r)]
    assert 4 <= len(limited) <= 7, [text(r)[:120] for r in results]
    denied = [r for r in audit(ws) if r["decision"] == "denied" and r["tool"] == "get_job_logs"]
    assert len(denied) == len(limited)


async def test_anonymous_sessions_are_limited_and_trusted_ones_still_open(ws: Path, policy: Path) -> None:
    secret = token(ws, "owner")
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with serving_http(ws, policy, port):
        codes: list[int] = []
        async with httpx.AsyncClient(timeout=20) as raw:
            async def open_one() -> None:
                codes.append((await raw.post(url, json=INITIALIZE, headers=raw_headers())).status_code)

            # All at once: admission must count the openings in flight, not only the sessions made.
            async with anyio.create_task_group() as tg:
                for _ in range(40):
                    tg.start_soon(open_one)
        async with client_over(url, "http", secret, {}) as client:
            health = await client.call_tool("pipeline_health", {})
    default_limit = 16   # untrusted `sessions` when the policy sets no limits
    assert codes.count(200) == default_limit and codes.count(429) == 40 - default_limit, codes
    assert not health.is_error
    refused = [r for r in audit(ws) if r["decision"] == "denied" and "sessions" in (r["reason"] or "")]
    assert refusals(refused) == codes.count(429) and len(refused) <= 2   # the first, then one summary


async def test_anonymous_sse_streams_are_limited(ws: Path, policy: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/sse"
    codes: list[int] = []
    with serving_http(ws, policy, port, transport="sse"):
        async with httpx.AsyncClient(timeout=10) as raw:
            streams = []
            try:
                for _ in range(20):
                    cm = raw.stream("GET", url, headers={"accept": "text/event-stream"})
                    resp = await cm.__aenter__()
                    streams.append(cm)
                    codes.append(resp.status_code)
            finally:
                for cm in streams:
                    await cm.__aexit__(None, None, None)
    assert codes.count(200) >= 2 and 429 in codes and set(codes) <= {200, 429}, codes
    refused = [r for r in audit(ws) if r["decision"] == "denied" and "streams" in (r["reason"] or "")]
    assert refusals(refused) == codes.count(429) and len(refused) <= 2


def _closed(sock: socket.socket, deadline: float) -> bool:
    """True when the server ends the connection (possibly after a 408) before `deadline`."""
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


async def test_slowloris_connections_are_closed(ws: Path, tmp_path: Path) -> None:
    # Shorter than the defaults (10 s / 15 s) so the test is quick; the mechanism is the same.
    policy = tmp_path / "quick.yaml"
    policy.write_text(policy_text(http="{anonymous_level: untrusted, tokens: [], header_timeout: 2, body_timeout: 3}"))
    port = free_port()
    secret = token(ws, "owner")
    with serving_http(ws, policy, port):
        head = f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
        body_head = (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                     "Accept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n"
                     '{"jsonrpc"').encode()
        socks = []
        try:
            for i in range(24):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(head if i % 2 else body_head)
                socks.append(s)
            # The server still serves a trusted client while they hang.
            async with client_over(f"http://127.0.0.1:{port}/mcp", "http", secret, {}) as client:
                assert not (await client.call_tool("pipeline_health", {})).is_error
            deadline = time.monotonic() + 12
            closed = [_closed(s, deadline) for s in socks]
        finally:
            for s in socks:
                s.close()
    assert all(closed), closed
    late = [r for r in audit(ws) if "connection closed" in (r["reason"] or "")]
    assert sorted({r["reason"].split(" did not")[0] for r in late}) == ["the request's body", "the request's head"]
    assert len(late) == len(socks), late
    assert all(" within 2 s " in r["reason"] or " within 3 s " in r["reason"] for r in late)


# -- 7. / 8. paths and what an error quotes --------------------------------------------------------------


async def test_a_registered_pipeline_outside_the_config_root_is_not_read(ws: Path, policy: Path,
                                                                        tmp_path: Path) -> None:
    from engine.pipeline.manager import PipelineManager

    root, outside = tmp_path / "configs", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    marker = tmp_path / "ran"
    manager = PipelineManager(workspace_dir=ws)
    manager.create_pipeline(str(marker_pipeline(outside, "outsider", marker)))
    manager.store.close()
    params = stdio_params(ws, policy, PIPELINE_CONFIG_PATH=str(root))
    async with mcp.Client(params) as client:
        result = await client.call_tool("run_pipeline", {"pipeline": "outsider"})
    assert result.is_error and "config root" in text(result), text(result)
    assert not marker.exists() and runs(ws) == 0


async def test_a_file_that_is_not_a_pipeline_is_not_quoted(ws: Path, policy: Path, tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text("root:$6$saltsalt$hashhash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
                      "secretuser: hunter2\n")
    async with mcp.Client(stdio_params(ws, policy)) as client:
        result = await client.call_tool("run_pipeline", {"config_path": str(shadow)})
    message = text(result)
    assert result.is_error and "not a pipeline" in message, message
    for fragment in ("root:", "hashhash", "daemon", "secretuser", "hunter2"):
        assert fragment not in message


# -- 10. the policy in force is never the working directory's ---------------------------------------------


async def test_a_policy_in_the_working_directory_is_not_adopted(ws: Path, tmp_path: Path) -> None:
    repo = tmp_path / "someones-repo"
    repo.mkdir()
    (repo / "trust_policy.yaml").write_text(policy_text(confirm="{environments: []}"))
    config_home = tmp_path / "config"
    config_home.mkdir()
    env = server_env(ws, XDG_CONFIG_HOME=str(config_home))
    started = subprocess.run([sys.executable, "-m", "server", "serve"], cwd=repo, env=env, input="",
                             capture_output=True, text=True, timeout=60)
    assert "trust policy:" in started.stderr and str(repo) not in started.stderr, started.stderr
    marker = tmp_path / "ran"
    pipe = marker_pipeline(tmp_path, "p", marker)
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=["-m", "server", "serve"], env=env, cwd=str(repo))
    async with mcp.Client(params) as client:
        result = await client.call_tool("run_pipeline", {"config_path": str(pipe), "environment": "production"})
    assert result.is_error and "human confirmation" in text(result), text(result)
    assert not marker.exists()
    # An explicit relative --policy is read from the directory the server was launched in.
    relative = subprocess.run([sys.executable, "-m", "server", "serve", "--policy", "trust_policy.yaml"], cwd=repo,
                              env=env, input="", capture_output=True, text=True, timeout=60)
    assert f"trust policy: {repo / 'trust_policy.yaml'}" in relative.stderr, relative.stderr


# -- 11. a sealed requestState cannot be replayed by another caller ----------------------------------------


MODERN = "2026-07-28"


def _modern_call(arguments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "probe", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}}}
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "run_pipeline", "arguments": arguments, "_meta": meta, **extra}}


def _modern_headers(bearer: str) -> dict[str, str]:
    return {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "run_pipeline",
            "authorization": f"Bearer {bearer}"}


def _result(response: httpx.Response) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if "id" in message:
                    return dict(message)
        raise AssertionError(response.text)
    return dict(response.json())


async def test_a_request_state_cannot_be_replayed_by_another_caller(ws: Path, policy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    arguments = {"config_path": str(marker_pipeline(tmp_path, "p", marker)), "environment": "production"}
    owner, other = token(ws, "owner"), token(ws, "other")
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with serving_http(ws, policy, port):
        async with httpx.AsyncClient(timeout=30) as raw:
            first = _result(await raw.post(url, json=_modern_call(arguments), headers=raw_headers(
                **_modern_headers(owner))))
            asked = first.get("result", first)
            assert asked.get("resultType") == "input_required" and asked.get("requestState"), first
            answers = {key: {"action": "accept", "content": {"confirm": True}} for key in asked["inputRequests"]}
            replay = _result(await raw.post(url, json=_modern_call(
                arguments, requestState=asked["requestState"], inputResponses=answers),
                headers=raw_headers(**_modern_headers(other))))
    assert "error" in replay or replay["result"].get("isError"), replay
    assert not marker.exists() and runs(ws) == 0


# -- scoped tokens -------------------------------------------------------------------------------------


async def test_a_token_scoped_to_environments_and_tools(ws: Path, policy: Path, tmp_path: Path) -> None:
    from tests.reliability.conftest import cli

    made = cli(ws, "token", "create", "--level", "trusted", "--name", "stager", "--environments", "staging",
               "--tools", "run_pipeline,pipeline_health")
    assert made.returncode == 0, made.stderr
    scoped = made.stdout.strip()
    listed = cli(ws, "token", "list").stdout
    assert "stager" in listed and "environments staging; tools run_pipeline,pipeline_health" in listed
    staged, shipped = tmp_path / "staged", tmp_path / "shipped"
    to_staging = marker_pipeline(tmp_path, "to-staging", staged)
    to_production = marker_pipeline(tmp_path, "to-production", shipped, environment="production")
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with serving_http(ws, policy, port):
        async with client_over(url, "http", scoped, {}) as client:
            ok = await client.call_tool("run_pipeline", {"config_path": str(to_staging), "environment": "staging"})
            prod = await client.call_tool("run_pipeline", {"config_path": str(to_production)})
            named = await client.call_tool("run_pipeline", {"config_path": str(to_staging),
                                                            "environment": "production"})
            other_tool = await client.call_tool("cancel_run", {"run_id": "x"})
            health = await client.call_tool("pipeline_health", {})
    assert not ok.is_error and staged.exists(), text(ok)
    for refused in (prod, named):
        assert refused.is_error and "may change only the environments staging" in text(refused), text(refused)
    assert other_tool.is_error and "limited to the tools" in text(other_tool)
    assert not health.is_error and not shipped.exists() and runs(ws) == 1
    assert [r["decision"] for r in audit(ws) if r["caller"] == "token:stager"] == [
        "allowed", "denied", "denied", "denied", "allowed"]


# -- the audit file's hash chain -----------------------------------------------------------------------


async def test_audit_verify_detects_an_edited_or_deleted_record(ws: Path, policy: Path) -> None:
    from tests.reliability.conftest import cli

    async with mcp.Client(stdio_params(ws, policy, "--trust-level", "untrusted")) as client:
        for _ in range(3):
            await client.call_tool("pipeline_health", {})
            await client.call_tool("run_pipeline", {"pipeline": "nope"})
    chain = ws / "audit.jsonl"
    lines = chain.read_text().splitlines(keepends=True)
    assert len(lines) == 6 and all(json.loads(line)["hash"] for line in lines)
    intact = cli(ws, "audit", "verify")
    assert intact.returncode == 0 and "6 records, hash chain intact" in intact.stdout, intact.stdout + intact.stderr

    def verify_with(text: str) -> subprocess.CompletedProcess[str]:
        chain.write_text(text)
        try:
            return cli(ws, "audit", "verify")
        finally:
            chain.write_text("".join(lines))

    edited = verify_with("".join(lines).replace('"decision":"denied"', '"decision":"allowed"', 1))
    assert edited.returncode == 1 and ":2: its content does not match its hash" in edited.stdout, edited.stdout
    deleted = verify_with("".join(lines[:2] + lines[3:]))
    assert deleted.returncode == 1 and ":3: its prev does not match" in deleted.stdout, deleted.stdout
    cut = verify_with("".join(lines[:-1]))
    assert cut.returncode == 1 and "the table has records the other lacks" in cut.stdout, cut.stdout
    with open_store(ws) as store:
        store.execute("UPDATE audit SET decision = 'allowed' WHERE decision = 'denied'")
    table = cli(ws, "audit", "verify")
    assert table.returncode == 1 and ":2: the audit table's record differs" in table.stdout, table.stdout
