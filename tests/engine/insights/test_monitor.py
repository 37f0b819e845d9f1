"""PipelineMonitor over real recorded runs, and the pure health rules."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import NotFoundError
from engine.insights import PipelineMonitor
from engine.insights._health import classify, fold_outcomes


def test_fold_counts_streaks_and_recovery() -> None:
    o = fold_outcomes(
        [
            ("succeeded", 0, 10),
            ("failed", 20, 30),
            ("interrupted", 40, 50),
            ("cancelled", 55, 56),
            ("succeeded", 60, 90),
            ("failed", 100, 110),
            ("failed", 120, 130),
        ]
    )
    assert (o.runs, o.succeeded, o.failed, o.cancelled) == (7, 2, 4, 1)
    assert o.failure_streak == 2 and o.recoveries == 1
    assert o.mean_time_to_recovery == 60.0  # first failure ended at 30, the success at 90
    assert o.success_rate == pytest.approx(2 / 6)


@pytest.mark.parametrize(
    ("outcomes", "newest", "status"),
    [
        ([], None, "unknown"),
        ([("cancelled", 0, 1)], "cancelled", "unknown"),
        ([("succeeded", 0, 1)] * 9, "succeeded", "healthy"),
        ([("succeeded", 0, 1)] * 9 + [("failed", 2, 3)], "failed", "degraded"),
        ([("succeeded", 0, 1)] * 8 + [("failed", 2, 3)] * 2, "failed", "failing"),
        ([("failed", 0, 1), ("succeeded", 2, 3)] * 3, "succeeded", "degraded"),
    ],
)
def test_classify(outcomes: list[tuple[str, float, float]], newest: str | None, status: str) -> None:
    assert classify(fold_outcomes(outcomes), newest, [], None)[0] == status


pytestmark = pytest.mark.slow


def test_health_of_recorded_pipelines(recorded: Any) -> None:
    mon = PipelineMonitor(store=recorded.manager.store)
    report = {h.pipeline: h for h in mon.monitor_pipeline_health().pipelines}
    assert set(report) == {"slowpath", "falsedep", "falsedep-fixed", "flaky", "broken"}
    assert report["slowpath"].status == "healthy" and report["slowpath"].success_rate == 1.0
    flaky = report["flaky"]
    assert flaky.status == "degraded" and [f.job for f in flaky.flaky_jobs] == ["flaky"]
    broken = report["broken"]
    assert broken.status == "failing" and broken.failure_streak == 2 and broken.success_rate == 0.0
    assert broken.last_run is not None and broken.last_run.run_id == recorded.runs["broken"][-1].run_id
    assert broken.mean_time_to_recovery is None


def test_unknown_pipeline_is_unknown(recorded: Any) -> None:
    h = PipelineMonitor(store=recorded.manager.store).monitor_pipeline_health("never-ran").pipelines[0]
    assert h.status == "unknown" and h.runs == 0 and h.success_rate is None and h.last_run is None
    assert h.reasons == ["no pipeline named 'never-ran'"]


def test_reports_of_recorded_runs(recorded: Any) -> None:
    mon = PipelineMonitor(store=recorded.manager.store)
    run = recorded.runs["falsedep"][-1]
    rep = mon.generate_pipeline_reports("falsedep", run.run_id).runs
    assert len(rep) == 1
    r = rep[0]
    assert (r.status, r.jobs_executed, r.passed, r.failed, r.skipped) == ("succeeded", 3, 3, 0, 0)
    assert r.artifacts_created == 1 and r.artifact_size.unit == "bytes" and r.artifact_size.value > 0
    stored = recorded.manager.get_run(run.run_id).duration
    assert r.duration is not None and r.duration.value == pytest.approx(stored, abs=1e-5)
    assert [s.name for s in r.stages] == ["main"] and r.stages[0].passed == 3
    assert {j.name: j.artifacts for j in r.jobs}["compile"] == ["app.bin"]
    broken = mon.generate_pipeline_reports("broken").runs
    assert len(broken) == 2 and all(b.failed == 1 and b.errors for b in broken)
    assert any("compile" in e for e in broken[0].errors)
    assert len(mon.generate_pipeline_reports().runs) == 14
    assert mon.generate_pipeline_reports("never-ran").message == "no pipeline named 'never-ran'"
    with pytest.raises(NotFoundError):
        mon.generate_pipeline_reports("slowpath", run.run_id)
