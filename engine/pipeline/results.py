"""What a run returns: job and run results (plain data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.pipeline.states import JobStatus, RunStatus

__all__ = ["ArtifactRecord", "JobResult", "PipelineRun"]


@dataclass(frozen=True)
class ArtifactRecord:
    job: str
    path: str          # relative to the job workspace
    stored_path: str   # absolute path in the artifact store
    size: int          # bytes
    sha256: str


@dataclass
class JobResult:
    name: str
    stage: str
    status: JobStatus
    attempts: int = 0
    exit_code: int | None = None
    reason: str | None = None          # why it failed / was skipped (masked)
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None      # seconds
    queue_wait: float | None = None    # seconds
    cpu_seconds: float | None = None   # user + system
    peak_rss_mb: float | None = None
    allow_failure: bool = False
    needs: list[str] = field(default_factory=list)
    log_path: str | None = None
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    deployment: dict[str, Any] | None = None  # a deploy stage's: deployment_id, status, rolled_back, ...

    @property
    def ok(self) -> bool:
        return self.status == JobStatus.SUCCEEDED or (self.status == JobStatus.FAILED and self.allow_failure)


@dataclass
class PipelineRun:
    run_id: str
    pipeline: str
    status: RunStatus
    jobs: dict[str, JobResult]
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None      # seconds
    reason: str | None = None
    variables: dict[str, str] = field(default_factory=dict)   # masked
    context: dict[str, str] = field(default_factory=dict)

    @property
    def failed_jobs(self) -> list[JobResult]:
        return [j for j in self.jobs.values() if j.status in (JobStatus.FAILED, JobStatus.TIMED_OUT)]
