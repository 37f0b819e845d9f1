"""The deployments and rollbacks repositories: newest-first reads keep insertion order on a tied
timestamp (an explicit column, not SQLite's rowid), and the environment lock refuses as a conflict.
Each test runs against SQLite and PostgreSQL (the `store` fixture)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.errors import ConflictError
from engine.store import SQLiteStore, Store
from engine.store import deployments as deployments_repo
from engine.store import rollbacks as rollbacks_repo

OWNER = (1, "host", None)


def _deployment(store: Store, deployment_id: str, *, name: str = "web", env: str = "prod",
                created_at: float = 100.0) -> None:
    deployments_repo.create(store, {
        "deployment_id": deployment_id, "name": name, "service": "svc", "environment": env, "version": "1",
        "strategy": "rolling", "status": "planned", "created_at": created_at,
    })


def test_the_latest_of_a_name_is_the_last_inserted_when_timestamps_tie(store: Store) -> None:
    for deployment_id in ("d-b", "d-c", "d-a"):
        _deployment(store, deployment_id)
    latest = deployments_repo.latest_by_name(store, "web")
    assert latest is not None and latest["deployment_id"] == "d-a"


def test_plans_and_executions_are_read_newest_first_with_ties_in_insertion_order(store: Store) -> None:
    _deployment(store, "d-1")
    for plan_id in ("p-z", "p-a"):
        rollbacks_repo.save_plan(store, {
            "plan_id": plan_id, "deployment_id": "d-1", "environment": "prod", "service": "svc",
            "strategy": "rolling", "from_version": "2", "to_version": "1", "reason": "", "executable": 1,
            "estimated_duration": 1.0, "estimate_basis": "", "created_at": 5.0, "plan_json": plan_id,
        })
    assert rollbacks_repo.plans_json(store, "d-1") == ["p-a", "p-z"]
    for n, execution_id in enumerate(("rx-z", "rx-a")):
        rollbacks_repo.new_execution(
            store, execution_id=execution_id, plan_id="p-a", deployment_id="d-1", environment=f"env-{n}",
            status="completed", started_at=7.0, owner=OWNER, steps=[("stop", "stop_instances")])
    latest = rollbacks_repo.latest_execution(store, "p-a")
    assert latest is not None and latest["execution_id"] == "rx-a"


def test_the_environment_lock_refuses_a_second_holder_as_a_conflict(store: Store) -> None:
    _deployment(store, "d-1")
    _deployment(store, "d-2")
    moved = deployments_repo.begin(store, "d-1", previous_version=None, before_json="[]", owner=OWNER,
                                   started_at=1.0, from_status="planned", to_status="in_progress")
    assert moved == 1
    with pytest.raises(ConflictError, match="deployments.environment"):
        deployments_repo.begin(store, "d-2", previous_version=None, before_json="[]", owner=OWNER,
                               started_at=1.0, from_status="planned", to_status="in_progress")
    rollbacks_repo.save_plan(store, {
        "plan_id": "p-1", "deployment_id": "d-1", "environment": "prod", "service": "svc", "strategy": "rolling",
        "from_version": "2", "to_version": "1", "executable": 1, "estimated_duration": 1.0, "estimate_basis": "",
        "created_at": 5.0, "plan_json": "{}",
    })
    with pytest.raises(ConflictError, match="a deployment is in progress"):
        rollbacks_repo.new_execution(store, execution_id="rx-1", plan_id="p-1", deployment_id="d-1",
                                     environment="prod", status="running", started_at=2.0, owner=OWNER,
                                     steps=[("stop", "stop_instances")])
    assert rollbacks_repo.execution(store, "rx-1") is None  # its steps went with it
    assert rollbacks_repo.steps(store, "rx-1") == []


def test_rows_from_before_the_insert_order_column_keep_their_order(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.executescript((Path(__file__).parent / "data" / "store_before_dialects.sql").read_text())
    conn.executemany(
        "INSERT INTO deployments (deployment_id, name, service, environment, version, strategy, status, created_at)"
        " VALUES (?, 'web', 'svc', 'prod', '1', 'rolling', 'success', 1.0)", [("d-z",), ("d-a",)])
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    latest = deployments_repo.latest_by_name(store, "web")
    assert latest is not None and latest["deployment_id"] == "d-a"
    _deployment(store, "d-m", created_at=1.0)
    latest = deployments_repo.latest_by_name(store, "web")
    assert latest is not None and latest["deployment_id"] == "d-m"


def test_a_deployment_moves_in_progress_only_from_the_status_it_was_read_in(store: Store) -> None:
    _deployment(store, "d-1")
    args = {"previous_version": "0", "before_json": "[]", "owner": OWNER, "started_at": 1.0}
    assert deployments_repo.begin(store, "d-1", from_status="failure", to_status="in_progress", **args) == 0
    assert deployments_repo.begin(store, "d-1", from_status="planned", to_status="in_progress", **args) == 1
    active = deployments_repo.active(store, "prod")
    assert active is not None and active["previous_version"] == "0"
    assert [r["deployment_id"] for r in deployments_repo.active_deployments(store)] == ["d-1"]
    assert deployments_repo.active_deployments(store, "staging") == []
    deployments_repo.update(store, "d-1", {"status": "failure", "reason": "health check failed"})
    with pytest.raises(ValueError, match="cannot be updated"):
        deployments_repo.update(store, "d-1", {"environment": "x"})
    assert deployments_repo.close_orphan(store, "d-1", from_status="in_progress", to_status="failure", reason="x",
                                         finished_at=2.0) == 0
    # the environment is free again: another deployment takes it
    _deployment(store, "d-2")
    assert deployments_repo.begin(store, "d-2", from_status="planned", to_status="in_progress", **args) == 1
    assert deployments_repo.close_orphan(store, "d-2", from_status="in_progress", to_status="failure",
                                         reason="its process is gone", finished_at=3.0) == 1
    assert {r["deployment_id"] for r in deployments_repo.recent(store, "prod", 5)} == {"d-1", "d-2"}
    assert deployments_repo.recent(store, "staging", 5) == []


def test_events_steps_releases_and_environments_read_back_in_order(store: Store) -> None:
    _deployment(store, "d-1")
    for n, kind in enumerate(["batch_started", "health_ok", "traffic"]):
        deployments_repo.add_event(store, "d-1", 1.0, kind, f"m{n}", "{}")
    assert [e["kind"] for e in deployments_repo.events(store, "d-1")] == ["batch_started", "health_ok", "traffic"]
    deployments_repo.save_steps(store, "d-1", [(1, "start", "start v2"), (0, "stop", "stop v1")])
    deployments_repo.set_step(store, "d-1", 0, "running", 5.0, None)
    deployments_repo.set_step(store, "d-1", 0, "done", 6.0, "stopped 2")
    deployments_repo.save_steps(store, "d-1", [(1, "start", "start v2 again")])
    steps = deployments_repo.steps(store, "d-1")
    assert [(s["seq"], s["status"], s["description"], s["detail"]) for s in steps] == \
        [(0, "done", "stop v1", "stopped 2"), (1, "pending", "start v2 again", None)]
    deployments_repo.replace_steps(store, "d-1", [(0, "verify", "check")])
    assert [s["kind"] for s in deployments_repo.steps(store, "d-1")] == ["verify"]
    deployments_repo.mark_live(store, "prod", "svc", "1", "d-1", "[]", "deployed", 10.0)
    deployments_repo.mark_live(store, "prod", "svc", "2", "d-1", "[]", "deployed", 11.0)
    live = deployments_repo.live_release(store, "prod", "svc")
    assert live is not None and live["version"] == "2"
    assert [r["version"] for r in deployments_repo.verified_releases(store, "prod", "svc", 5)] == ["2", "1"]
    deployments_repo.save_environment(store, "prod", '{"a": 1}', None, 1.0)
    deployments_repo.save_environment(store, "dev", '{"b": 1}', "envs.yaml", 1.0)
    deployments_repo.save_environment(store, "prod", '{"a": 2}', None, 2.0)
    assert deployments_repo.environment_names(store) == ["dev", "prod"]
    assert deployments_repo.environment_spec(store, "prod") == '{"a": 2}'
    assert deployments_repo.environment_spec(store, "none") is None


def test_a_running_rollback_holds_the_environment_against_a_deployment(store: Store) -> None:
    _deployment(store, "d-1")
    rollbacks_repo.save_plan(store, {
        "plan_id": "p-1", "deployment_id": "d-1", "environment": "prod", "service": "svc", "strategy": "rolling",
        "from_version": "2", "to_version": "1", "executable": 1, "estimated_duration": 1.0, "estimate_basis": "",
        "created_at": 5.0, "plan_json": "{}",
    })
    rollbacks_repo.new_execution(store, execution_id="rx-1", plan_id="p-1", deployment_id="d-1",
                                 environment="prod", status="running", started_at=2.0, owner=OWNER,
                                 steps=[("stop", "stop_instances"), ("start", "start_release")])
    running = deployments_repo.running_execution(store, "prod")
    assert running is not None and running["execution_id"] == "rx-1"
    _deployment(store, "d-2")
    with pytest.raises(ConflictError, match="a rollback is running"):
        deployments_repo.begin(store, "d-2", previous_version=None, before_json="[]", owner=OWNER,
                               started_at=3.0, from_status="planned", to_status="in_progress")
    rollbacks_repo.step_started(store, "rx-1", 0, 1, 3.0)
    rollbacks_repo.step_finished(store, "rx-1", 0, status="done", finished_at=4.5, duration=1.5, detail="ok",
                                 result_json='{"stopped": 1}')
    assert [(s["seq"], s["status"], s["attempts"]) for s in rollbacks_repo.steps(store, "rx-1")] == \
        [(0, "done", 1), (1, "pending", 0)]
    assert rollbacks_repo.step_durations(store, "prod") == [{"action": "stop_instances", "duration": 1.5}]
    assert deployments_repo.fail_execution(store, "rx-1", from_status="running", to_status="failed",
                                           error="process gone") == 1
    assert deployments_repo.running_execution(store, "prod") is None
    # resumed: a new run of the same execution takes the lock again
    assert rollbacks_repo.claim_execution(store, "rx-1", from_status="failed", to_status="running",
                                          started_at=6.0, owner=OWNER) == 1
    execution = rollbacks_repo.execution(store, "rx-1")
    assert execution is not None and (execution["runs"], execution["error"]) == (2, None)
    assert rollbacks_repo.finish_execution(store, "rx-1", from_status="running", to_status="completed",
                                           finished_at=7.0, duration=1.0, failed_step=None, error=None) == 1
    assert rollbacks_repo.plan_json(store, "p-1") == "{}" and rollbacks_repo.plan_json(store, "p-9") is None
