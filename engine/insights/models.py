"""What insights return: pydantic models, every measured figure with its unit.

A `Quantity` is a value and its unit ("s", "MB", "count", "s/run", "s/day"); seconds and
megabytes live in separate fields and are never added together. Ratios (success rate,
a job's share of the critical path) are plain floats in [0, 1] and say so.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CriticalPath",
    "CriticalPathJob",
    "CriticalPathShare",
    "CurrentPerformance",
    "DataStatus",
    "Effort",
    "ExpectedOutcome",
    "FlakyJob",
    "HealthReport",
    "HealthStatus",
    "JobReport",
    "LastRun",
    "MetricStats",
    "OptimizationPlan",
    "PerformanceAnalysis",
    "PipelineHealth",
    "PipelineReports",
    "Quantity",
    "QueueWait",
    "RetryCost",
    "RunReport",
    "SerialChain",
    "StageReport",
    "Stats",
    "Suggestion",
    "Trend",
    "Bottlenecks",
]

DataStatus = Literal["ok", "unknown_pipeline", "no_runs_in_window"]
HealthStatus = Literal["healthy", "degraded", "failing", "unknown"]
Effort = Literal["low", "medium", "high"]


class _Model(BaseModel):
    """Fields read as attributes or, as the original design's dictionaries were, by key
    (`analysis["duration_stats"]`)."""

    model_config = ConfigDict(frozen=True)

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return list(type(self).model_fields)


@functools.total_ordering
class Quantity(_Model):
    """A value and its unit. It compares with, converts to and formats as its number
    (`plan["current_performance"]["average_duration"] == 245.3`, `f"{q:.1f}"`, `float(q)`);
    `str(q)` names the unit ("245 s"). Two quantities are equal only in the same unit."""

    value: float
    unit: str = Field(description='Unit of value: "s", "MB", "count", "s/run", "s/day", "bytes".')

    def __str__(self) -> str:
        return f"{self.value:.3g} {self.unit}"

    def __float__(self) -> float:
        return float(self.value)

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, int | float) and not isinstance(other, bool):
            return self.value == other
        if isinstance(other, Quantity):
            return (self.value, self.unit) == (other.value, other.unit)
        return NotImplemented

    def __lt__(self, other: object) -> bool:
        if isinstance(other, int | float) and not isinstance(other, bool):
            return self.value < other
        if isinstance(other, Quantity) and other.unit == self.unit:
            return self.value < other.value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.value)


def seconds(value: float) -> Quantity:
    return Quantity(value=round(value, 6), unit="s")


class Stats(_Model):
    unit: str
    count: int
    mean: float
    median: float
    p95: float = Field(description="Nearest-rank 95th percentile.")
    min: float
    max: float
    stddev: float | None = Field(description="Sample standard deviation; None below two samples.")


class MetricStats(_Model):
    pipeline: Stats | None = Field(
        description="Per run: duration of succeeded runs, CPU summed over a run's "
        "jobs, or the largest job peak memory of a run."
    )
    jobs: dict[str, Stats] = Field(default_factory=dict, description="Per job, over the jobs that started.")


class Trend(_Model):
    metric: str = "run.duration"
    unit: str = "s"
    samples: int
    slope_per_run: Quantity | None
    slope_per_day: Quantity | None
    verdict: Literal["increasing", "decreasing", "stable", "insufficient_data"]
    reason: str


class CriticalPathJob(_Model):
    job: str
    duration: Quantity
    share: float = Field(description="Fraction of the critical path's length, 0..1.")


class CriticalPath(_Model):
    run_id: str
    length: Quantity
    run_duration: Quantity | None
    jobs: list[CriticalPathJob]


class CriticalPathShare(_Model):
    job: str
    runs_on_path: int
    runs_analysed: int
    mean_share: float = Field(
        description="Mean fraction of the path's length in the runs where it was on it."
    )


class QueueWait(_Model):
    job: str
    runs: int
    mean: Quantity
    total: Quantity


class SerialChain(_Model):
    run_id: str
    jobs: list[str]
    length: Quantity


class FlakyJob(_Model):
    job: str
    runs: int
    passed_on_retry: int
    rate: float = Field(description="passed_on_retry / runs, 0..1.")


class RetryCost(_Model):
    job: str
    retried_runs: int
    time_lost: Quantity


class Bottlenecks(_Model):
    critical_path: CriticalPath | None = Field(description="Of the newest analysed run.")
    critical_path_jobs: list[CriticalPathShare] = Field(description="How often each job was on the path.")
    queueing: list[QueueWait] = Field(description="Jobs that waited for a free worker.")
    serial_chains: list[SerialChain] = Field(description="Dependency chains of three jobs or more.")
    flaky_jobs: list[FlakyJob]
    retries: list[RetryCost]
    retry_time_lost: Quantity


class Suggestion(_Model):
    kind: Literal["remove_dependency", "raise_workers", "split_job", "cache_job", "fix_flaky_job"]
    title: str
    detail: str
    jobs: list[str]
    estimated_saving: Quantity = Field(
        description="Mean seconds saved per run, from replaying recorded runs."
    )
    estimated_duration: Quantity = Field(description="Mean run duration with this change alone.")
    effort: Effort
    runs_replayed: int


class PerformanceAnalysis(_Model):
    pipeline: str
    status: DataStatus
    message: str
    window_days: float
    window_start: float = Field(description="Unix time the window starts at.")
    runs: dict[str, int] = Field(default_factory=dict, description="Runs in the window by status.")
    duration_stats: MetricStats | None = None
    cpu_stats: MetricStats | None = None
    memory_stats: MetricStats | None = None
    trends: Trend | None = None
    bottlenecks: Bottlenecks | None = None
    suggestions: list[Suggestion] = Field(default_factory=list)
    report_uri: str = Field(description="The visual report of this pipeline (MCP resource).")


class CurrentPerformance(_Model):
    runs: int
    average_duration: Quantity | None
    target_duration: Quantity | None


class ExpectedOutcome(_Model):
    reaches_target: bool | None
    estimated_duration: Quantity | None = Field(description="With every suggestion applied together.")
    estimated_saving: Quantity | None
    improvement: float | None = Field(description="estimated_saving / average_duration, 0..1.")
    message: str


class OptimizationPlan(_Model):
    pipeline: str
    status: DataStatus
    message: str
    target_improvement: float
    current_performance: CurrentPerformance
    suggestions: list[Suggestion]
    expected_outcome: ExpectedOutcome


class LastRun(_Model):
    run_id: str
    status: str
    created_at: float
    finished_at: float | None
    duration: Quantity | None


class PipelineHealth(_Model):
    pipeline: str
    status: HealthStatus
    reasons: list[str]
    window_days: float
    runs: int = Field(description="Finished runs in the window.")
    succeeded: int
    failed: int = Field(description="Failed or interrupted.")
    cancelled: int
    success_rate: float | None = Field(
        description="succeeded / (succeeded + failed), 0..1; None without runs."
    )
    last_run: LastRun | None
    failure_streak: int = Field(description="Failed runs since the last success (newest first).")
    mean_time_to_recovery: Quantity | None = Field(
        description="Mean time from the first failure of a streak to the next success."
    )
    recoveries: int
    flaky_jobs: list[FlakyJob]
    duration_trend: Trend | None


class HealthReport(_Model):
    generated_at: float
    pipelines: list[PipelineHealth]


class JobReport(_Model):
    name: str
    stage: str
    status: str
    attempts: int
    needs: list[str]
    duration: Quantity | None
    queue_wait: Quantity | None
    cpu: Quantity | None
    peak_memory: Quantity | None
    exit_code: int | None
    reason: str | None
    artifacts: list[str]


class StageReport(_Model):
    name: str
    jobs: int
    passed: int
    failed: int
    skipped: int
    cancelled: int
    duration: Quantity | None = Field(description="First job start to last job finish in the stage.")


class RunReport(_Model):
    run_id: str
    pipeline: str
    status: str
    reason: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    duration: Quantity | None
    jobs_executed: int
    passed: int
    failed: int
    skipped: int
    cancelled: int
    artifacts_created: int
    artifact_size: Quantity
    errors: list[str]
    stages: list[StageReport]
    jobs: list[JobReport]


class PipelineReports(_Model):
    pipeline: str | None
    run_id: str | None
    message: str
    runs: list[RunReport]
