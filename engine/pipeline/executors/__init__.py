"""Where a job's commands run: the Executor seam, its registry (`runs_on:` picks a kind) and a fake."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.pipeline.executors.base import (
    EXECUTORS,
    CommandResult,
    Executor,
    FakeExecutor,
    FakeOutcome,
    JobCommand,
    RecoveryRecord,
    make_executor,
)
from engine.pipeline.executors.local import LocalExecutor

__all__ = [
    "EXECUTORS",
    "CommandResult",
    "Executor",
    "FakeExecutor",
    "FakeOutcome",
    "JobCommand",
    "LocalExecutor",
    "RecoveryRecord",
    "make_executor",
]

if TYPE_CHECKING:  # both implement the protocol (checked by mypy)
    _local: Executor = LocalExecutor()
    _fake: Executor = FakeExecutor()
