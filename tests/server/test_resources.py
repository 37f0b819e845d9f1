"""Resources (whole runs, whole logs) and prompts."""

from __future__ import annotations

import json
from pathlib import Path

import mcp
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from server.trust import Level
from tests.server.conftest import MakeServer, audit_rows, policy_yaml


def body(result: types.ReadResourceResult) -> str:
    (content,) = result.contents
    assert isinstance(content, types.TextResourceContents)
    return content.text


@pytest.mark.anyio
async def test_run_and_log_resources(make_server: MakeServer, pipelines: dict[str, Path]) -> None:
    server = make_server()
    async with mcp.Client(server) as client:
        run = (await client.call_tool("run_pipeline", {"config_path": str(pipelines["fail"])})).structured_content
        assert run is not None
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        whole = json.loads(body(await client.read_resource(run["resource_uri"])))
        log = body(await client.read_resource(run["failed_jobs"][0]["log_uri"]))
        with pytest.raises(MCPError, match="no run"):
            await client.read_resource("cicd://runs/20990101-000000-abcdef")
    assert {"cicd://runs/{run_id}", "cicd://runs/{run_id}/logs/{job}{?offset,limit}"} <= templates
    assert whole["run_id"] == run["run_id"] and whole["status"] == "failed"
    # The whole log, where the tool result had only the tail.
    assert "noise 1\n" in log and "noise 50" in log and "AssertionError" in log
    assert [r.tool for r in audit_rows(server)][-3:] == [
        "get_run (resource)", "get_job_logs (resource)", "get_run (resource)"]


@pytest.mark.anyio
async def test_resources_pass_the_gate(make_server: MakeServer, pipelines: dict[str, Path]) -> None:
    server = make_server(policy_yaml(tools="{get_job_logs: trusted}"), trust_level=Level.VERIFIED)
    async with mcp.Client(server) as client:
        with pytest.raises(MCPError, match="needs trust level trusted"):
            await client.read_resource("cicd://runs/any-run/logs/job")
    assert audit_rows(server)[-1].decision == "denied"


@pytest.mark.anyio
async def test_prompts(make_server: MakeServer) -> None:
    server = make_server()
    async with mcp.Client(server) as client:
        names = {p.name for p in (await client.list_prompts()).prompts}
        diag = await client.get_prompt("diagnose_failed_run", {"run_id": "r-123"})
        plan = await client.get_prompt("plan_safe_deploy", {"service": "web", "version": "1.2.3",
                                                            "environment": "production"})
    assert {"diagnose_failed_run", "plan_safe_deploy"} <= names
    first = diag.messages[0].content
    assert isinstance(first, types.TextContent) and "r-123" in first.text and "get_job_logs" in first.text
    text = plan.messages[0].content
    assert isinstance(text, types.TextContent) and "web" in text.text and "production" in text.text
