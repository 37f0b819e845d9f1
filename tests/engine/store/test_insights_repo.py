"""The insights repository on each dialect: the roll-ups its triggers keep equal the job rows
whatever order they are written in, and the figures read from them and the ordered indexes."""

from __future__ import annotations

import math

import pytest

from engine.store import Store, insights
from engine.store import runs as runs_repo

HOUR = 3600.0
T0 = 1_000 * HOUR  # an hour boundary


def nearest_rank(n: int, fraction: float) -> int:
    return max(1, math.ceil(n * fraction))


def _run(store: Store, run_id: str, created_at: float, status: str = "succeeded", duration: float = 10.0) -> None:
    runs_repo.insert_run(store, run_id, pipeline="p", status="queued", created_at=created_at, variables={},
                         context={}, spec_path=None, spec_json='{"name": "p"}', max_workers=2)
    runs_repo.start_run(store, run_id, pipeline="p", status="running", started_at=created_at, owner=(1, "h", None),
                        jobs=[runs_repo.NewJob(name=n, stage="s", base_name=n, matrix={}, needs=[], status="pending",
                                               allow_failure=False, log_path="", executor="local")
                              for n in ("build", "test")])
    runs_repo.finish_run(store, run_id, status=status, finished_at=created_at + duration, duration=duration,
                         reason=None)


def _job(store: Store, run_id: str, name: str, started_at: float, duration: float, *, status: str = "succeeded",
         attempts: int = 1, cpu: float = 1.0, rss_kb: int = 1024, queue: float = 0.5) -> None:
    # written as the runner does: running first, then the final row
    runs_repo.update_job(store, run_id, name, status="running", started_at=started_at, ready_at=started_at - queue,
                         queue_wait=queue)
    runs_repo.update_job(store, run_id, name, status=status, finished_at=started_at + duration, duration=duration,
                         attempts=attempts, cpu_user=cpu * 0.75, cpu_system=cpu * 0.25, peak_rss_kb=rss_kb)


@pytest.fixture
def history(store: Store) -> Store:
    # build: 1, 2, 3, 4 s (one in the partial hour before the window's first full hour)
    for n, (start, dur) in enumerate([(T0 - 600, 1.0), (T0 + 10, 2.0), (T0 + HOUR + 5, 3.0), (T0 + 2 * HOUR, 4.0)]):
        _run(store, f"r{n}", start, duration=dur + 1)
        _job(store, f"r{n}", "build", start, dur, cpu=dur, rss_kb=1024 * (n + 1))
        _job(store, f"r{n}", "test", start + dur, 1.0, status="failed" if n == 1 else "succeeded",
             attempts=2 if n == 2 else 1)
        store.execute("INSERT INTO attempts (run_id, job, attempt, status, started_at, duration) VALUES (?,?,?,?,?,?)",
                      (f"r{n}", "test", 1, "failed" if n == 2 else "succeeded", start + dur, 0.25))
    return store


def test_the_hourly_rollup_equals_the_job_rows(history: Store) -> None:
    rolled = history.query_one(
        "SELECT SUM(started) AS started, SUM(succeeded) AS ok, SUM(failed) AS failed, SUM(dur_n) AS n,"
        " SUM(dur_sum) AS dur, SUM(mem_sum) AS mem, SUM(passed_on_retry) AS retried FROM insights_job_hours")
    direct = history.query_one(
        "SELECT COUNT(*) AS started, SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS ok,"
        " SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed, COUNT(duration) AS n, SUM(duration) AS dur,"
        " SUM(peak_rss_kb / 1024.0) AS mem FROM jobs WHERE started_at IS NOT NULL")
    assert rolled is not None and direct is not None
    assert {k: rolled[k] for k in direct} == pytest.approx(dict(direct))
    assert rolled["retried"] == 1
    hours = history.query("SELECT hour, started FROM insights_job_hours WHERE name = 'build' ORDER BY hour")
    assert [(h["hour"], h["started"]) for h in hours] == [(999, 1), (1000, 1), (1001, 1), (1002, 1)]
    history.execute("DELETE FROM jobs WHERE run_id = 'r3'")
    left = history.query_one("SELECT SUM(started) AS n FROM insights_job_hours")
    assert left == {"n": 6}
    totals = history.query("SELECT run_id, cpu_seconds, peak_rss_mb FROM insights_run_totals ORDER BY run_id")
    assert [(t["run_id"], t["cpu_seconds"], t["peak_rss_mb"]) for t in totals] == \
        [("r0", 2.0, 1.0), ("r1", 3.0, 2.0), ("r2", 4.0, 3.0)]


def test_job_figures_count_the_window_exactly(history: Store) -> None:
    since = T0 - 900  # takes in the partial hour
    figures = insights.job_metric_figures(history, "p", since, nearest_rank)
    build = figures["duration"]["build"]
    assert (build.n, build.total, build.squares) == (4, 10.0, 30.0)
    assert (build.lo, build.median, build.p95, build.hi) == (1.0, 2.5, 4.0, 4.0)
    assert figures["memory"]["build"].hi == 4.0
    later = insights.job_metric_figures(history, "p", T0 + 5, nearest_rank)["duration"]["build"]
    assert (later.n, later.lo) == (3, 2.0)
    aggregates = {a.job: a for a in insights.job_aggregates(history, "p", since)}
    assert (aggregates["test"].runs, aggregates["test"].succeeded, aggregates["test"].failed) == (4, 3, 1)
    assert aggregates["test"].passed_on_retry == 1
    assert aggregates["build"].queue_wait_mean == pytest.approx(0.5)
    assert insights.retry_losses(history, "p", since) == [insights.RetryLoss("test", 1, 0.25)]


def test_run_figures_trend_and_outcomes(history: Store) -> None:
    since = T0 - HOUR
    runs = insights.run_metric_figures(history, "p", since, nearest_rank)
    assert (runs["duration"].n, runs["duration"].lo, runs["duration"].hi) == (4, 2.0, 5.0)
    assert runs["cpu"].total == pytest.approx(14.0)
    trend = insights.trend_figures(history, "p", since)
    assert trend.n == 4 and trend.sy == 14.0 and trend.day_span == pytest.approx((2 * HOUR + 600) / 86400)
    assert insights.run_status_counts(history, "p", since) == {"succeeded": 4}
    assert [o[0] for o in insights.iterate_run_outcomes(history, "p", since)] == ["succeeded"] * 4
    assert insights.known_pipelines(history) == ["p"]
    assert insights.pipeline_exists(history, "p") and not insights.pipeline_exists(history, "q")
    latest = insights.recent_runs(history, "p", since, limit=1)
    assert [r.run_id for r in latest] == ["r3"]
    assert list(latest[0].jobs) == ["build", "test"] and latest[0].spec == {"name": "p"}
    assert latest[0].jobs["test"].last_attempt == 0.25


def test_a_recorded_metric_gets_an_id_and_its_unit_is_remembered(store: Store) -> None:
    first = insights.record_metric(store, 1.0, "custom.size", 3.0, "MB", "p", None, None, "{}")
    second = insights.record_metric(store, 2.0, "custom.size", 4.0, "MB", "p", None, None, "{}")
    assert second > first
    assert insights.metric_unit(store, "custom.size", "s") == "MB"
    assert insights.metric_unit(store, "custom.size", "MB") is None
