"""The state machines of the environment lock's two holders, deployments and rollback
executions: one table each; an illegal move raises InvalidTransition.

Deployments:

    planned -> in_progress -> success
                           -> failure -> rolling_back -> rolled_back
                                                      -> rollback_failed
    success | failure | rollback_failed -> rolled_back   (a RollbackManager execution completed)

`failure` is final when there is nothing to roll back to (or rollback is off). A deployment
refused before it changed anything (a failing pre-deploy hook) goes planned -> in_progress ->
failure too: its reason says nothing was changed.

Rollback executions (a `RollbackManager` running a plan; recorded `running` when it starts):

    running -> completed
            -> failed -> running   (resumed: the journal says which steps are done)

Both live here because both hold the environment lock, and `deploy` releases a lock a dead
rollback left (running -> failed) without importing `rollback`.
"""

from __future__ import annotations

from enum import StrEnum

from engine.errors import InvalidTransition

__all__ = [
    "DEPLOYMENT_TRANSITIONS",
    "EXECUTION_TRANSITIONS",
    "DeploymentStatus",
    "ExecutionStatus",
    "check_deployment_move",
    "check_execution_move",
]


class DeploymentStatus(StrEnum):
    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    SUCCESS = "success"
    FAILURE = "failure"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"

    @property
    def active(self) -> bool:
        """The deployment still holds its environment (it is changing the world)."""
        return self in (DeploymentStatus.IN_PROGRESS, DeploymentStatus.ROLLING_BACK)

    @property
    def finished(self) -> bool:
        """The deployment's own run is over (a later rollback may still move it to rolled_back)."""
        return self not in (DeploymentStatus.PLANNED, DeploymentStatus.IN_PROGRESS, DeploymentStatus.ROLLING_BACK)


DEPLOYMENT_TRANSITIONS: dict[DeploymentStatus, frozenset[DeploymentStatus]] = {
    DeploymentStatus.PLANNED: frozenset({DeploymentStatus.IN_PROGRESS}),
    DeploymentStatus.IN_PROGRESS: frozenset({DeploymentStatus.SUCCESS, DeploymentStatus.FAILURE}),
    DeploymentStatus.FAILURE: frozenset({DeploymentStatus.ROLLING_BACK, DeploymentStatus.ROLLED_BACK}),
    DeploymentStatus.ROLLING_BACK: frozenset({DeploymentStatus.ROLLED_BACK, DeploymentStatus.ROLLBACK_FAILED}),
    DeploymentStatus.SUCCESS: frozenset({DeploymentStatus.ROLLED_BACK}),
    DeploymentStatus.ROLLED_BACK: frozenset(),
    DeploymentStatus.ROLLBACK_FAILED: frozenset({DeploymentStatus.ROLLED_BACK}),
}


def check_deployment_move(deployment: str, old: DeploymentStatus, new: DeploymentStatus) -> DeploymentStatus:
    """Return `new` if the table allows old -> new.

    Raises:
        InvalidTransition: the move is not in the table.
    """
    if new not in DEPLOYMENT_TRANSITIONS[old]:
        raise InvalidTransition(f"deployment {deployment!r}: {old} -> {new} is not allowed")
    return new


class ExecutionStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


EXECUTION_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.RUNNING: frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED}),
    ExecutionStatus.FAILED: frozenset({ExecutionStatus.RUNNING}),
    ExecutionStatus.COMPLETED: frozenset(),
}


def check_execution_move(execution: str, old: ExecutionStatus, new: ExecutionStatus) -> ExecutionStatus:
    """Return `new` if the table allows old -> new.

    Raises:
        InvalidTransition: the move is not in the table.
    """
    if new not in EXECUTION_TRANSITIONS[old]:
        raise InvalidTransition(f"rollback execution {execution!r}: {old} -> {new} is not allowed")
    return new
