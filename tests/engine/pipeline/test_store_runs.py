"""engine.store.runs, the repository of pipelines, runs and jobs, on a real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store import open_store, runs
from engine.store.base import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path)
    yield s
    s.close()


def _new_run(store: Store, run_id: str, created_at: float) -> None:
    runs.insert_run(store, run_id, pipeline="p", status="queued", created_at=created_at, variables={"A": "1"},
                    context={}, spec_path=None, spec_json="{}", max_workers=2)


def test_the_fingerprint_moves_with_everything_a_health_report_reads(store: Store) -> None:
    seen = [runs.store_fingerprint(store)]

    def changed() -> bool:
        now = runs.store_fingerprint(store)
        moved = now != seen[-1]
        seen.append(now)
        return moved

    _new_run(store, "r1", 10.0)
    assert changed()                          # a run is added
    runs.start_run(store, "r1", pipeline="p", status="running", started_at=11.0, owner=(1, "h", None), jobs=[])
    assert not changed()                      # a run starting is not something health reads
    runs.finish_run(store, "r1", status="succeeded", finished_at=12.0, duration=1.0, reason=None)
    assert changed()                          # a run ends
    runs.record_metrics(store, [runs.Metric(12.0, "job.duration", 1.0, "s", "p", "r1", "j")])
    assert changed()                          # a metric is recorded
    runs.save_pipeline(store, "p", source_path=None, spec_json="{}", updated_at=13.0)
    assert changed()                          # a pipeline is registered
    store.execute("DELETE FROM runs WHERE run_id = 'r1'")
    assert changed()                          # a run is removed


def test_jobs_keep_plan_order_log_paths_and_registration(store: Store) -> None:
    _new_run(store, "r1", 1.0)
    names = ["z-first", "a-second", "m-third"]
    runs.start_run(store, "r1", pipeline="p", status="running", started_at=2.0, owner=(1, "h", None), jobs=[
        runs.NewJob(n, "s", n, {}, [], "pending", False, f"/logs/{n}.log", "local") for n in names])
    assert runs.job_names(store, "r1") == names
    assert [r["name"] for r in runs.run_jobs(store, "r1")] == names
    assert runs.job_log_path(store, "r1", "a-second") == "/logs/a-second.log"
    assert runs.job_log_path(store, "r1", "nope") is None
    assert runs.job_log_path(store, "r2", "a-second") is None
    runs.update_job(store, "r1", "m-third", status="failed")
    runs.update_job(store, "r1", "z-first", status="timed_out")
    assert [(r["name"], r["status"]) for r in runs.run_jobs(store, "r1")] == [
        ("z-first", "timed_out"), ("a-second", "pending"), ("m-third", "failed")]
    assert not runs.pipeline_registered(store, "p")
    runs.save_pipeline(store, "p", source_path="/a.yaml", spec_json="{}", updated_at=1.0)
    runs.save_pipeline(store, "p", source_path="/b.yaml", spec_json="{}", updated_at=2.0)
    assert runs.pipeline_registered(store, "p") and runs.registered_pipeline(store, "p") == ("/b.yaml", "{}")
    with pytest.raises(ValueError, match="not a job column"):
        runs.update_job(store, "r1", "z-first", name="renamed")


def test_attempts_and_artifacts_written_twice_keep_the_last(store: Store) -> None:
    _new_run(store, "r1", 1.0)
    runs.record_attempt(store, "r1", "j", 1, status="running", failure_class=None, reason=None, started_at=1.0,
                        finished_at=None)
    runs.record_attempt(store, "r1", "j", 1, status="failed", failure_class="failure", reason="exit 2",
                        started_at=1.0, finished_at=3.5, exit_code=2)
    (row,) = store.query("SELECT status, duration, exit_code FROM attempts WHERE run_id = 'r1'")
    assert (row["status"], row["duration"], row["exit_code"]) == ("failed", 2.5, 2)
    runs.record_artifacts(store, "r1", [("j", "out.txt", "/s/1", 1, "aa")])
    runs.record_artifacts(store, "r1", [("j", "out.txt", "/s/2", 2, "bb")])
    (art,) = runs.run_artifacts(store, "r1")
    assert (art["stored_path"], art["size"], art["sha256"]) == ("/s/2", 2, "bb")
