"""A run's totals (insights_run_totals) equal its job rows re-aggregated, whichever way the
rows were written: a job that starts or finishes only adds, any other change re-aggregates."""

from __future__ import annotations

from typing import Any

import pytest

from engine.store import runs


def _direct(store: Any, run_id: str) -> dict[str, Any] | None:
    return store.query_one(
        "SELECT MIN(started_at) AS started_at, SUM(cpu_user + cpu_system) AS cpu_seconds,"
        " MAX(peak_rss_kb) / 1024.0 AS peak_rss_mb FROM jobs WHERE run_id = ? AND started_at IS NOT NULL"
        " HAVING COUNT(*) > 0", (run_id,))


def _totals(store: Any, run_id: str) -> dict[str, Any] | None:
    return store.query_one("SELECT started_at, cpu_seconds, peak_rss_mb FROM insights_run_totals WHERE run_id = ?",
                           (run_id,))


def test_run_totals_follow_starts_finishes_and_rewrites(store: Any) -> None:
    names = [f"j{n}" for n in range(6)]
    runs.insert_run(store, "r1", pipeline="p", status="queued", created_at=1.0, variables={}, context={},
                    spec_path=None, spec_json="{}", max_workers=2)
    runs.start_run(store, "r1", pipeline="p", status="running", started_at=1.0, owner=(1, "h", None),
                   jobs=[runs.NewJob(name=n, stage="s", base_name=n, matrix={}, needs=[], status="pending",
                                     allow_failure=False, log_path="", executor="local") for n in names])
    steps: list[tuple[str, dict[str, Any]]] = []
    for i, n in enumerate(names):
        steps.append((n, {"status": "running", "started_at": 20.0 - i, "recovery_json": "{}"}))   # starts
        steps.append((n, {"status": "succeeded", "cpu_user": 0.5 * i, "cpu_system": 0.25,
                          "peak_rss_kb": 1024 * (i + 1) if i % 2 else None, "recovery_json": None}))  # finishes
    steps += [
        ("j3", {"cpu_user": 0.0, "peak_rss_kb": 100}),           # usage rewritten: smaller
        ("j5", {"peak_rss_kb": None}),                            # the largest peak taken away
        ("j0", {"started_at": 2.0}),                              # a start moved earlier
        ("j1", {"started_at": None, "cpu_user": None}),           # no longer counted
        ("j2", {"status": "failed", "reason": "x"}),              # nothing counted changes
    ]
    for name, fields in steps:
        runs.update_job(store, "r1", name, **fields)
        direct, totals = _direct(store, "r1"), _totals(store, "r1")
        assert direct is not None and totals is not None
        assert totals == pytest.approx(direct), (name, fields)
    assert _totals(store, "r1") == pytest.approx({"started_at": 2.0, "cpu_seconds": 6.75, "peak_rss_mb": 100 / 1024})
