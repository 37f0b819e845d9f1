"""Deployment records: deployments, their events and steps, and live releases, read and
written through the deployments repository (`engine.store.deployments`, where the SQL is).

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
from engine.deploy.states import (
    DeploymentStatus,
    ExecutionStatus,
    check_deployment_move,
    check_execution_move,
)
from engine.deploy.targets.base import Instance
from engine.errors import ConflictError, NotFoundError
from engine.store import deployments as repo
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
        repo.create(
            self.store,
            {
                "deployment_id": rec.deployment_id,
                "name": rec.name,
                "service": rec.service,
                "environment": rec.environment,
                "version": rec.version,
                "previous_version": rec.previous_version,
                "strategy": rec.strategy,
                "strategy_options_json": json.dumps(rec.strategy_options, default=str),
                "artifacts_json": json.dumps(rec.artifacts),
                "rollback_on_failure": int(rec.rollback_on_failure),
                "status": str(rec.status),
                "target_kind": rec.target_kind,
                "run_id": rec.run_id,
                "created_at": rec.created_at,
            },
        )

    def get(self, deployment_id: str) -> DeploymentRecord:
        """Raises: NotFoundError: no deployment with that id."""
        row = repo.get(self.store, deployment_id)
        if row is None:
            raise NotFoundError(f"no deployment {deployment_id!r}")
        return DeploymentRecord.from_row(row)

    def latest_by_name(self, name: str) -> DeploymentRecord | None:
        row = repo.latest_by_name(self.store, name)
        return DeploymentRecord.from_row(row) if row else None

    def recent(self, environment: str | None = None, limit: int = 50) -> list[DeploymentRecord]:
        return [DeploymentRecord.from_row(r) for r in repo.recent(self.store, environment, limit)]

    def begin(self, deployment_id: str, previous_version: str | None, before: Sequence[Instance]) -> None:
        """planned -> in_progress, taking the environment's deployment lock.

        A deployment left in progress by a process that is gone is closed as failed first.

        Raises:
            ConflictError: another deployment is in progress in the environment (named).
        """
        rec = self.get(deployment_id)
        check_deployment_move(rec.name, rec.status, DeploymentStatus.IN_PROGRESS)
        self.clear_stale(rec.environment)
        try:
            repo.begin(
                self.store,
                deployment_id,
                previous_version=previous_version,
                before_json=json.dumps([i.to_json() for i in before]),
                owner=current_owner(),
                started_at=time.time(),
                from_status=str(DeploymentStatus.PLANNED),
                to_status=str(DeploymentStatus.IN_PROGRESS),
            )
        except ConflictError:
            rollback = repo.running_execution(self.store, rec.environment)
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
        row = repo.active(self.store, environment)
        return DeploymentRecord.from_row(row) if row else None

    def recover_interrupted(self) -> list[str]:
        """Close every deployment left in progress or rolling back by a process of this host that is
        gone: in_progress -> failure, rolling_back -> rollback_failed, reason "interrupted: ...".

        A server calls it at start-up, so a deployment whose process died is not reported as running
        (nor holds its environment's lock) until the next deployment there; `begin` still does the
        same for its environment. Returns the deployment ids it closed.
        """
        return [row["deployment_id"] for row in repo.active_deployments(self.store) if self._close_if_orphaned(row)]

    def clear_stale(self, environment: str) -> None:
        """Release the environment's locks held by processes of this host that are gone: a
        deployment left in progress is closed (see `recover_interrupted`), a rollback execution
        left running becomes `failed` (and so resumable), as the rollback journal does."""
        for row in repo.active_deployments(self.store, environment):
            self._close_if_orphaned(row)
        rollback = repo.running_execution(self.store, environment)
        if rollback is not None and rollback["owner_host"] == socket.gethostname() and not owner_alive(rollback):
            repo.fail_execution(
                self.store,
                rollback["execution_id"],
                from_status=str(ExecutionStatus.RUNNING),
                to_status=str(check_execution_move(rollback["execution_id"], ExecutionStatus.RUNNING,
                                                   ExecutionStatus.FAILED)),
                error=f"interrupted: the process {rollback['owner_pid']} running it is gone",
            )

    def _close_if_orphaned(self, row: Row) -> bool:
        if row["owner_host"] != socket.gethostname() or row["owner_pid"] is None:
            return False  # another machine's deployment: not ours to judge
        if owner_alive(row):
            return False  # its owner still runs
        old = DeploymentStatus(row["status"])
        new = DeploymentStatus.FAILURE if old == DeploymentStatus.IN_PROGRESS else DeploymentStatus.ROLLBACK_FAILED
        repo.close_orphan(
            self.store,
            row["deployment_id"],
            from_status=str(old),
            to_status=str(check_deployment_move(row["deployment_id"], old, new)),
            reason=f"interrupted: the deploying process {row['owner_pid']} is gone",
            finished_at=time.time(),
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
        fields: dict[str, Any] = {"status": str(new)}
        if reason is not None:
            fields["reason"] = reason
        if instances is not None:
            fields["instances_json"] = json.dumps([i.to_json() for i in instances])
        if final:
            fields["finished_at"] = now
            fields["duration"] = now - (rec.started_at or now)
        repo.update(self.store, deployment_id, fields)
        return self.get(deployment_id)

    def set_outcome(self, deployment_id: str, reason: str | None, instances: Sequence[Instance]) -> None:
        """Record why a deployment ended as it did and what runs, without moving its status."""
        repo.update(self.store, deployment_id, {
            "reason": reason, "instances_json": json.dumps([i.to_json() for i in instances])})

    # -- events and steps -----------------------------------------------------------------------
    def add_event(self, deployment_id: str, kind: str, message: str, data: dict[str, Any]) -> None:
        repo.add_event(self.store, deployment_id, time.time(), kind, message, json.dumps(data, default=str))

    def events(self, deployment_id: str) -> list[dict[str, Any]]:
        return [
            {"ts": r["ts"], "kind": r["kind"], "message": r["message"], "data": json.loads(r["data_json"])}
            for r in repo.events(self.store, deployment_id)
        ]

    def save_plan(self, deployment_id: str, steps: Sequence[tuple[str, str]], start: int = 0) -> None:
        """Record planned steps as seq start, start+1, ... (a restore plan follows the deploy plan)."""
        repo.save_steps(self.store, deployment_id, [(start + i, kind, desc) for i, (kind, desc) in enumerate(steps)])

    def replace_plan(self, deployment_id: str, steps: Sequence[tuple[str, str]]) -> None:
        """Record a changed plan in place of the one saved before it ran (no step has run yet)."""
        repo.replace_steps(self.store, deployment_id, [(i, kind, desc) for i, (kind, desc) in enumerate(steps)])

    def step(self, deployment_id: str, seq: int, status: str, detail: str | None = None) -> None:
        repo.set_step(self.store, deployment_id, seq, status, time.time(), detail)

    def steps(self, deployment_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in repo.steps(self.store, deployment_id)]

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
        repo.mark_live(
            self.store, environment, service, version, deployment_id, json.dumps(list(artifacts)), how, time.time()
        )

    def live_release(self, environment: str, service: str) -> ReleaseRecord | None:
        row = repo.live_release(self.store, environment, service)
        return None if row is None else _release(row)

    def verified_releases(self, environment: str, service: str, limit: int = 50) -> list[ReleaseRecord]:
        """Versions that were verified live here, newest first (a version may appear more than once)."""
        return [_release(r) for r in repo.verified_releases(self.store, environment, service, limit)]


def _release(row: Row) -> ReleaseRecord:
    return ReleaseRecord(
        row["environment"],
        row["service"],
        row["version"],
        row["deployment_id"],
        json.loads(row["artifacts_json"]),
        row["verified_at"],
    )


def _env_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec, default=str, sort_keys=True)


class EnvironmentStore:
    """Environments by name in the store (spec as JSON), so any process can deploy to them."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def save(self, name: str, spec: dict[str, Any], source_path: str | None) -> None:
        repo.save_environment(self.store, name, _env_json(spec), source_path, time.time())

    def load(self, name: str) -> dict[str, Any] | None:
        spec = repo.environment_spec(self.store, name)
        return None if spec is None else dict(json.loads(spec))

    def names(self) -> list[str]:
        return repo.environment_names(self.store)
