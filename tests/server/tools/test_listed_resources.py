"""resources/list names what an agent may want to read (recent runs, live deployments, the config
schemas) for callers who may read them; prompt arguments say what they are."""

from __future__ import annotations

import json
from pathlib import Path

import mcp
import pytest

from server.trust import Level
from tests.server.conftest import MakeServer, policy_yaml
from tests.server.test_gate import elicit_answer
from tests.server.tools.test_rollback import deploy


@pytest.mark.anyio
async def test_resources_list_names_recent_runs_live_deployments_and_the_schemas(
        make_server: MakeServer, pipelines: dict[str, Path], deploy_config: Path, tmp_path: Path) -> None:
    async with mcp.Client(make_server(), elicitation_callback=elicit_answer("accept")) as client:
        ran = await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
        assert ran.structured_content is not None
        await deploy(client, deploy_config, tmp_path / "a", "1")
        second = await deploy(client, deploy_config, tmp_path / "a", "2")
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        pipeline_schema = await client.read_resource("cicd://schemas/pipeline.json")
        deployment_schema = await client.read_resource("cicd://schemas/deployment.json")
        prompts = (await client.list_prompts()).prompts
    run_uri = f"cicd://runs/{ran.structured_content['run_id']}"
    assert run_uri in listed and "ok-pipe: succeeded" in (listed[run_uri].description or "")
    live = [uri for uri in listed if uri.startswith("cicd://deployments/")]
    assert live == [f"cicd://deployments/{second['deployment_id']}"]          # the live one only
    assert "live: web 2 in production" in (listed[live[0]].description or "")
    pipeline = json.loads(pipeline_schema.contents[0].text)  # type: ignore[union-attr]
    deployment = json.loads(deployment_schema.contents[0].text)  # type: ignore[union-attr]
    assert "stages" in pipeline["properties"] and "environments" in deployment["properties"]
    for prompt in prompts:
        assert prompt.arguments and all(a.description for a in prompt.arguments), prompt.name


@pytest.mark.anyio
async def test_a_caller_who_may_not_read_runs_is_not_shown_them(make_server: MakeServer,
                                                                 pipelines: dict[str, Path]) -> None:
    trusted = make_server()
    async with mcp.Client(trusted) as client:
        await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
    locked = make_server(policy_yaml(tools="{get_run: verified}"), trust_level=Level.UNTRUSTED)
    async with mcp.Client(locked) as client:
        uris = [str(r.uri) for r in (await client.list_resources()).resources]
    assert uris and not [u for u in uris if u.startswith("cicd://runs/")]
