"""SQL aggregation against the pure reference, over rows inserted straight into a real SQLite store."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from engine.insights import _queries
from engine.insights._stats import summarize
from engine.store import SQLiteStore

NOW = time.time()


def _run(
    store: SQLiteStore,
    run_id: str,
    created: float,
    status: str = "succeeded",
    pipeline: str = "p",
    duration: float | None = 10.0,
) -> None:
    store.execute(
        "INSERT INTO runs (run_id, pipeline, status, created_at, started_at, finished_at, duration,"
        " max_workers) VALUES (?,?,?,?,?,?,?,?)",
        (run_id, pipeline, status, created, created, created + (duration or 0), duration, 2),
    )


def _job(
    store: SQLiteStore,
    run_id: str,
    name: str,
    started: float | None,
    duration: float | None,
    *,
    pipeline: str = "p",
    status: str = "succeeded",
    attempts: int = 1,
    cpu: float | None = 1.0,
    rss_kb: int | None = 2048,
    needs: list[str] | None = None,
    queue_wait: float | None = 0.0,
) -> None:
    store.execute(
        "INSERT INTO jobs (run_id, name, pipeline, stage, base_name, needs_json, status, started_at,"
        " finished_at, duration, queue_wait, cpu_user, cpu_system, peak_rss_kb, attempts)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            run_id,
            name,
            pipeline,
            "s",
            name,
            json.dumps(needs or []),
            status,
            started,
            None if started is None or duration is None else started + duration,
            duration,
            queue_wait,
            None if cpu is None else cpu * 0.75,
            None if cpu is None else cpu * 0.25,
            rss_kb,
            attempts,
        ),
    )


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "state.db")


def _raw(store: SQLiteStore, since: float) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {"duration": {}, "cpu": {}, "memory": {}}
    for r in store.query("SELECT * FROM jobs WHERE pipeline = 'p' AND started_at >= ?", (since,)):
        if r["duration"] is not None:
            out["duration"].setdefault(r["name"], []).append(r["duration"])
        if r["cpu_user"] is not None:
            out["cpu"].setdefault(r["name"], []).append(r["cpu_user"] + r["cpu_system"])
        if r["peak_rss_kb"] is not None:
            out["memory"].setdefault(r["name"], []).append(r["peak_rss_kb"] / 1024)
    return out


def _check_against_reference(store: SQLiteStore, since: float) -> None:
    got = _queries.job_metric_summaries(store, "p", since)
    want = _raw(store, since)
    assert set(got) == set(want)
    for metric, jobs in want.items():
        assert set(got[metric]) == set(jobs), metric
        for job, values in jobs.items():
            ref, sql = summarize(values), got[metric][job]
            assert ref is not None
            assert sql.count == ref.count
            assert (sql.median, sql.p95, sql.min, sql.max) == pytest.approx(
                (ref.median, ref.p95, ref.min, ref.max)
            )
            assert sql.mean == pytest.approx(ref.mean)
            if ref.stddev is None:
                assert sql.stddev is None
            else:
                assert sql.stddev == pytest.approx(ref.stddev, rel=1e-6, abs=1e-9)


def test_sql_summaries_match_the_pure_reference(store: SQLiteStore) -> None:
    rnd = random.Random(7)
    for i in range(60):
        t = NOW - 3 * 86400 + i * 3000 + rnd.random() * 100  # spans many hour buckets
        _run(store, f"r{i}", t)
        for name in ("build", "test", "deploy"):
            _job(
                store,
                f"r{i}",
                name,
                t + rnd.random(),
                rnd.uniform(0.1, 30),
                cpu=rnd.choice([None, 2.5, 0.3]),
                rss_kb=rnd.choice([None, 1000, 50_000, 123_456]),
            )
    # A window start inside an hour: the partial hour comes from raw rows, the rest from the rollup.
    for since in (NOW - 7 * 86400, NOW - 2 * 86400 + 1234.5, NOW - 3600 * 5 - 17):
        _check_against_reference(store, since)


def test_rollups_follow_updates_and_deletes(store: SQLiteStore) -> None:
    since = NOW - 86400
    _run(store, "r1", NOW - 3600)
    _job(store, "r1", "a", None, None, cpu=None, rss_kb=None)  # pending: contributes nothing
    store.execute("UPDATE jobs SET status = 'running', started_at = ? WHERE name = 'a'", (NOW - 3500,))
    store.execute(
        "UPDATE jobs SET status = 'succeeded', duration = 4.0, finished_at = ?, cpu_user = 1,"
        " cpu_system = 0.5, peak_rss_kb = 4096, attempts = 2 WHERE name = 'a'",
        (NOW - 3496,),
    )
    _job(store, "r1", "b", NOW - 3000, 2.0, status="failed")
    _check_against_reference(store, since)
    agg = {a.job: a for a in _queries.job_aggregates(store, "p", since)}
    assert (agg["a"].runs, agg["a"].succeeded, agg["a"].passed_on_retry) == (1, 1, 1)
    assert (agg["b"].failed, agg["b"].succeeded) == (1, 0)
    totals = store.query_one("SELECT cpu_seconds, peak_rss_mb FROM insights_run_totals WHERE run_id = 'r1'")
    assert totals is not None and tuple(totals.values()) == pytest.approx((2.5, 4.0))
    store.execute("DELETE FROM runs WHERE run_id = 'r1'")  # cascades to the jobs
    assert _queries.job_metric_summaries(store, "p", since) == {"duration": {}, "cpu": {}, "memory": {}}
    assert _queries.job_aggregates(store, "p", since) == []
    assert store.query_one("SELECT COUNT(*) AS n FROM insights_run_totals") == {"n": 0}


def test_run_level_summaries(store: SQLiteStore) -> None:
    for i, d in enumerate([10.0, 20.0, 30.0, 40.0]):
        _run(store, f"r{i}", NOW - 1000 + i, duration=d)
        _job(store, f"r{i}", "a", NOW - 1000 + i, 1.0, cpu=1.0, rss_kb=1024 * (i + 1))
        _job(store, f"r{i}", "b", NOW - 1000 + i, 1.0, cpu=2.0, rss_kb=512)
    _run(store, "bad", NOW - 10, status="failed", duration=999.0)
    got = _queries.run_metric_summaries(store, "p", NOW - 86400)
    assert got["duration"].count == 4 and got["duration"].median == 25.0 and got["duration"].max == 40.0
    assert got["cpu"].count == 4 and got["cpu"].mean == pytest.approx(3.0)
    assert (got["memory"].min, got["memory"].max) == (1.0, 4.0)


def test_retry_losses_count_only_the_attempts_that_were_retried(store: SQLiteStore) -> None:
    _run(store, "r1", NOW - 100)
    _job(store, "r1", "flaky", NOW - 100, 5.0, attempts=3)
    for n, (status, dur) in enumerate([("failed", 1.5), ("failed", 1.0), ("succeeded", 2.5)], start=1):
        store.execute(
            "INSERT INTO attempts (run_id, job, attempt, status, started_at, duration) VALUES (?,?,?,?,?,?)",
            ("r1", "flaky", n, status, NOW - 100 + n, dur),
        )
    losses = _queries.retry_losses(store, "p", NOW - 86400)
    assert [(x.job, x.retried_runs, x.seconds_lost) for x in losses] == [("flaky", 1, 2.5)]


def test_trend_sums_use_succeeded_runs_in_the_window(store: SQLiteStore) -> None:
    for i in range(6):
        _run(store, f"r{i}", NOW - 6 * 86400 + i * 86400, duration=10.0 + i)
    _run(store, "old", NOW - 30 * 86400, duration=1000.0)
    _run(store, "f", NOW - 100, status="failed", duration=1000.0)
    sums, span = _queries.trend_sums(store, "p", NOW - 7 * 86400)
    assert sums.n == 6 and sums.sy == pytest.approx(75.0)
    assert span == pytest.approx(5.0)


def test_unknown_pipelines(store: SQLiteStore) -> None:
    assert not _queries.pipeline_exists(store, "nope")
    _run(store, "r1", NOW, pipeline="real")
    assert _queries.pipeline_exists(store, "real")
    assert _queries.known_pipelines(store) == ["real"]
