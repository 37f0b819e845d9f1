"""pipeline_health: computed from stored runs."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import mcp
import pytest

from server.tools.health import assess
from tests.server.conftest import MakeServer
from tests.server.test_gate import text


def runs(*statuses: str) -> list[dict[str, Any]]:
    """Newest first."""
    return [{"run_id": f"r{i}", "status": s, "finished_at": 1000.0 - i, "duration": 10.0 + i}
            for i, s in enumerate(statuses)]


@pytest.mark.parametrize(
    ("history", "status", "streak"),
    [
        ([], "unknown", 0),
        (["cancelled", "cancelled"], "unknown", 0),
        (["succeeded"] * 10, "healthy", 0),
        (["failed"] + ["succeeded"] * 19, "degraded", 1),
        (["succeeded", "failed", "succeeded", "succeeded", "failed"] + ["succeeded"] * 5, "degraded", 0),
        (["failed", "interrupted", "failed"] + ["succeeded"] * 17, "failing", 3),
        (["succeeded", "failed", "failed", "succeeded", "failed", "failed"], "failing", 0),
        (["cancelled", "succeeded", "succeeded"], "healthy", 0),
    ],
)
def test_assess(history: list[str], status: str, streak: int) -> None:
    health = assess("p", runs(*history))
    assert health.status == status
    assert health.consecutive_failures == streak


def test_assess_numbers() -> None:
    h = assess("p", runs("failed", "succeeded", "succeeded", "cancelled", "succeeded"))
    assert h.runs == 4 and h.success_rate == 0.75 and h.last_status == "failed" and h.last_run_id == "r0"
    assert h.median_duration == 12.0   # succeeded runs: 11, 12, 14
    assert h.issues == ["the last run failed", "1 of the last 4 runs failed"]


def insert_run(server: Any, pipeline: str, status: str, at: float, duration: float = 5.0) -> None:
    server.state.store.execute(
        "INSERT INTO runs (run_id, pipeline, status, created_at, started_at, finished_at, duration) "
        "VALUES (?,?,?,?,?,?,?)", (uuid.uuid4().hex[:12], pipeline, status, at, at, at + duration, duration))


@pytest.mark.anyio
async def test_health_from_real_and_stored_runs(make_server: MakeServer, pipelines: dict[str, Path]) -> None:
    server = make_server()
    now = time.time()
    for i in range(30):   # an older history: all good, beyond the window
        insert_run(server, "fail-pipe", "succeeded", now - 10_000 + i)
    async with mcp.Client(server) as client:
        for _ in range(3):
            await client.call_tool("run_pipeline", {"config_path": str(pipelines["fail"])})
        await client.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])})
        all_ = (await client.call_tool("pipeline_health", {})).structured_content
        one = (await client.call_tool("pipeline_health", {"pipeline_name": "fail-pipe"})).structured_content
        missing = await client.call_tool("pipeline_health", {"pipeline_name": "nope"})
    assert all_ is not None and one is not None
    by = {p["pipeline"]: p for p in all_["pipelines"]}
    assert by["ok-pipe"]["status"] == "healthy" and by["ok-pipe"]["runs"] == 1
    assert by["fail-pipe"]["status"] == "failing" and by["fail-pipe"]["consecutive_failures"] == 3
    assert by["fail-pipe"]["runs"] == 20 and by["fail-pipe"]["success_rate"] == 0.85
    assert "failing: fail-pipe" in all_["summary"] and "healthy: ok-pipe" in all_["summary"]
    assert [p["pipeline"] for p in one["pipelines"]] == ["fail-pipe"]
    assert missing.is_error and "no pipeline named 'nope'" in text(missing)
