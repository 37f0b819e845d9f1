"""Property tests: arbitrary JSON as the arguments of every tool, through the MCP client.

Whatever arrives, the server answers: a tool error with a message of its own (input refused,
not found, ...) or a result, never a protocol failure and never the SDK's bare "Error
executing tool X", which is what an unexpected exception (a crash) turns into.
The server runs at the `trusted` level so every tool body is reached; a harmless pipeline is
registered so that some drawn names hit a real run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import MakeServer, policy_text, text

EXAMPLES = 40

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
                | st.sampled_from(["", "..", "../../etc/passwd", "/", "\x00", "a" * 5000, "ok-pipe", "staging",
                                   "production", "rolling", "canary", "ci_cd_automation", "run_pipeline",
                                   "x' OR '1'='1", "${HOME}", "$(touch /tmp/pwned)", "(a+)+$", "[", "*",
                                   "\u202e", "🦀" * 10, "1e309", "-1", "NaN"]))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


@pytest.fixture
def live(make_server: MakeServer, tmp_path: Path) -> Iterator[tuple[BlockingPortal, mcp.Client, dict[str, Any]]]:
    pipeline = tmp_path / "ok.yaml"
    pipeline.write_text("name: ok-pipe\nsource: null\nstages:\n  - name: s\n    jobs:\n"
                        "      - name: j\n        commands: ['echo hi']\n")
    server = make_server(policy_text(compatibility="true"))   # the compatibility tool is listed (and fuzzed) too
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(mcp.Client(server)) as client:
        first = portal.call(client.call_tool, "run_pipeline", {"config_path": str(pipeline)})
        assert not first.is_error, text(first)
        tools = {t.name: t.input_schema for t in portal.call(client.list_tools).tools}
        yield portal, client, tools


def _arguments_for(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Mostly the tool's own field names, each with an arbitrary JSON value; sometimes anything."""
    names = sorted(schema.get("properties", {}))
    fields = st.dictionaries(st.sampled_from(names), json_values, max_size=len(names)) if names else st.just({})
    return fields | st.dictionaries(st.text(max_size=12), json_values, max_size=5)


def _check(tool: str, result: Any) -> None:
    message = text(result)
    assert message.strip() != f"Error executing tool {tool}", f"{tool} crashed (the SDK's generic message)"
    if result.is_error:
        assert message.strip(), f"{tool}: an error without a message"


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


TOOLS = ["run_pipeline", "get_run", "get_job_logs", "cancel_run", "pipeline_health", "analyze_performance",
         "deploy", "create_rollback_plan", "execute_rollback", "call_module_function"]


@pytest.mark.parametrize("tool", TOOLS)
def test_arbitrary_arguments_never_crash_a_tool(live: tuple[BlockingPortal, mcp.Client, dict[str, Any]],
                                                tool: str) -> None:
    portal, client, tools = live
    assert tool in tools, f"the server offers no {tool}"

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(arguments=_arguments_for(tools[tool]))
    def check(arguments: dict[str, Any]) -> None:
        result = portal.call(client.call_tool, tool, arguments)   # an MCPError (protocol failure) fails here
        _check(tool, result)

    check()
    # The server still answers normally afterwards.
    assert not portal.call(client.call_tool, "pipeline_health", {}).is_error


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tool=st.sampled_from([*TOOLS, "no_such_tool", "", "../run_pipeline"]), arguments=json_values)
def test_any_json_as_arguments(live: tuple[BlockingPortal, mcp.Client, dict[str, Any]], tool: str,
                               arguments: Any) -> None:
    """Arguments that are not even an object, or a tool that does not exist."""
    portal, client, _ = live
    args = arguments if isinstance(arguments, dict) else {"value": arguments}
    result = portal.call(client.call_tool, tool, args)
    assert result.is_error or tool in TOOLS
    _check(tool, result)


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(grep=st.text(max_size=60) | st.sampled_from(["[", "(?P<x", "\\", "a{1000000}", "(?i)hi", "$^"]),
       tail=st.integers(min_value=-10, max_value=10_000))
def test_log_search_patterns(live: tuple[BlockingPortal, mcp.Client, dict[str, Any]], grep: str, tail: int) -> None:
    """A regular expression from the caller is compiled and run on the server: bad ones are tool errors."""
    portal, client, _ = live
    run_id = portal.call(client.call_tool, "pipeline_health", {"pipeline_name": "ok-pipe"}).structured_content
    assert run_id is not None
    last = run_id["pipelines"][0]["last_run_id"]
    result = portal.call(client.call_tool, "get_job_logs", {"run_id": last, "grep": grep, "tail": tail})
    _check("get_job_logs", result)


def _valid_bases(last_run: str) -> dict[str, dict[str, Any]]:
    return {
        "run_pipeline": {"pipeline": "ok-pipe"},
        "get_run": {"run_id": last_run},
        "get_job_logs": {"run_id": last_run, "job": "j"},
        "pipeline_health": {"pipeline_name": "ok-pipe"},
        "analyze_performance": {"pipeline_name": "ok-pipe"},
        "deploy": {"environment": "staging", "version": "1"},
        "create_rollback_plan": {"deployment_id": "d-1"},
        "execute_rollback": {"deployment_id": "d-1"},
        "cancel_run": {"run_id": last_run},
        "call_module_function": {"module": "ci_cd_automation", "function": "optimize_pipeline_performance",
                                 "arguments": {"pipeline_name": "ok-pipe"}},
    }


field_values = (st.text(max_size=30) | st.integers(min_value=-(2**64), max_value=2**64)
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.dictionaries(st.text(max_size=12), st.text(max_size=30), max_size=4)
                | st.lists(st.text(max_size=20), max_size=3) | json_values)


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_one_field_wrong_in_a_valid_call(live: tuple[BlockingPortal, mcp.Client, dict[str, Any]],
                                         data: st.DataObject) -> None:
    """A valid call with one field replaced: reaches the tool body far more often than random JSON."""
    portal, client, tools = live
    health = portal.call(client.call_tool, "pipeline_health", {"pipeline_name": "ok-pipe"}).structured_content
    assert health is not None
    bases = _valid_bases(health["pipelines"][0]["last_run_id"])
    tool = data.draw(st.sampled_from(sorted(bases)))
    fields = sorted(tools[tool].get("properties", {}))
    name = data.draw(st.sampled_from(fields))
    arguments = {**bases[tool], name: data.draw(field_values)}
    _check(tool, portal.call(client.call_tool, tool, arguments))


@settings(max_examples=20, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(variables=st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=4))
def test_run_variables(live: tuple[BlockingPortal, mcp.Client, dict[str, Any]], variables: dict[str, str]) -> None:
    """Variables become a job's environment: any text (NUL bytes, '=' in names, unicode) is a run or an error."""
    portal, client, _ = live
    result = portal.call(client.call_tool, "run_pipeline", {"pipeline": "ok-pipe", "variables": variables})
    _check("run_pipeline", result)
    if not result.is_error:
        assert result.structured_content and result.structured_content["status"] in ("succeeded", "failed")


@pytest.mark.anyio
async def test_lone_surrogates_are_refused_and_audited(make_server: MakeServer) -> None:
    server = make_server()
    async with mcp.Client(server) as client:
        result = await client.call_tool("pipeline_health", {"pipeline_name": "\udcff"})
    assert result.is_error
    assert len(server.state.audit.recent(10)) == 1


@pytest.mark.anyio
async def test_catastrophic_grep_patterns_are_bounded(make_server: MakeServer, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Patterns that backtrack for hours on one short line end as a tool error within the bound."""
    import anyio

    from engine.pipeline import logs

    monkeypatch.setattr(logs, "GREP_SECONDS", 1.0)
    pipeline = tmp_path / "a.yaml"
    pipeline.write_text("name: aaa\nsource: null\nstages:\n  - name: s\n    jobs:\n      - name: j\n"
                        "        commands: ['echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac']\n")
    server = make_server()
    async with mcp.Client(server) as client:
        run = await client.call_tool("run_pipeline", {"config_path": str(pipeline)})
        run_id = run.structured_content["run_id"] if run.structured_content else ""
        for grep in ("(a+)+$", "(a|aa)*$", "(.*){30}x"):
            with anyio.fail_after(30):
                result = await client.call_tool("get_job_logs", {"run_id": run_id, "grep": grep})
            assert result.is_error and "took more than" in text(result), text(result)
        fine = await client.call_tool("get_job_logs", {"run_id": run_id, "grep": "a+c$"})
    assert not fine.is_error and "aaaac" in text(fine)
