"""create_rollback_plan and execute_rollback through MCP, on real processes of the local target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp
import pytest

from server.trust import Level
from tests.engine.deploy.helpers import make_release, served_version
from tests.server.conftest import MakeServer, audit_rows
from tests.server.test_gate import elicit_answer, text
from tests.server.tools.conftest import PORTS


async def deploy(client: mcp.Client, config: Path, root: Path, version: str) -> dict[str, Any]:
    release = make_release(root, version)
    result = await client.call_tool("deploy", {"version": version, "environment": "production",
                                               "artifacts": [str(release)], "config_path": str(config)})
    assert not result.is_error, text(result)
    assert result.structured_content and result.structured_content["status"] == "success"
    return result.structured_content


@pytest.mark.anyio
async def test_plan_then_execute_rollback(make_server: MakeServer, deploy_config: Path, tmp_path: Path) -> None:
    server = make_server()
    answer = elicit_answer("accept")
    async with mcp.Client(server, elicitation_callback=answer) as client:
        await deploy(client, deploy_config, tmp_path / "a", "1")
        second = await deploy(client, deploy_config, tmp_path / "a", "2")
        asked_before = len(answer.asked)
        planned = await client.call_tool("create_rollback_plan", {
            "deployment_id": second["deployment_id"], "strategy": "immediate", "reason": "bad release"})
        assert not planned.is_error, text(planned)
        plan = planned.structured_content
        assert plan is not None
        assert len(answer.asked) == asked_before            # planning changes nothing: no question
        assert all(served_version(p) == "2" for p in PORTS)
        done = await client.call_tool("execute_rollback", {"plan_id": plan["plan_id"]})
        bad = await client.call_tool("execute_rollback", {})
    assert plan["from_version"] == "2" and plan["to_version"] == "1" and plan["executable"] is True
    assert plan["steps"] and plan["estimated_duration"] > 0 and plan["environment"] == "production"
    assert not done.is_error, text(done)
    out = done.structured_content
    assert out is not None and out["status"] == "completed" and out["to_version"] == "1"
    assert all(served_version(p) == "1" for p in PORTS)
    assert len(answer.asked) == asked_before + 1 and "execute_rollback" in answer.asked[-1]
    assert bad.is_error and "exactly one of deployment_id or plan_id" in text(bad)
    assert [r.decision for r in audit_rows(server) if r.tool == "create_rollback_plan"] == ["allowed"]
    rows = [(r.decision, r.outcome) for r in audit_rows(server) if r.tool == "execute_rollback"]
    assert rows[:2] == [("confirmation_requested", None), ("confirmed", "ok")]


@pytest.mark.anyio
async def test_a_replay_says_already_completed_and_a_plan_for_what_is_not_live_warns_and_needs_force(
        make_server: MakeServer, deploy_config: Path, tmp_path: Path) -> None:
    server = make_server()
    async with mcp.Client(server, elicitation_callback=elicit_answer("accept")) as client:
        await deploy(client, deploy_config, tmp_path / "a", "1")
        second = await deploy(client, deploy_config, tmp_path / "a", "2")
        done = await client.call_tool("execute_rollback", {"deployment_id": second["deployment_id"]})
        again = await client.call_tool("execute_rollback", {"deployment_id": second["deployment_id"]})
        replan = await client.call_tool("create_rollback_plan", {"deployment_id": second["deployment_id"]})
        assert replan.structured_content is not None
        refused = await client.call_tool("execute_rollback", {"plan_id": replan.structured_content["plan_id"]})
    assert not done.is_error and not again.is_error, text(again)
    first, replay = done.structured_content, again.structured_content
    assert first is not None and replay is not None
    assert first.get("already_completed_at") is None
    assert replay["execution_id"] == first["execution_id"] and replay["status"] == "completed"
    assert replay["already_completed_at"] and f"already completed at {replay['already_completed_at']}" in text(again)
    plan = replan.structured_content
    assert plan["from_version"] == "1" and plan["to_version"] == "1"
    assert plan["warnings"] and "is not live" in plan["warnings"][0] and "WARNING" in text(replan)
    assert refused.is_error and "force=true" in text(refused) and "Nothing was done" in text(refused)
    assert all(served_version(p) == "1" for p in PORTS)


@pytest.mark.anyio
async def test_verified_caller_may_plan_but_not_execute(make_server: MakeServer, deploy_config: Path,
                                                        tmp_path: Path) -> None:
    trusted = make_server()
    async with mcp.Client(trusted, elicitation_callback=elicit_answer("accept")) as client:
        await deploy(client, deploy_config, tmp_path / "a", "1")
        second = await deploy(client, deploy_config, tmp_path / "a", "2")
    verified = make_server(trust_level=Level.VERIFIED)
    async with mcp.Client(verified, elicitation_callback=elicit_answer("accept")) as client:
        planned = await client.call_tool("create_rollback_plan", {"deployment_id": second["name"]})
        refused = await client.call_tool("execute_rollback", {"deployment_id": second["deployment_id"]})
        missing = await client.call_tool("create_rollback_plan", {"deployment_id": "nope"})
    assert not planned.is_error, text(planned)
    assert refused.is_error and "needs trust level trusted" in text(refused)
    assert missing.is_error and "no deployment 'nope'" in text(missing)
    assert all(served_version(p) == "2" for p in PORTS)


@pytest.mark.anyio
async def test_declined_rollback_changes_nothing(make_server: MakeServer, deploy_config: Path,
                                                 tmp_path: Path) -> None:
    server = make_server()
    async with mcp.Client(server, elicitation_callback=elicit_answer("accept")) as client:
        await deploy(client, deploy_config, tmp_path / "a", "1")
        second = await deploy(client, deploy_config, tmp_path / "a", "2")
    async with mcp.Client(server, elicitation_callback=elicit_answer("decline")) as client:
        declined = await client.call_tool("execute_rollback", {"deployment_id": second["deployment_id"]})
        compat = await client.call_tool("call_module_function", {
            "module": "ci_cd_automation", "function": "handle_rollback",
            "arguments": {"deployment_id": second["deployment_id"]}})
    assert declined.is_error and "nothing was changed" in text(declined)
    assert compat.is_error and "nothing was changed" in text(compat)
    assert all(served_version(p) == "2" for p in PORTS)
