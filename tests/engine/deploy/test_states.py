"""The deployment and rollback execution state tables: the allowed moves are exactly the documented ones."""

from __future__ import annotations

import itertools

import pytest

from engine.deploy.states import (
    DEPLOYMENT_TRANSITIONS,
    EXECUTION_TRANSITIONS,
    DeploymentStatus,
    ExecutionStatus,
    check_deployment_move,
    check_execution_move,
)
from engine.errors import InvalidTransition

S = DeploymentStatus
ALLOWED = {
    (S.PLANNED, S.IN_PROGRESS),
    (S.IN_PROGRESS, S.SUCCESS),
    (S.IN_PROGRESS, S.FAILURE),
    (S.FAILURE, S.ROLLING_BACK),
    (S.ROLLING_BACK, S.ROLLED_BACK),
    (S.ROLLING_BACK, S.ROLLBACK_FAILED),
    # a RollbackManager execution that completed, after the deployment's own run
    (S.SUCCESS, S.ROLLED_BACK),
    (S.FAILURE, S.ROLLED_BACK),
    (S.ROLLBACK_FAILED, S.ROLLED_BACK),
}


@pytest.mark.parametrize(("old", "new"), list(itertools.product(S, S)))
def test_only_the_documented_moves_are_allowed(old: DeploymentStatus, new: DeploymentStatus) -> None:
    if (old, new) in ALLOWED:
        assert check_deployment_move("web", old, new) is new
    else:
        with pytest.raises(InvalidTransition, match=f"'web': {old} -> {new}"):
            check_deployment_move("web", old, new)


def test_every_status_has_a_row_and_final_states_are_finished() -> None:
    assert set(DEPLOYMENT_TRANSITIONS) == set(S)
    assert {s for s in S if s.finished} == {S.SUCCESS, S.FAILURE, S.ROLLED_BACK, S.ROLLBACK_FAILED}
    assert {s for s in S if s.active} == {S.IN_PROGRESS, S.ROLLING_BACK}


X = ExecutionStatus
EXECUTION_ALLOWED = {
    (X.RUNNING, X.COMPLETED),
    (X.RUNNING, X.FAILED),
    (X.FAILED, X.RUNNING),  # resumed
}


@pytest.mark.parametrize(("old", "new"), list(itertools.product(X, X)))
def test_only_the_documented_execution_moves_are_allowed(old: ExecutionStatus, new: ExecutionStatus) -> None:
    if (old, new) in EXECUTION_ALLOWED:
        assert check_execution_move("rx-1", old, new) is new
    else:
        with pytest.raises(InvalidTransition, match=f"'rx-1': {old} -> {new}"):
            check_execution_move("rx-1", old, new)


def test_every_execution_status_has_a_row() -> None:
    assert set(EXECUTION_TRANSITIONS) == set(X)
    assert {str(x) for x in X} == {"running", "completed", "failed"}  # as stored
