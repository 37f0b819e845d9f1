"""Job and run state machines: one table each; an illegal move raises InvalidTransition."""

from __future__ import annotations

from enum import StrEnum

from engine.errors import InvalidTransition

__all__ = ["JOB_TRANSITIONS", "RUN_TRANSITIONS", "JobStatus", "RunStatus", "check_job_move", "check_run_move"]


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self in _JOB_FINAL


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"          # every job was skipped: nothing ran, which is not a success

    @property
    def finished(self) -> bool:
        return self in _RUN_FINAL


_JOB_FINAL = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED, JobStatus.SKIPPED}
)
_RUN_FINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED,
                        RunStatus.SKIPPED})

JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.SKIPPED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED, JobStatus.RETRYING}
    ),
    JobStatus.RETRYING: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.TIMED_OUT}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.TIMED_OUT: frozenset(),
    JobStatus.CANCELLED: frozenset(),
    JobStatus.SKIPPED: frozenset(),
}

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.INTERRUPTED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED, RunStatus.SKIPPED}
    ),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.SKIPPED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
    RunStatus.INTERRUPTED: frozenset(),
}


def check_job_move(job: str, old: JobStatus, new: JobStatus) -> JobStatus:
    if new not in JOB_TRANSITIONS[old]:
        raise InvalidTransition(f"job {job!r}: {old} -> {new} is not allowed")
    return new


def check_run_move(run_id: str, old: RunStatus, new: RunStatus) -> RunStatus:
    if new not in RUN_TRANSITIONS[old]:
        raise InvalidTransition(f"run {run_id}: {old} -> {new} is not allowed")
    return new
