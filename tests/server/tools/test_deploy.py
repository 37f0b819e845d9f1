"""deploy through MCP: real processes on the local target, real HTTP health checks."""

from __future__ import annotations

import json
from pathlib import Path

import mcp
import mcp_types as types
import pytest

from server.tools.rollback import rollback_environment
from tests.engine.deploy.helpers import make_release, served_version
from tests.server.conftest import MakeServer, audit_rows
from tests.server.test_gate import elicit_answer, text
from tests.server.tools.conftest import PORTS, free


@pytest.mark.anyio
async def test_deploy_with_confirmation_then_upgrade(make_server: MakeServer, deploy_config: Path,
                                                     tmp_path: Path) -> None:
    server = make_server()
    answer = elicit_answer("accept")
    progress: list[str] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with mcp.Client(server, elicitation_callback=answer) as client:
        outs = []
        for version in ("1", "2"):
            release = make_release(tmp_path / "artifacts", version)
            result = await client.call_tool("deploy", {
                "version": version, "environment": "production", "artifacts": [str(release)],
                "strategy": "rolling", "config_path": str(deploy_config)}, progress_callback=on_progress)
            assert not result.is_error, text(result)
            assert result.structured_content is not None
            outs.append(result.structured_content)
        record = await client.read_resource(outs[1]["resource_uri"])
    first, second = outs
    assert first["status"] == "success" and second["status"] == "success"
    assert second["previous_version"] == "1" and second["version"] == "2" and second["service"] == "web"
    assert sorted(i["port"] for i in second["instances"]) == list(PORTS)
    assert all(served_version(p) == "2" for p in PORTS)
    assert len(answer.asked) == 2 and all("production" in q for q in answer.asked)
    assert progress, "the rollout reported no progress"
    (content,) = record.contents
    assert isinstance(content, types.TextResourceContents)
    doc = json.loads(content.text)
    assert doc["deployment_id"] == second["deployment_id"] and doc["status"] == "success" and doc["steps"]
    assert [r.decision for r in audit_rows(server) if r.tool == "deploy"][-1] == "confirmed"
    # What the rollback tools' gate reads: the environment of a stored deployment.
    assert rollback_environment({"deployment_id": second["deployment_id"]}, server.state) == "production"


@pytest.mark.anyio
async def test_declined_deploy_changes_nothing(make_server: MakeServer, deploy_config: Path,
                                               tmp_path: Path) -> None:
    server = make_server()
    release = make_release(tmp_path / "artifacts", "1")
    async with mcp.Client(server, elicitation_callback=elicit_answer("decline")) as client:
        result = await client.call_tool("deploy", {
            "version": "1", "environment": "production", "artifacts": [str(release)],
            "config_path": str(deploy_config)})
        unknown_env = await client.call_tool("deploy", {"version": "1", "environment": "nowhere"})
    assert result.is_error and "nothing was changed" in text(result)
    assert all(free(p) for p in PORTS)
    assert unknown_env.is_error and "nowhere" in text(unknown_env)
