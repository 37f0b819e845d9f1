"""PipelineOptimizer over real recorded runs, and its input checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.errors import InputError
from engine.insights import PipelineOptimizer, optimize_pipeline_performance
from engine.store import SQLiteStore

pytestmark = pytest.mark.slow


def test_the_slow_job_is_named_on_the_critical_path(recorded: Any) -> None:
    a = PipelineOptimizer(store=recorded.manager.store).analyze_performance("slowpath")
    assert a.status == "ok" and a.runs == {"succeeded": 3}
    assert a.bottlenecks is not None and a.bottlenecks.critical_path is not None
    path = a.bottlenecks.critical_path
    assert [j.job for j in path.jobs] == ["integration", "package"]
    top = max(path.jobs, key=lambda j: j.share)
    assert top.job == "integration" and top.share > 0.7
    assert a.bottlenecks.critical_path_jobs[0].job == "integration"
    assert a.bottlenecks.critical_path_jobs[0].runs_on_path == 3
    # Measured, in seconds: the sleeping job's duration is its real run time.
    assert a.duration_stats is not None
    it = a.duration_stats.jobs["integration"]
    assert it.unit == "s" and it.count == 3 and 1.2 <= it.min and it.max < 2.5
    assert a.memory_stats is not None and a.memory_stats.jobs["integration"].unit == "MB"
    assert a.cpu_stats is not None and a.cpu_stats.pipeline is not None and a.cpu_stats.pipeline.unit == "s"
    # Every edge carries an artifact: no dependency is called unused; splitting the slow job is offered.
    kinds = {(s.kind, tuple(s.jobs)) for s in a.suggestions}
    assert not any(k == "remove_dependency" for k, _ in kinds)
    assert ("split_job", ("integration",)) in kinds
    assert a.trends is not None and a.trends.verdict == "insufficient_data" and "3 sample" in a.trends.reason
    assert a.report_uri == "cicd://reports/slowpath"


def test_the_false_dependency_estimate_matches_a_rerun_without_it(recorded: Any) -> None:
    opt = PipelineOptimizer(store=recorded.manager.store)
    plan = opt.optimize_pipeline_performance("falsedep", target_improvement=0.2)
    removals = [s for s in plan.suggestions if s.kind == "remove_dependency"]
    # test really uses compile's artifact; only the edge to prepare is unused.
    assert [s.jobs for s in removals] == [["test", "prepare"]]
    s = removals[0]
    assert plan.suggestions[0] is s  # the biggest saving ranks first
    assert s.estimated_saving.unit == s.estimated_duration.unit == "s" and s.effort == "low"
    measured_with = recorded.mean_duration("falsedep")
    measured_without = recorded.mean_duration("falsedep-fixed")
    assert s.estimated_duration.value == pytest.approx(measured_without, rel=0.2)
    assert s.estimated_saving.value == pytest.approx(measured_with - measured_without, rel=0.2)
    cur = plan.current_performance
    assert cur.average_duration is not None and cur.average_duration.value == pytest.approx(measured_with)
    assert cur.target_duration is not None
    assert cur.target_duration.value == pytest.approx(0.8 * cur.average_duration.value)
    assert plan.expected_outcome.reaches_target is True
    assert plan.expected_outcome.estimated_duration is not None
    assert plan.expected_outcome.estimated_duration.unit == "s"


def test_the_flaky_job_is_found_with_the_time_its_retries_cost(recorded: Any) -> None:
    a = PipelineOptimizer(store=recorded.manager.store).analyze_performance("flaky")
    assert a.bottlenecks is not None
    assert [(f.job, f.runs, f.passed_on_retry, f.rate) for f in a.bottlenecks.flaky_jobs] == [
        ("flaky", 3, 3, 1.0)
    ]
    assert [r.job for r in a.bottlenecks.retries] == ["flaky"]
    lost = a.bottlenecks.retry_time_lost
    assert lost.unit == "s" and 3 * 0.5 <= lost.value < 3 * 2.0
    fix = [s for s in a.suggestions if s.kind == "fix_flaky_job"]
    assert [s.jobs for s in fix] == [["flaky"]] and fix[0].estimated_saving.value >= 0.4


def test_unknown_pipelines_and_empty_windows_are_said_plainly(recorded: Any, tmp_path: Path) -> None:
    opt = PipelineOptimizer(store=recorded.manager.store)
    a = opt.analyze_performance("never-ran")
    assert a.status == "unknown_pipeline" and "never-ran" in a.message
    assert a.duration_stats is None and a.suggestions == [] and a.bottlenecks is None
    plan = opt.optimize_pipeline_performance("never-ran")
    assert plan.status == "unknown_pipeline" and plan.current_performance.average_duration is None
    assert plan.expected_outcome.reaches_target is None
    later = PipelineOptimizer(store=recorded.manager.store, clock=lambda: 4_000_000_000.0)
    assert later.analyze_performance("slowpath").status == "no_runs_in_window"
    # The module-level convenience reads a workspace.
    assert optimize_pipeline_performance("nothing", workspace_dir=tmp_path).status == "unknown_pipeline"


def test_a_pipeline_that_only_fails_has_no_duration_figures(recorded: Any) -> None:
    opt = PipelineOptimizer(store=recorded.manager.store)
    a = opt.analyze_performance("broken")
    assert a.status == "ok" and a.runs == {"failed": 2}
    assert a.duration_stats is not None and a.duration_stats.pipeline is None
    assert "no succeeded run" in a.message and a.suggestions == []
    plan = opt.optimize_pipeline_performance("broken")
    assert plan.current_performance.average_duration is None and plan.expected_outcome.reaches_target is None


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True])
def test_target_improvement_is_checked(tmp_path: Path, bad: float) -> None:
    with pytest.raises(InputError, match="target_improvement"):
        PipelineOptimizer(store=SQLiteStore(tmp_path / "s.db")).optimize_pipeline_performance("p", bad)


@pytest.mark.parametrize("bad", [0, -1, 10_000])
def test_time_range_is_checked(tmp_path: Path, bad: float) -> None:
    with pytest.raises(InputError, match="time_range"):
        PipelineOptimizer(store=SQLiteStore(tmp_path / "s.db")).analyze_performance("p", bad)


def test_record_metric_stores_and_refuses_mixed_units(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    opt = PipelineOptimizer(store=store)
    opt.record_metric("deploy.time", 12.5, "s", {"pipeline": "web", "env": "prod"}, ts=100.0)
    row = store.query_one(
        "SELECT ts, value, unit, pipeline, job, tags_json FROM metrics WHERE name = 'deploy.time'"
    )
    assert row is not None and tuple(row.values()) == (100.0, 12.5, "s", "web", None, '{"env": "prod"}')
    with pytest.raises(InputError, match="recorded in 's'"):
        opt.record_metric("deploy.time", 300, "MB")
    with pytest.raises(InputError, match="unknown unit"):
        opt.record_metric("x", 1, "furlongs")
    with pytest.raises(InputError, match="finite"):
        opt.record_metric("x", float("nan"), "s")
    with pytest.raises(InputError, match="metric name"):
        opt.record_metric("bad name!", 1, "s")
    assert store.query_one("SELECT COUNT(*) AS n FROM metrics") == {"n": 1}
