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
