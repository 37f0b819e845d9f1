"""The runs repository on each dialect: pipelines, runs, jobs in plan order, attempts, artifacts,
metrics, cancellation, leases and interruption."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine._process import owner_alive
from engine.store import Store
from engine.store import runs as runs_repo

OWNER = (1, "host-a", "boot:1")


def _run(store: Store, run_id: str, *, pipeline: str = "p", created_at: float = 10.0) -> None:
    runs_repo.insert_run(store, run_id, pipeline=pipeline, status="queued", created_at=created_at,
                         variables={"A": "1"}, context={"branch": "main"}, spec_path=None, spec_json="{}",
                         max_workers=2)


def _jobs(*names: str) -> list[runs_repo.NewJob]:
    return [runs_repo.NewJob(name=n, stage="build", base_name=n, matrix={}, needs=[], status="pending",
                             allow_failure=n.startswith("opt"), log_path=f"/logs/{n}.log", executor="local")
            for n in names]


def test_a_pipeline_registered_twice_keeps_the_second(store: Store) -> None:
    runs_repo.save_pipeline(store, "p", source_path="a.yaml", spec_json="{1}", updated_at=1.0)
    runs_repo.save_pipeline(store, "p", source_path="b.yaml", spec_json="{2}", updated_at=2.0)
    assert runs_repo.registered_pipeline(store, "p") == ("b.yaml", "{2}")
    assert runs_repo.pipeline_registered(store, "p") and not runs_repo.pipeline_registered(store, "q")
    _run(store, "r1", pipeline="only-runs")
    assert runs_repo.pipeline_names(store) == ["only-runs", "p"]


def test_jobs_are_listed_in_plan_order_and_updated_by_column(store: Store) -> None:
    _run(store, "r1")
    runs_repo.start_run(store, "r1", pipeline="p", status="running", started_at=11.0, owner=OWNER,
                        jobs=_jobs("zeta", "alpha", "opt-mid"), lease_until=100.0)
    assert runs_repo.job_names(store, "r1") == ["zeta", "alpha", "opt-mid"]
    runs_repo.update_job(store, "r1", "alpha", status="succeeded", started_at=12.0, duration=1.5, exit_code=0)
    jobs = {j["name"]: j for j in runs_repo.run_jobs(store, "r1")}
    assert jobs["alpha"]["status"] == "succeeded" and jobs["alpha"]["duration"] == 1.5
    assert jobs["opt-mid"]["allow_failure"] == 1 and jobs["zeta"]["allow_failure"] == 0
    assert runs_repo.job_log_path(store, "r1", "zeta") == "/logs/zeta.log"
    assert runs_repo.job_log_path(store, "r1", "nope") is None
    run = runs_repo.get_run(store, "r1")
    assert run is not None
    assert (run["status"], run["owner_host"], run["owner_pid"], run["lease_expires_at"]) == \
        ("running", "host-a", 1, 100.0)
    with pytest.raises(ValueError, match="not a job column"):
        runs_repo.update_job(store, "r1", "alpha", pipeline="x")


def test_attempts_and_artifacts_are_rewritten_not_duplicated(store: Store) -> None:
    _run(store, "r1")
    runs_repo.start_run(store, "r1", pipeline="p", status="running", started_at=11.0, owner=OWNER, jobs=_jobs("a"))
    runs_repo.record_attempt(store, "r1", "a", 1, status="running", failure_class=None, reason=None,
                             started_at=12.0, finished_at=None)
    runs_repo.record_attempt(store, "r1", "a", 1, status="failed", failure_class="failure", reason="exit 1",
                             started_at=12.0, finished_at=13.5, exit_code=1, peak_rss_kb=2048)
    rows = store.query("SELECT * FROM attempts WHERE run_id = ?", ("r1",))
    assert len(rows) == 1 and rows[0]["duration"] == 1.5 and rows[0]["peak_rss_kb"] == 2048
    runs_repo.record_artifacts(store, "r1", [("a", "out/b.txt", "/s/1", 3, "h1"), ("a", "out/a.txt", "/s/2", 4, "h2")])
    runs_repo.record_artifacts(store, "r1", [("a", "out/b.txt", "/s/3", 5, "h3")])
    arts = runs_repo.run_artifacts(store, "r1")
    assert [(a["path"], a["size"], a["sha256"]) for a in arts] == [("out/a.txt", 4, "h2"), ("out/b.txt", 5, "h3")]
    runs_repo.record_artifacts(store, "r1", [])  # nothing to write is fine


def test_finished_runs_are_listed_newest_first_with_their_metrics(store: Store) -> None:
    for n, status in enumerate(["succeeded", "failed", "succeeded"]):
        _run(store, f"r{n}", created_at=10.0 + n)
        runs_repo.finish_run(store, f"r{n}", status=status, finished_at=20.0 + n, duration=5.0, reason=None,
                             metrics=[runs_repo.Metric(20.0 + n, "run.duration", 5.0, "s", "p", f"r{n}",
                                                       tags={"status": status})])
    assert [r["run_id"] for r in runs_repo.list_runs(store)] == ["r2", "r1", "r0"]
    assert [r["run_id"] for r in runs_repo.list_runs(store, status="succeeded", limit=1)] == ["r2"]
    assert runs_repo.list_runs(store, pipeline="other") == []
    assert runs_repo.recent_run_ids(store, 2) == ["r2", "r1"]
    assert store.query_one("SELECT COUNT(*) AS n FROM metrics WHERE name = 'run.duration'") == {"n": 3}
    runs_repo.record_metrics(store, [runs_repo.Metric(30.0, "job.duration", 1.0, "s", "p", "r0", "a")])
    assert store.query_one("SELECT tags_json FROM metrics WHERE name = 'job.duration'") == {"tags_json": "{}"}


def test_cancel_is_a_flag_the_lease_renewal_reads(store: Store) -> None:
    _run(store, "r1")
    assert runs_repo.renew_lease(store, "r1", until=50.0) is False
    runs_repo.request_cancel(store, "r1")
    assert runs_repo.cancel_requested(store, "r1") is True
    assert runs_repo.renew_lease(store, "r1", until=60.0) is True
    run = runs_repo.get_run(store, "r1")
    assert run is not None and run["lease_expires_at"] == 60.0
    assert runs_repo.cancel_requested(store, "missing") is False


def test_an_interrupted_run_ends_its_unfinished_jobs_and_attempts(store: Store) -> None:
    _run(store, "r1")
    runs_repo.start_run(store, "r1", pipeline="p", status="running", started_at=11.0, owner=OWNER,
                        jobs=_jobs("done", "busy", "waiting"))
    runs_repo.update_job(store, "r1", "done", status="succeeded", finished_at=12.0)
    runs_repo.update_job(store, "r1", "busy", status="running", executor="local", recovery_json='{"pgid": 4242}')
    runs_repo.record_attempt(store, "r1", "busy", 1, status="running", failure_class=None, reason=None,
                             started_at=12.0, finished_at=None)
    assert runs_repo.job_recovery_records(store, "r1") == [("busy", "local", {"pgid": 4242})]
    assert [r["run_id"] for r in runs_repo.unfinished_runs(store)] == ["r1"]
    runs_repo.mark_interrupted(store, "r1", status="interrupted", job_status="cancelled", reason="gone", now=20.0,
                               keep_recovery=True)
    jobs = {j["name"]: j for j in runs_repo.run_jobs(store, "r1")}
    assert {n: j["status"] for n, j in jobs.items()} == {"done": "succeeded", "busy": "cancelled",
                                                          "waiting": "cancelled"}
    assert jobs["done"]["finished_at"] == 12.0 and jobs["busy"]["finished_at"] == 20.0
    attempt = store.query_one("SELECT status, finished_at FROM attempts WHERE run_id = 'r1'")
    assert attempt == {"status": "interrupted", "finished_at": 20.0}
    run = runs_repo.get_run(store, "r1")
    assert run is not None and (run["status"], run["duration"]) == ("interrupted", 9.0)
    assert runs_repo.unfinished_runs(store) == []
    # kept for the runner's own host, which clears it once it has acted on it
    assert runs_repo.orphaned_recovery_records(store, "host-a") == [("r1", "busy", "local", {"pgid": 4242})]
    assert runs_repo.orphaned_recovery_records(store, "host-b") == []
    runs_repo.clear_recovery_record(store, "r1", "busy")
    assert runs_repo.orphaned_recovery_records(store, "host-a") == []


def test_an_owner_on_another_host_is_alive_while_its_lease_lasts(store: Store) -> None:
    _run(store, "r1")
    runs_repo.start_run(store, "r1", pipeline="p", status="running", started_at=11.0,
                        owner=(1, "elsewhere.example", "boot:1"), jobs=[], lease_until=100.0)
    row = runs_repo.get_run(store, "r1")
    assert row is not None
    assert owner_alive(row, now=99.0) is True
    assert owner_alive(row, now=100.5) is False
    store.execute("UPDATE runs SET lease_expires_at = NULL WHERE run_id = 'r1'")
    row = runs_repo.get_run(store, "r1")
    assert row is not None and owner_alive(row, now=1e12) is True  # no lease: cannot be told from here


def test_the_fingerprint_moves_when_a_run_is_added_or_ends(store: Store) -> None:
    first = runs_repo.store_fingerprint(store)
    _run(store, "r1")
    second = runs_repo.store_fingerprint(store)
    runs_repo.finish_run(store, "r1", status="succeeded", finished_at=2.0, duration=1.0, reason=None)
    third = runs_repo.store_fingerprint(store)
    assert len({first, second, third}) == 3


def test_a_run_whose_remote_runner_let_its_lease_expire_reads_as_interrupted(store: Store, tmp_path: Path) -> None:
    from engine.pipeline.manager import PipelineManager

    manager = PipelineManager(tmp_path / "ws", store=store)
    _run(store, "r-remote")
    runs_repo.start_run(store, "r-remote", pipeline="p", status="running", started_at=11.0,
                        owner=(1, "elsewhere.example", "boot:1"), jobs=_jobs("busy"), lease_until=time.time() + 60)
    runs_repo.update_job(store, "r-remote", "busy", status="running", executor="local",
                         recovery_json='{"pgid": 999999}')
    assert manager.get_run("r-remote").status.value == "running"
    store.execute("UPDATE runs SET lease_expires_at = ? WHERE run_id = 'r-remote'", (time.time() - 1,))
    run = manager.get_run("r-remote")
    assert run.status.value == "interrupted" and "elsewhere.example" in (run.reason or "")
    assert run.jobs["busy"].status.value == "cancelled"
    # its process group is the other machine's to kill: the record stays for it
    assert runs_repo.orphaned_recovery_records(store, "elsewhere.example") == [
        ("r-remote", "busy", "local", {"pgid": 999999})]
