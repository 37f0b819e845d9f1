"""Pipeline health and run reports from recorded runs: pure functions.

Health rules (over the finished runs of the window; a cancelled run was stopped on
purpose and counts neither as a success nor as a failure):

- unknown: no finished run in the window (or no pipeline of that name at all);
- failing: the newest finished run failed and so did the one before it (a streak of
  two or more), or fewer than half of the runs succeeded;
- degraded: the newest run failed, or the success rate is below 90%, or a job passed
  only on retry, or run duration is trending up;
- healthy: none of the above.

Mean time to recovery is measured from the end of the first failed run of a streak to
the end of the succeeded run that ended it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.insights._queries import RecentRun
from engine.insights.models import (
    FlakyJob,
    HealthStatus,
    JobReport,
    Quantity,
    RunReport,
    StageReport,
    Trend,
    seconds,
)

__all__ = ["Outcomes", "classify", "fold_outcomes", "run_report"]

FAILING_SUCCESS_RATE = 0.5
DEGRADED_SUCCESS_RATE = 0.9
FAILING_STREAK = 2
_BAD = frozenset({"failed", "interrupted"})


@dataclass(frozen=True)
class Outcomes:
    runs: int
    succeeded: int
    failed: int
    cancelled: int
    failure_streak: int
    recoveries: int
    mean_time_to_recovery: float | None  # seconds

    @property
    def success_rate(self) -> float | None:
        counted = self.succeeded + self.failed
        return self.succeeded / counted if counted else None


def fold_outcomes(outcomes: Iterable[tuple[str, float, float | None]]) -> Outcomes:
    """Fold (status, created_at, finished_at) of finished runs, oldest first, in one pass."""
    runs = ok = bad = cancelled = streak = recoveries = 0
    streak_start: float | None = None
    recovery_total = 0.0
    for status, created, finished in outcomes:
        runs += 1
        end = finished if finished is not None else created
        if status == "cancelled":
            cancelled += 1
        elif status in _BAD:
            bad += 1
            if streak == 0:
                streak_start = end
            streak += 1
        elif status == "succeeded":
            ok += 1
            if streak and streak_start is not None:
                recoveries += 1
                recovery_total += max(0.0, end - streak_start)
            streak, streak_start = 0, None
    mttr = recovery_total / recoveries if recoveries else None
    return Outcomes(runs, ok, bad, cancelled, streak, recoveries, mttr)


def classify(
    o: Outcomes, newest_finished: str | None, flaky: Sequence[FlakyJob], trend: Trend | None
) -> tuple[HealthStatus, list[str]]:
    """Health status and the reasons for it, in words."""
    rate = o.success_rate
    if o.runs == 0 or newest_finished is None:
        return "unknown", ["no finished runs in the window"]
    if rate is None:
        return "unknown", [f"{o.cancelled} run(s) in the window, all cancelled"]
    failing, degraded = [], []
    if o.failure_streak >= FAILING_STREAK:
        failing.append(f"the last {o.failure_streak} finished runs failed")
    if rate < FAILING_SUCCESS_RATE:
        failing.append(f"success rate {rate:.0%} is below {FAILING_SUCCESS_RATE:.0%}")
    if failing:
        return "failing", failing
    if newest_finished in _BAD:
        degraded.append("the newest run failed")
    if rate < DEGRADED_SUCCESS_RATE:
        degraded.append(f"success rate {rate:.0%} is below {DEGRADED_SUCCESS_RATE:.0%}")
    if flaky:
        degraded.append("flaky job(s) passed only on retry: " + ", ".join(f.job for f in flaky))
    if trend is not None and trend.verdict == "increasing":
        degraded.append(f"run duration is increasing ({trend.reason})")
    if degraded:
        return "degraded", degraded
    return "healthy", [
        f"{o.succeeded} of {o.succeeded + o.failed} runs succeeded; no flaky jobs; "
        f"duration {trend.verdict if trend else 'not measured'}"
    ]


def _q(value: float | None, unit: str) -> Quantity | None:
    return None if value is None else Quantity(value=round(value, 6), unit=unit)


def run_report(run: RecentRun) -> RunReport:
    jobs = list(run.jobs.values())
    stages: dict[str, list[int]] = {}
    stage_span: dict[str, tuple[float | None, float | None]] = {}
    errors = [f"run: {run.reason}"] if run.reason and run.status != "succeeded" else []
    for j in jobs:
        counts = stages.setdefault(j.stage, [0, 0, 0, 0, 0])  # jobs, passed, failed, skipped, cancelled
        counts[0] += 1
        if j.status == "succeeded":
            counts[1] += 1
        elif j.status in ("failed", "timed_out"):
            counts[2] += 1
            errors.append(f"{j.name}: {j.reason or j.status}")
        elif j.status == "skipped":
            counts[3] += 1
        elif j.status == "cancelled":
            counts[4] += 1
        lo, hi = stage_span.get(j.stage, (None, None))
        if j.started_at is not None:
            lo = j.started_at if lo is None else min(lo, j.started_at)
        if j.finished_at is not None and j.started_at is not None:
            hi = j.finished_at if hi is None else max(hi, j.finished_at)
        stage_span[j.stage] = (lo, hi)
    totals = [sum(c[i] for c in stages.values()) for i in range(5)]
    return RunReport(
        run_id=run.run_id,
        pipeline=run.pipeline,
        status=run.status,
        reason=run.reason,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration=_q(run.duration, "s"),
        jobs_executed=sum(1 for j in jobs if j.started_at is not None),
        passed=totals[1],
        failed=totals[2],
        skipped=totals[3],
        cancelled=totals[4],
        artifacts_created=sum(len(j.artifacts) for j in jobs),
        artifact_size=Quantity(value=sum(j.artifact_bytes for j in jobs), unit="bytes"),
        errors=errors,
        stages=[
            StageReport(
                name=name,
                jobs=c[0],
                passed=c[1],
                failed=c[2],
                skipped=c[3],
                cancelled=c[4],
                duration=seconds(stage_span[name][1] - stage_span[name][0])  # type: ignore[operator]
                if None not in stage_span[name]
                else None,
            )
            for name, c in stages.items()
        ],
        jobs=[
            JobReport(
                name=j.name,
                stage=j.stage,
                status=j.status,
                attempts=j.attempts,
                needs=list(j.needs),
                duration=_q(j.duration, "s"),
                queue_wait=_q(j.queue_wait, "s"),
                cpu=_q(j.cpu_seconds, "s"),
                peak_memory=_q(None if j.peak_rss_kb is None else j.peak_rss_kb / 1024, "MB"),
                exit_code=j.exit_code,
                reason=j.reason,
                artifacts=sorted(j.artifacts),
            )
            for j in jobs
        ],
    )
