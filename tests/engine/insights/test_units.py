"""Metric units: the usual spellings are accepted and stored in one unit per dimension."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InputError
from engine.insights import PipelineOptimizer
from engine.insights._units import check_dimension, normalise
from engine.store.sqlite import SQLiteStore


@pytest.mark.parametrize(
    ("value", "unit", "stored"),
    [
        (245.3, "seconds", (245.3, "s")),
        (245.3, "sec", (245.3, "s")),
        (245.3, "s", (245.3, "s")),
        (1500, "ms", (1.5, "s")),
        (2, "minutes", (120, "s")),
        (1024.0, "MB", (1024.0, "MB")),
        (1024.0, "MiB", (1024.0, "MB")),
        (2, "GiB", (2048, "MB")),
        (512, "kB", (0.5, "MB")),
        (1048576, "bytes", (1.0, "MB")),
        (78.5, "%", (78.5, "percent")),
        (78.5, "percent", (78.5, "percent")),
        (3, "count", (3, "count")),
    ],
)
def test_spellings_are_stored_normalised(value: float, unit: str, stored: tuple[float, str]) -> None:
    got = normalise(value, unit)
    assert got.value == pytest.approx(stored[0]) and got.unit == stored[1]


@pytest.mark.parametrize(
    ("name", "unit", "right"),
    [("duration", "MB", "seconds"), ("memory_mb", "s", "MiB"), ("cpu_percent", "MB", "%")],
)
def test_a_unit_of_the_wrong_dimension_is_refused_naming_the_right_ones(name: str, unit: str, right: str) -> None:
    with pytest.raises(ValueError, match=right):
        check_dimension(name, unit)


def test_record_metric_converts_and_refuses(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    opt = PipelineOptimizer(store=store)
    opt.record_metric("duration", 1500, "ms", tags={"pipeline": "p"})
    opt.record_metric("duration", 2.5, "seconds", tags={"pipeline": "p"})
    rows = store.query("SELECT value, unit FROM metrics WHERE name = 'duration' ORDER BY id")
    assert [(r["value"], r["unit"]) for r in rows] == [(1.5, "s"), (2.5, "s")]
    with pytest.raises(InputError, match=r"not a unit of time.*seconds"):
        opt.record_metric("duration", 1, "MB", tags={"pipeline": "p"})
    with pytest.raises(InputError, match=r"not a unit of memory.*MiB"):
        opt.record_metric("memory_mb", 1, "s", tags={"pipeline": "p"})
    assert store.query_one("SELECT COUNT(*) AS n FROM metrics") == {"n": 2}


def test_recorded_metrics_are_the_data_of_a_pipeline_without_runs(tmp_path: Path) -> None:
    opt = PipelineOptimizer(store=SQLiteStore(tmp_path / "s.db"))
    for v in (240.0, 250.0, 246.0):
        opt.record_metric("duration", v, "s", tags={"pipeline": "web"})
    opt.record_metric("memory_mb", 1, "GiB", tags={"pipeline": "web"})
    opt.record_metric("cpu_percent", 50, "percent", tags={"pipeline": "web"})
    a = opt.analyze_performance("web", time_range=7)
    assert a.status == "ok" and a["duration_stats"].pipeline.count == 3
    assert a.duration_stats is not None and a.duration_stats.pipeline is not None
    assert a.duration_stats.pipeline.mean == pytest.approx(245.333333) and a.duration_stats.pipeline.unit == "s"
    assert a.memory_stats is not None and a.memory_stats.pipeline is not None
    assert (a.memory_stats.pipeline.mean, a.memory_stats.pipeline.unit) == (1024.0, "MB")
    assert a.cpu_stats is not None and a.cpu_stats.pipeline is not None and a.cpu_stats.pipeline.unit == "percent"
    assert a.trends is not None and a.trends.samples == 3 and a.suggestions == []
    plan = opt.optimize_pipeline_performance("web", target_improvement=0.5)
    avg = plan["current_performance"]["average_duration"]
    assert avg == pytest.approx(245.333333) and avg.unit == "s" and f"{avg:.1f}" == "245.3"
    # The recorded values have one decimal at most: the target is stated to one decimal.
    assert plan.current_performance.target_duration == 122.7
    assert opt.analyze_performance("other").status == "unknown_pipeline"
