"""What an agent is told when its call is wrong: one line per field with what it sent and what is
allowed, no library layout or URLs; lax coercions refused; near names suggested; an unknown
pipeline answered alike by every tool that takes one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp
import pytest

from tests.server.conftest import MakeServer
from tests.server.test_gate import elicit_answer, text


async def _errors(client: mcp.Client, calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = []
    for name, args in calls:
        result = await client.call_tool(name, args)
        assert result.is_error, (name, args, text(result))
        out.append(text(result))
    return out


@pytest.mark.anyio
async def test_argument_errors_name_the_field_the_value_and_what_is_allowed(make_server: MakeServer) -> None:
    async with mcp.Client(make_server()) as client:
        wait, tail, limit, strategy, extra, missing, rule = await _errors(client, [
            ("run_pipeline", {"pipeline": "p", "wait": "yes"}),
            ("get_job_logs", {"run_id": "r", "tail": -5}),
            ("list_runs", {"limit": "10"}),
            ("create_rollback_plan", {"deployment_id": "d", "strategy": "fast"}),
            ("pipeline_health", {"pipeline": "p"}),
            ("analyze_performance", {}),
            ("execute_rollback", {}),
        ])
    for message in (wait, tail, limit, strategy, extra, missing, rule):
        assert "\n" not in message and "pydantic" not in message and "http" not in message
        assert "type=" not in message and "input_value" not in message
    assert wait.endswith('invalid arguments: wait: got "yes"; expected true or false (a JSON boolean, not a string)')
    assert tail.endswith("tail: got -5; expected an integer from 1 to 5000")
    assert limit.endswith('limit: got "10"; expected an integer from 1 to 100')
    assert strategy.endswith('strategy: got "fast"; expected one of immediate, rolling, blue_green, canary, manual')
    assert "unknown argument pipeline (did you mean pipeline_name?); this tool takes: max_chars, pipeline_name" in extra
    assert "pipeline_name is required" in missing
    assert rule.endswith("invalid arguments: give exactly one of deployment_id or plan_id")


@pytest.mark.anyio
async def test_an_unknown_pipeline_is_the_same_answer_in_every_tool(make_server: MakeServer,
                                                                  pipelines: dict[str, Path]) -> None:
    async with mcp.Client(make_server()) as client:
        ran = await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
        assert not ran.is_error, text(ran)
        answers = await _errors(client, [
            ("pipeline_health", {"pipeline_name": "ok-pip"}),
            ("analyze_performance", {"pipeline_name": "ok-pip"}),
            ("list_runs", {"pipeline": "ok-pip"}),
            ("run_pipeline", {"pipeline": "ok-pip"}),
            ("validate_pipeline", {"pipeline": "ok-pip"}),
        ])
        valid = await client.call_tool("validate_pipeline", {"pipeline": "ok-pipe"})
        no_file = await client.call_tool("validate_pipeline", {"config_path": str(pipelines["ok"]) + "x"})
    expected = "unknown pipeline 'ok-pip' (did you mean 'ok-pipe'?); known pipelines: ok-pipe"
    for answer in answers:
        assert answer.split(": ", 1)[1] == expected
    assert not valid.is_error and valid.structured_content and valid.structured_content["valid"] is True
    assert no_file.is_error and "did you mean 'ok.yaml'" in text(no_file)


@pytest.mark.anyio
async def test_unknown_environments_services_and_deployments_get_near_names(
        make_server: MakeServer, deploy_config: Path, tmp_path: Path) -> None:
    from tests.server.tools.test_rollback import deploy

    async with mcp.Client(make_server(), elicitation_callback=elicit_answer("accept")) as client:
        first = await deploy(client, deploy_config, tmp_path / "a", "1")
        env, service, deployment = await _errors(client, [
            ("environment_status", {"environment": "productio"}),
            ("environment_status", {"environment": "production", "service": first["service"] + "x"}),
            ("create_rollback_plan", {"deployment_id": first["deployment_id"] + "x"}),
        ])
        stop = await client.call_tool("stop_service", {"environment": "productoin", "service": "s"})
    assert "unknown environment 'productio' (did you mean 'production'?)" in env
    assert f"(did you mean {first['service']!r}?)" in service
    assert f"(did you mean {first['deployment_id']!r}?)" in deployment
    assert stop.is_error and "did you mean 'production'" in text(stop)
