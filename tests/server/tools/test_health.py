"""pipeline_health and analyze_performance: computed by engine.insights from stored runs."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import mcp
import mcp_types as types
import pytest

from tests.server.conftest import MakeServer
from tests.server.test_gate import text


def insert_run(server: Any, pipeline: str, status: str, at: float, duration: float = 5.0) -> None:
    server.state.store.execute(
        "INSERT INTO runs (run_id, pipeline, status, created_at, started_at, finished_at, duration) "
        "VALUES (?,?,?,?,?,?,?)", (uuid.uuid4().hex[:12], pipeline, status, at, at, at + duration, duration))


@pytest.mark.anyio
async def test_health_from_real_and_stored_runs(make_server: MakeServer, pipelines: dict[str, Path]) -> None:
    server = make_server()
    now = time.time()
    for i in range(10):   # earlier history, all good
        insert_run(server, "fail-pipe", "succeeded", now - 10_000 + i)
    for i in range(5):    # outside a 1-day window
        insert_run(server, "fail-pipe", "failed", now - 3 * 86400 + i)
    async with mcp.Client(server) as client:
        for _ in range(3):
            await client.call_tool("run_pipeline", {"config_path": str(pipelines["fail"])})
        await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
        all_ = (await client.call_tool("pipeline_health", {"time_range_days": 1})).structured_content
        week = (await client.call_tool("pipeline_health", {"pipeline_name": "fail-pipe"})).structured_content
        missing = await client.call_tool("pipeline_health", {"pipeline_name": "nope"})
    assert all_ is not None and week is not None
    by = {p["pipeline"]: p for p in all_["pipelines"]}
    assert by["ok-pipe"]["status"] == "healthy" and by["ok-pipe"]["runs"] == 1
    fail = by["fail-pipe"]
    assert fail["status"] == "failing" and fail["failure_streak"] == 3
    assert (fail["runs"], fail["succeeded"], fail["failed"]) == (13, 10, 3)
    assert fail["success_rate"] == round(10 / 13, 4) and fail["last_status"] == "failed"
    assert fail["reasons"] and "failing: fail-pipe" in all_["summary"] and "healthy: ok-pipe" in all_["summary"]
    (wk,) = week["pipelines"]
    assert wk["pipeline"] == "fail-pipe" and wk["runs"] == 18 and wk["failed"] == 8
    assert missing.is_error and "unknown pipeline 'nope'" in text(missing)


@pytest.mark.anyio
async def test_analyze_performance_and_report(make_server: MakeServer, pipelines: dict[str, Path]) -> None:
    server = make_server()
    async with mcp.Client(server) as client:
        for _ in range(3):
            await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
        result = await client.call_tool("analyze_performance", {"pipeline_name": "ok-pipe"})
        unknown = await client.call_tool("analyze_performance", {"pipeline_name": "nope"})
        bad = await client.call_tool("analyze_performance", {"pipeline_name": "ok-pipe", "target_improvement": 2})
        assert result.structured_content is not None
        report = await client.read_resource(result.structured_content["report_uri"])
    out = result.structured_content
    assert out["status"] == "ok" and out["runs"] == {"succeeded": 3}
    assert out["duration"]["runs"] == 3 and out["duration"]["median"] > 0
    assert set(out["slowest_jobs"]) == {"compile", "unit"}
    assert out["critical_path"] == ["compile", "unit"]
    assert "ok-pipe" in out["summary"] and out["report_uri"] == "cicd://reports/ok-pipe"
    # An unknown pipeline is answered as in every tool that takes one: an error naming the near names.
    assert unknown.is_error and "unknown pipeline 'nope'" in text(unknown) and "ok-pipe" in text(unknown)
    assert bad.is_error and "target_improvement" in text(bad)
    (content,) = report.contents
    assert isinstance(content, types.TextResourceContents) and "<svg" in content.text and "ok-pipe" in content.text


def test_health_cache_recomputes_when_runs_change_or_the_minute_turns(make_server: MakeServer) -> None:
    from server.tools.health import HealthCache

    server = make_server()
    store = server.state.store
    now = [time.time()]
    cache = HealthCache(clock=lambda: now[0])
    insert_run(server, "p", "succeeded", now[0] - 100)
    assert cache.cached(store, None, 7) is None
    first = cache.get(store, None, 7)
    assert cache.get(store, None, 7) is first            # nothing changed: the same report
    assert cache.cached(store, None, 7) is first
    insert_run(server, "p", "failed", now[0] - 50)
    assert cache.cached(store, None, 7) is None
    second = cache.get(store, None, 7)
    assert second is not first and second.pipelines[0].failed == 1
    store.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE status = 'failed'")
    third = cache.get(store, None, 7)
    assert third.pipelines[0].failed == 0
    now[0] += 61
    assert cache.get(store, None, 7) is not third         # the window slid
    assert cache.get(store, "p", 7) is not cache.get(store, None, 7)


@pytest.mark.anyio
async def test_compat_optimize_pipeline_performance(make_server: MakeServer, pipelines: dict[str, Path]) -> None:
    server = make_server()
    async with mcp.Client(server) as client:
        await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
        result = await client.call_tool("call_module_function", {
            "module": "ci_cd_automation", "function": "optimize_pipeline_performance",
            "arguments": {"pipeline_name": "ok-pipe", "target_improvement": 0.3}})
    assert not result.is_error, text(result)
    out = result.structured_content
    assert out is not None and out["tool"] == "analyze_performance"
    assert out["result"]["pipeline"] == "ok-pipe" and out["result"]["target_improvement"] == 0.3
