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
from engine.pipeline.executors.docker import DockerExecutor
from engine.pipeline.executors.local import LocalExecutor
from engine.pipeline.executors.sandbox import SandboxExecutor

__all__ = [
    "EXECUTORS",
    "CommandResult",
    "DockerExecutor",
    "Executor",
    "FakeExecutor",
    "FakeOutcome",
    "JobCommand",
    "LocalExecutor",
    "RecoveryRecord",
    "SandboxExecutor",
    "make_executor",
]

if TYPE_CHECKING:  # both implement the protocol (checked by mypy)
    _local: Executor = LocalExecutor()
    _sandbox: Executor = SandboxExecutor()
    _docker: Executor = DockerExecutor()
    _fake: Executor = FakeExecutor()
