"""Deployment records in the store: deployments, their events and steps, and live releases.

The rollback code reads the same tables: `live_release` (what serves now, verified) and
`verified_releases` (every version that was verified live, newest first).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine._process import current_owner, owner_alive
from engine.deploy.states import DeploymentStatus, check_deployment_move
from engine.deploy.targets.base import Instance
from engine.errors import ConflictError, NotFoundError
from engine.store.base import Row, Store

__all__ = ["DeploymentHistory", "DeploymentRecord", "EnvironmentStore", "ReleaseRecord"]


@dataclass
class DeploymentRecord:
    deployment_id: str
    name: str
    service: str
    environment: str
    version: str
    strategy: str
    status: DeploymentStatus
    created_at: float
    previous_version: str | None = None
    strategy_options: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    rollback_on_failure: bool = True
    reason: str | None = None
    target_kind: str | None = None
    run_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    before: list[Instance] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: Row) -> DeploymentRecord:
        return cls(
            deployment_id=row["deployment_id"],
            name=row["name"],
            service=row["service"],
            environment=row["environment"],
            version=row["version"],
            strategy=row["strategy"],
            status=DeploymentStatus(row["status"]),
            created_at=row["created_at"],
            previous_version=row["previous_version"],
            strategy_options=json.loads(row["strategy_options_json"]),
            artifacts=json.loads(row["artifacts_json"]),
            rollback_on_failure=bool(row["rollback_on_failure"]),
            reason=row["reason"],
            target_kind=row["target_kind"],
            run_id=row["run_id"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            duration=row["duration"],
            before=[Instance.from_json(i) for i in json.loads(row["before_json"])],
            instances=[Instance.from_json(i) for i in json.loads(row["instances_json"])],
        )


@dataclass(frozen=True)
class ReleaseRecord:
    environment: str
    service: str
    version: str
    deployment_id: str
    artifacts: list[str]
    verified_at: float


class DeploymentHistory:
    """Reads and writes the deployment tables of a store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- deployments ----------------------------------------------------------------------------
    def create(self, rec: DeploymentRecord) -> None:
        self.store.execute(
            "INSERT INTO deployments (deployment_id, name, service, environment, version, previous_version,"
            " strategy, strategy_options_json, artifacts_json, rollback_on_failure, status, target_kind,"
            " run_id,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.deployment_id,
                rec.name,
                rec.service,
                rec.environment,
                rec.version,
                rec.previous_version,
                rec.strategy,
                json.dumps(rec.strategy_options, default=str),
                json.dumps(rec.artifacts),
                int(rec.rollback_on_failure),
                str(rec.status),
                rec.target_kind,
                rec.run_id,
                rec.created_at,
            ),
        )

    def get(self, deployment_id: str) -> DeploymentRecord:
        """Raises: NotFoundError: no deployment with that id."""
        row = self.store.query_one("SELECT * FROM deployments WHERE deployment_id = ?", (deployment_id,))
        if row is None:
            raise NotFoundError(f"no deployment {deployment_id!r}")
        return DeploymentRecord.from_row(row)

    def latest_by_name(self, name: str) -> DeploymentRecord | None:
        row = self.store.query_one(
            "SELECT * FROM deployments WHERE name = ? ORDER BY created_at DESC, rowid DESC LIMIT 1", (name,)
        )
        return DeploymentRecord.from_row(row) if row else None

    def recent(self, environment: str | None = None, limit: int = 50) -> list[DeploymentRecord]:
        if environment is None:
            rows = self.store.query("SELECT * FROM deployments ORDER BY created_at DESC LIMIT ?", (limit,))
        else:
            rows = self.store.query(
                "SELECT * FROM deployments WHERE environment = ? ORDER BY created_at DESC LIMIT ?",
                (environment, limit),
            )
        return [DeploymentRecord.from_row(r) for r in rows]

    def begin(self, deployment_id: str, previous_version: str | None, before: Sequence[Instance]) -> None:
        """planned -> in_progress, taking the environment's deployment lock.

        A deployment left in progress by a process that is gone is closed as failed first.

        Raises:
            ConflictError: another deployment is in progress in the environment (named).
        """
        rec = self.get(deployment_id)
        check_deployment_move(rec.name, rec.status, DeploymentStatus.IN_PROGRESS)
        self.clear_stale(rec.environment)
        now = time.time()
        pid, host, identity = current_owner()
        try:
            self.store.execute(
                "UPDATE deployments SET status = ?, started_at = ?, previous_version = ?, before_json = ?,"
                " owner_pid = ?, owner_host = ?, owner_start = ? WHERE deployment_id = ? AND status = ?",
                (
                    str(DeploymentStatus.IN_PROGRESS),
                    now,
                    previous_version,
                    json.dumps([i.to_json() for i in before]),
                    pid,
                    host,
                    identity,
                    deployment_id,
                    str(DeploymentStatus.PLANNED),
                ),
            )
        except ConflictError:
            rollback = self.store.query_one(
                "SELECT execution_id, deployment_id, owner_pid FROM rollback_executions"
                " WHERE environment = ? AND status = 'running'",
                (rec.environment,),
            )
            if rollback is not None:
                raise ConflictError(
                    f"environment {rec.environment!r} is busy: rollback {rollback['execution_id']} (of deployment "
                    f"{rollback['deployment_id']}, pid {rollback['owner_pid']}) is running; wait for it to finish"
                ) from None
            active = self.active(rec.environment)
            who = (
                f"{active.name!r} ({active.deployment_id}, {active.service} {active.version}, {active.status})"
                if active
                else "another deployment"
            )
            raise ConflictError(
                f"environment {rec.environment!r} is busy: deployment {who} is in progress; wait for it to finish"
            ) from None

    def active(self, environment: str) -> DeploymentRecord | None:
        row = self.store.query_one(
            "SELECT * FROM deployments WHERE environment = ? AND status IN ('in_progress', 'rolling_back')",
            (environment,),
        )
        return DeploymentRecord.from_row(row) if row else None

    def recover_interrupted(self) -> list[str]:
        """Close every deployment left in progress or rolling back by a process of this host that is
        gone: in_progress -> failure, rolling_back -> rollback_failed, reason "interrupted: ...".

        A server calls it at start-up, so a deployment whose process died is not reported as running
        (nor holds its environment's lock) until the next deployment there; `begin` still does the
        same for its environment. Returns the deployment ids it closed.
        """
        rows = self.store.query(
            "SELECT deployment_id, status, owner_pid, owner_host, owner_start FROM deployments"
            " WHERE status IN ('in_progress', 'rolling_back')"
        )
        return [row["deployment_id"] for row in rows if self._close_if_orphaned(row)]

    def clear_stale(self, environment: str) -> None:
        """Release the environment's locks held by processes of this host that are gone: a
        deployment left in progress is closed (see `recover_interrupted`), a rollback execution
        left running becomes `failed` (and so resumable), as the rollback journal does."""
        row = self.store.query_one(
            "SELECT deployment_id, status, owner_pid, owner_host, owner_start FROM deployments"
            " WHERE environment = ? AND status IN ('in_progress', 'rolling_back')",
            (environment,),
        )
        if row is not None:
            self._close_if_orphaned(row)
        rollback = self.store.query_one(
            "SELECT execution_id, owner_pid, owner_host, owner_start FROM rollback_executions"
            " WHERE environment = ? AND status = 'running'",
            (environment,),
        )
        if rollback is not None and rollback["owner_host"] == socket.gethostname() and not owner_alive(rollback):
            self.store.execute(
                "UPDATE rollback_executions SET status = 'failed', error = ?"
                " WHERE execution_id = ? AND status = 'running'",
                (f"interrupted: the process {rollback['owner_pid']} running it is gone", rollback["execution_id"]),
            )

    def _close_if_orphaned(self, row: Row) -> bool:
        if row["owner_host"] != socket.gethostname() or row["owner_pid"] is None:
            return False  # another machine's deployment: not ours to judge
        if owner_alive(row):
            return False  # its owner still runs
        new = DeploymentStatus.FAILURE if row["status"] == "in_progress" else DeploymentStatus.ROLLBACK_FAILED
        self.store.execute(
            "UPDATE deployments SET status = ?, reason = ?, finished_at = ? WHERE deployment_id = ? AND status = ?",
            (
                str(new),
                f"interrupted: the deploying process {row['owner_pid']} is gone",
                time.time(),
                row["deployment_id"],
                row["status"],
            ),
        )
        return True

    def move(
        self,
        deployment_id: str,
        new: DeploymentStatus,
        *,
        reason: str | None = None,
        instances: Sequence[Instance] | None = None,
    ) -> DeploymentRecord:
        """Change the status (checked against the state table); the first final state stamps
        finished_at/duration (a later rollback's move keeps the deployment's own).

        Raises:
            InvalidTransition: the move is not allowed from the current status.
        """
        rec = self.get(deployment_id)
        check_deployment_move(rec.name, rec.status, new)
        now = time.time()
        final = not rec.status.finished and new in (
            DeploymentStatus.SUCCESS,
            DeploymentStatus.FAILURE,
            DeploymentStatus.ROLLED_BACK,
            DeploymentStatus.ROLLBACK_FAILED,
        )
        sets = ["status = ?"]
        params: list[Any] = [str(new)]
        if reason is not None:
            sets.append("reason = ?")
            params.append(reason)
        if instances is not None:
            sets.append("instances_json = ?")
            params.append(json.dumps([i.to_json() for i in instances]))
        if final:
            sets += ["finished_at = ?", "duration = ?"]
            params += [now, now - (rec.started_at or now)]
        self.store.execute(
            f"UPDATE deployments SET {', '.join(sets)} WHERE deployment_id = ?", (*params, deployment_id)
        )
        return self.get(deployment_id)

    # -- events and steps -----------------------------------------------------------------------
    def add_event(self, deployment_id: str, kind: str, message: str, data: dict[str, Any]) -> None:
        self.store.execute(
            "INSERT INTO deployment_events (deployment_id, ts, kind, message, data_json) VALUES (?, ?, ?, ?, ?)",
            (deployment_id, time.time(), kind, message, json.dumps(data, default=str)),
        )

    def events(self, deployment_id: str) -> list[dict[str, Any]]:
        rows = self.store.query(
            "SELECT ts, kind, message, data_json FROM deployment_events WHERE deployment_id = ? ORDER BY id",
            (deployment_id,),
        )
        return [
            {"ts": r["ts"], "kind": r["kind"], "message": r["message"], "data": json.loads(r["data_json"])}
            for r in rows
        ]

    def save_plan(self, deployment_id: str, steps: Sequence[tuple[str, str]], start: int = 0) -> None:
        """Record planned steps as seq start, start+1, ... (a restore plan follows the deploy plan)."""
        with self.store.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO deployment_steps (deployment_id, seq, kind, description) VALUES (?, ?, ?, ?)",
                [(deployment_id, start + i, kind, desc) for i, (kind, desc) in enumerate(steps)],
            )

    def replace_plan(self, deployment_id: str, steps: Sequence[tuple[str, str]]) -> None:
        """Record a changed plan in place of the one saved before it ran (no step has run yet)."""
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM deployment_steps WHERE deployment_id = ?", (deployment_id,))
            conn.executemany(
                "INSERT INTO deployment_steps (deployment_id, seq, kind, description) VALUES (?, ?, ?, ?)",
                [(deployment_id, i, kind, desc) for i, (kind, desc) in enumerate(steps)],
            )

    def step(self, deployment_id: str, seq: int, status: str, detail: str | None = None) -> None:
        col = "started_at" if status == "running" else "finished_at"
        self.store.execute(
            f"UPDATE deployment_steps SET status = ?, {col} = ?, detail = COALESCE(?, detail)"
            " WHERE deployment_id = ? AND seq = ?",
            (status, time.time(), detail, deployment_id, seq),
        )

    def steps(self, deployment_id: str) -> list[dict[str, Any]]:
        rows = self.store.query(
            "SELECT seq, kind, description, status, detail FROM deployment_steps WHERE deployment_id = ? ORDER BY seq",
            (deployment_id,),
        )
        return [dict(r) for r in rows]

    # -- releases -------------------------------------------------------------------------------
    def mark_live(
        self,
        environment: str,
        service: str,
        version: str,
        deployment_id: str,
        artifacts: Sequence[str],
        how: str,
    ) -> None:
        """Record `version` as live and verified healthy in the environment."""
        now = time.time()
        arts = json.dumps(list(artifacts))
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO releases"
                " (environment, service, version, deployment_id, artifacts_json, verified_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (environment, service) DO UPDATE SET"
                " version = excluded.version, deployment_id = excluded.deployment_id,"
                " artifacts_json = excluded.artifacts_json, verified_at = excluded.verified_at",
                (environment, service, version, deployment_id, arts, now),
            )
            conn.execute(
                "INSERT INTO release_history"
                " (environment, service, version, deployment_id, artifacts_json, how,"
                " verified_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (environment, service, version, deployment_id, arts, how, now),
            )

    def live_release(self, environment: str, service: str) -> ReleaseRecord | None:
        row = self.store.query_one(
            "SELECT * FROM releases WHERE environment = ? AND service = ?", (environment, service)
        )
        if row is None:
            return None
        return ReleaseRecord(
            row["environment"],
            row["service"],
            row["version"],
            row["deployment_id"],
            json.loads(row["artifacts_json"]),
            row["verified_at"],
        )

    def verified_releases(self, environment: str, service: str, limit: int = 50) -> list[ReleaseRecord]:
        """Versions that were verified live here, newest first (a version may appear more than once)."""
        rows = self.store.query(
            "SELECT * FROM release_history WHERE environment = ? AND service = ? ORDER BY id DESC LIMIT ?",
            (environment, service, limit),
        )
        return [
            ReleaseRecord(
                r["environment"],
                r["service"],
                r["version"],
                r["deployment_id"],
                json.loads(r["artifacts_json"]),
                r["verified_at"],
            )
            for r in rows
        ]


def _env_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec, default=str, sort_keys=True)


class EnvironmentStore:
    """Environments by name in the store (spec as JSON), so any process can deploy to them."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def save(self, name: str, spec: dict[str, Any], source_path: str | None) -> None:
        self.store.execute(
            "INSERT INTO deploy_environments (name, spec_json, source_path, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET spec_json = excluded.spec_json,"
            " source_path = excluded.source_path, updated_at = excluded.updated_at",
            (name, _env_json(spec), source_path, time.time()),
        )

    def load(self, name: str) -> dict[str, Any] | None:
        row = self.store.query_one("SELECT spec_json FROM deploy_environments WHERE name = ?", (name,))
        return json.loads(row["spec_json"]) if row else None

    def names(self) -> list[str]:
        return [r["name"] for r in self.store.query("SELECT name FROM deploy_environments ORDER BY name")]
