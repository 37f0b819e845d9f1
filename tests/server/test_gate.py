"""The trust gate inside tools/call, end to end through an in-memory MCP client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp
import mcp_types as types
import pytest

from server.trust import Level
from tests.server.conftest import MakeServer, audit_rows, policy_yaml

MODES = ["legacy", "auto"]   # 2025-era handshake (elicitation/create mid-call) and 2026-07-28 (input_required)


def text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def elicit_answer(action: str, confirm: bool = True) -> Any:
    asked: list[str] = []

    async def callback(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        content = {"confirm": confirm} if action == "accept" else None
        return types.ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    callback.asked = asked  # type: ignore[attr-defined]
    return callback


def runs_in_store(server: Any) -> int:
    return int(server.state.store.query_one("SELECT COUNT(*) AS n FROM runs")["n"])


@pytest.mark.anyio
async def test_untrusted_stdio_caller_gets_read_tools_only(make_server: MakeServer, pipelines: dict[str, Path]) -> None:
    server = make_server(trust_level=Level.UNTRUSTED)
    async with mcp.Client(server) as client:
        ok = await client.call_tool("pipeline_health", {})
        assert not ok.is_error
        refused = await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
    assert refused.is_error
    message = text(refused)
    assert "refused by the trust policy" in message
    assert "needs trust level trusted" in message and "--trust-level trusted" in message
    assert runs_in_store(server) == 0
    rows = audit_rows(server)
    assert [(r.tool, r.decision) for r in rows] == [("pipeline_health", "allowed"), ("run_pipeline", "denied")]
    assert rows[1].caller == "stdio" and rows[1].level == "untrusted"
    assert "needs trust level trusted" in (rows[1].reason or "")
    assert len(rows[1].args_sha256) == 64 and rows[1].duration_ms >= 0


@pytest.mark.anyio
async def test_read_only_switch(make_server: MakeServer, pipelines: dict[str, Path]) -> None:
    server = make_server(policy_yaml(read_only="true"))
    async with mcp.Client(server) as client:
        refused = await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
        cancel = await client.call_tool("cancel_run", {"run_id": "nope"})
        health = await client.call_tool("pipeline_health", {})
    assert refused.is_error and "read-only" in text(refused)
    assert cancel.is_error and "read-only" in text(cancel)
    assert not health.is_error
    assert runs_in_store(server) == 0


@pytest.mark.anyio
async def test_tool_levels_come_from_the_policy(make_server: MakeServer) -> None:
    server = make_server(policy_yaml(tools="{pipeline_health: verified}"), trust_level=Level.UNTRUSTED)
    async with mcp.Client(server) as client:
        refused = await client.call_tool("pipeline_health", {})
        listed = {t.name: t for t in (await client.list_tools()).tools}
    assert refused.is_error and "needs trust level verified" in text(refused)
    # Listed only to those who can call it, with the level the policy gives it.
    assert "pipeline_health" not in listed and "get_run" in listed
    able = make_server(policy_yaml(tools="{pipeline_health: verified}"), trust_level=Level.VERIFIED)
    async with mcp.Client(able) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
    assert listed["pipeline_health"].meta and listed["pipeline_health"].meta["cicd/trust_level"] == "verified"


@pytest.mark.anyio
async def test_unlisted_and_unknown_tools_pass_the_gate_too(make_server: MakeServer) -> None:
    server = make_server(trust_level=Level.VERIFIED)

    ran: list[str] = []

    def hidden_tool() -> str:
        ran.append("yes")
        return "did it"

    # A tool the server carries without a spec (not in the policy, not one of ours): the gate
    # still decides, at the policy's default_level (trusted).
    server.add_tool(hidden_tool, name="hidden_tool")
    async with mcp.Client(server) as client:
        hidden = await client.call_tool("hidden_tool", {})
        unknown = await client.call_tool("no_such_tool", {"x": 1})
    assert hidden.is_error and "needs trust level trusted" in text(hidden)
    assert ran == []
    # An unknown tool is unknown at every level: no refusal that sends the caller after a level.
    assert unknown.is_error and "Unknown tool 'no_such_tool'" in text(unknown)
    assert "needs trust level" not in text(unknown) and "tools you can call: get_run" in text(unknown)
    assert [(r.tool, r.decision) for r in audit_rows(server)] == [
        ("hidden_tool", "denied"), ("no_such_tool", "denied")]


@pytest.mark.anyio
async def test_unknown_tool_for_trusted_caller_is_an_error_after_the_gate(make_server: MakeServer) -> None:
    server = make_server()
    async with mcp.Client(server) as client:
        unknown = await client.call_tool("no_such_tool", {})
    assert unknown.is_error and "Unknown tool" in text(unknown)
    (row,) = audit_rows(server)
    assert (row.decision, row.outcome) == ("allowed", "error")


@pytest.mark.anyio
async def test_http_caller_without_token_is_anonymous(make_server: MakeServer, pipelines: dict[str, Path]) -> None:
    server = make_server(transport="http")
    async with mcp.Client(server) as client:
        refused = await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
        health = await client.call_tool("pipeline_health", {})
    assert refused.is_error and "Authorization: Bearer" in text(refused)
    assert not health.is_error
    assert audit_rows(server)[0].caller == "anonymous"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_confirmation_accepted_runs(make_server: MakeServer, pipelines: dict[str, Path], mode: str) -> None:
    server = make_server()
    callback = elicit_answer("accept")
    async with mcp.Client(server, mode=mode, elicitation_callback=callback) as client:
        result = await client.call_tool(
            "run_pipeline", {"config_path": str(pipelines["ok"]), "environment": "production"})
    assert not result.is_error, text(result)
    assert result.structured_content and result.structured_content["status"] == "succeeded"
    assert len(callback.asked) == 1 and "production" in callback.asked[0]
    decisions = [r.decision for r in audit_rows(server)]
    assert decisions[-1] == "confirmed"
    if mode == "auto":
        # 2026-07-28: the first round answers input_required; the retry carries the answer.
        assert decisions == ["confirmation_requested", "confirmed"]
    assert runs_in_store(server) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("action", "confirm"), [("decline", True), ("cancel", True), ("accept", False)])
async def test_confirmation_refused_changes_nothing(
    make_server: MakeServer, pipelines: dict[str, Path], mode: str, action: str, confirm: bool
) -> None:
    server = make_server()
    async with mcp.Client(server, mode=mode, elicitation_callback=elicit_answer(action, confirm)) as client:
        result = await client.call_tool(
            "run_pipeline", {"config_path": str(pipelines["ok"]), "environment": "production"})
    assert result.is_error
    assert "nothing was changed" in text(result) and "production" in text(result)
    assert runs_in_store(server) == 0
    assert audit_rows(server)[-1].decision == "declined"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_client_that_cannot_elicit_is_refused(make_server: MakeServer, pipelines: dict[str, Path],
                                                    mode: str) -> None:
    server = make_server()
    async with mcp.Client(server, mode=mode) as client:
        result = await client.call_tool(
            "run_pipeline", {"config_path": str(pipelines["ok"]), "environment": "production"})
        staging = await client.call_tool(
            "run_pipeline", {"config_path": str(pipelines["ok"]), "environment": "staging"})
    assert result.is_error and "cannot ask its user" in text(result)
    assert not staging.is_error, text(staging)
    assert runs_in_store(server) == 1
    assert [r.decision for r in audit_rows(server)] == ["denied", "allowed"]


@pytest.mark.anyio
async def test_compat_tool_is_gated_at_the_level_of_what_it_reaches(
    make_server: MakeServer, pipelines: dict[str, Path]
) -> None:
    # The compat tool itself is lowered to untrusted; the function it reaches still needs trusted.
    server = make_server(policy_yaml(tools="{call_module_function: untrusted}"), trust_level=Level.VERIFIED)
    args = {"module": "ci_cd_automation", "function": "run_pipeline",
            "arguments": {"config_path": str(pipelines["ok"])}}
    async with mcp.Client(server) as client:
        refused = await client.call_tool("call_module_function", args)
    assert refused.is_error and "'run_pipeline' needs trust level trusted" in text(refused)
    assert runs_in_store(server) == 0


@pytest.mark.anyio
async def test_compat_tool_asks_for_confirmation_of_what_it_reaches(
    make_server: MakeServer, pipelines: dict[str, Path]
) -> None:
    server = make_server()
    callback = elicit_answer("decline")
    args = {"module": "ci_cd_automation", "function": "run_pipeline",
            "arguments": {"config_path": str(pipelines["ok"]), "environment": "production"}}
    async with mcp.Client(server, elicitation_callback=callback) as client:
        declined = await client.call_tool("call_module_function", args)
    assert declined.is_error and len(callback.asked) == 1
    assert runs_in_store(server) == 0


@pytest.mark.anyio
async def test_environment_that_cannot_be_read_is_treated_as_protected(make_server: MakeServer) -> None:
    import dataclasses

    server = make_server()

    def unreadable(arguments: dict[str, Any], state: Any) -> str | None:
        raise OSError("store unreachable")

    spec = server.specs["execute_rollback"]
    server.specs["execute_rollback"] = dataclasses.replace(spec, environment=unreadable)
    async with mcp.Client(server) as client:
        refused = await client.call_tool("execute_rollback", {"plan_id": "rb-x"})
    assert refused.is_error and "'<unknown>'" in text(refused) and "cannot ask its user" in text(refused)
