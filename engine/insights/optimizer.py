"""PipelineOptimizer: performance analysis and ranked suggestions from recorded runs.

Everything here is computed from the store: run, job and attempt rows the pipeline
engine wrote while real jobs ran, plus metrics recorded with `record_metric`. A pipeline
that never ran, or a window without runs, is reported as such, never filled in.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import InputError
from engine.insights import _advice, _queries, _units
from engine.insights._stats import Summary, Sums, fit_line, percentile_rank, verdict
from engine.insights.models import (
    Bottlenecks,
    CurrentPerformance,
    ExpectedOutcome,
    FlakyJob,
    MetricStats,
    OptimizationPlan,
    PerformanceAnalysis,
    Quantity,
    QueueWait,
    RetryCost,
    Stats,
    Suggestion,
    Trend,
    seconds,
)
from engine.settings import Settings, resolve_settings
from engine.store import Store, open_store
from engine.store import insights as insights_repo

__all__ = [
    "KNOWN_UNITS",
    "PipelineOptimizer",
    "flaky_jobs",
    "optimize_pipeline_performance",
    "report_uri",
    "trend_of",
]

KNOWN_UNITS = frozenset({"s", "MB", "count", "ratio", "percent", "s/run", "s/day"})
"""The units metrics are stored in (`record_metric` converts the usual spellings to these)."""
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,127}$")
_COLUMN_TAGS = ("pipeline", "run_id", "job")
# Runs replayed for the critical path and the suggestions: recent enough to describe the
# pipeline as it is now, enough to average out one slow machine moment.
RECENT_RUNS = 10
# Recorded metrics read for each figure of a pipeline without runs, the first one found wins.
_RECORDED: dict[str, tuple[str, ...]] = {
    "duration": ("duration", "duration_seconds"),
    "memory": ("memory_mb", "memory"),
    "cpu": ("cpu_percent", "cpu"),
}


def report_uri(pipeline: str) -> str:
    return f"cicd://reports/{pipeline}"


def _stats(s: Summary | None, unit: str) -> Stats | None:
    if s is None:
        return None

    def r(v: float) -> float:
        return round(v, 6)

    return Stats(
        unit=unit,
        count=s.count,
        mean=r(s.mean),
        median=r(s.median),
        p95=r(s.p95),
        min=r(s.min),
        max=r(s.max),
        stddev=None if s.stddev is None else r(s.stddev),
    )


def trend_of(store: Store, pipeline: str, since: float) -> Trend:
    """Least-squares trend of succeeded runs' durations over the window."""
    sums, span = _queries.trend_sums(store, pipeline, since)
    fit = fit_line(sums, span)
    word, why = verdict(sums, fit)
    per_day = per_run = None
    if fit is not None:
        per_day = Quantity(value=round(fit.slope, 6), unit="s/day")
        # Per run: the per-day slope over the mean interval between runs.
        per_run = Quantity(value=round(fit.slope * span / (sums.n - 1), 6), unit="s/run")
    return Trend(samples=sums.n, slope_per_run=per_run, slope_per_day=per_day, verdict=word, reason=why)


def recorded_trend(store: Store, pipeline: str, name: str, unit: str, since: float) -> Trend:
    """Least-squares trend of a recorded metric's values over the window."""
    t = insights_repo.recorded_trend_figures(store, pipeline, name, since)
    sums = Sums(t.n, t.sx, t.sy, t.sxx, t.sxy, t.syy)
    fit = fit_line(sums, t.day_span)
    word, why = verdict(sums, fit)
    per_day = per_run = None
    if fit is not None:
        per_day = Quantity(value=round(fit.slope, 6), unit=f"{unit}/day")
        per_run = Quantity(value=round(fit.slope * t.day_span / (sums.n - 1), 6), unit=f"{unit}/sample")
    return Trend(metric=name, unit=unit, samples=sums.n, slope_per_run=per_run, slope_per_day=per_day,
                 verdict=word, reason=why)


def _decimals(value: float) -> int:
    """Decimal places of a value as written (245.3 -> 1), at most 6."""
    text = repr(float(value))
    if "e" in text or "." not in text:
        return 0 if "e" not in text else 6
    return min(6, len(text.split(".")[1].rstrip("0")))


def _resolve_store(
    workspace_dir: str | os.PathLike[str] | None, store: Store | None, settings: Settings | None
) -> Store:
    if store is not None:
        return store
    return open_store(resolve_settings(workspace_dir, settings).workspace)


class PipelineOptimizer:
    """Analyses a pipeline's recorded runs and suggests changes, each with an estimate.

    `workspace_dir` (default: PIPELINE_WORKSPACE) locates the store; pass `store` to share one."""

    def __init__(
        self,
        workspace_dir: str | os.PathLike[str] | None = None,
        *,
        store: Store | None = None,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = _resolve_store(workspace_dir, store, settings)
        self._now = clock

    # -- metrics ---------------------------------------------------------------------------
    def record_metric(
        self,
        name: str,
        value: float,
        unit: str,
        tags: Mapping[str, Any] | None = None,
        *,
        ts: float | None = None,
    ) -> int:
        """Store one metric; returns its id. Tags `pipeline`, `run_id` and `job` are indexed columns.

        Units are accepted in their usual spellings (`seconds`, `sec`, `s`, `ms`; `MB`, `MiB`,
        `GB`, `bytes`; `%`, `percent`) and stored in their dimension's unit (s, MB, percent),
        the value converted. A metric whose name says what it measures (`duration`,
        `memory_mb`, `cpu_percent`) takes only units of that dimension.

        Raises:
            InputError: a bad name, a value that is not a finite number, an unknown unit or one of
                the wrong dimension for the metric, tags that are not a mapping of strings, or a
                unit that differs from the one this metric name was recorded with before
                (seconds and megabytes never mix).
        """
        if not isinstance(name, str) or not _METRIC_NAME.match(name):
            raise InputError(f"metric name {name!r}: use letters, digits and . _ - / (at most 128)")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InputError(f"metric {name}: value {value!r} is not a finite number")
        try:
            stored = _units.normalise(float(value), unit)
        except ValueError as exc:
            raise InputError(f"metric {name}: {exc}") from None
        tags = dict(tags or {})
        for key, tag in tags.items():
            if not isinstance(key, str) or not isinstance(tag, str | int | float | bool):
                raise InputError(f"metric {name}: tag {key!r} must map a name to a string or number")
        prior = insights_repo.metric_unit(self.store, name, stored.unit)
        try:
            _units.check_dimension(name, unit)
        except ValueError as exc:
            was = f" (it is recorded in {prior!r})" if prior is not None else ""
            raise InputError(f"metric {name}{was}: {exc}") from None
        if prior is not None:
            raise InputError(
                f"metric {name} is recorded in {prior!r}; refusing {unit!r} (units never mix)"
            )
        value, unit = stored.value, stored.unit
        columns = {k: str(tags.pop(k)) if k in tags else None for k in _COLUMN_TAGS}
        return insights_repo.record_metric(
            self.store, self._now() if ts is None else ts, name, float(value), unit,
            columns["pipeline"], columns["run_id"], columns["job"], json.dumps(tags, sort_keys=True),
        )

    # -- recorded metrics: the data of a pipeline that has no runs here ---------------------------
    def _metrics_only(self, pipeline: str, since: float) -> bool:
        return not self._run_counts(pipeline, since) and insights_repo.pipeline_has_metrics(
            self.store, pipeline, since
        )

    def _recorded(self, pipeline: str, metric: str, since: float) -> tuple[str, Stats] | None:
        found = insights_repo.recorded_metric_figures(
            self.store, pipeline, _RECORDED[metric], since, percentile_rank
        )
        if found is None:
            return None
        name, unit, figures = found
        stats = _stats(_queries.summary_of(figures), unit)
        assert stats is not None
        return name, stats

    def _analysis_from_metrics(self, pipeline: str, time_range: float, since: float) -> PerformanceAnalysis:
        stats: dict[str, MetricStats | None] = {}
        used: list[str] = []
        for metric in _RECORDED:
            found = self._recorded(pipeline, metric, since)
            stats[metric] = None if found is None else MetricStats(pipeline=found[1])
            if found is not None:
                used.append(f"{found[0]} ({found[1].count} in {found[1].unit})")
        duration = self._recorded(pipeline, "duration", since)
        trend = recorded_trend(self.store, pipeline, duration[0], duration[1].unit, since) if duration else None
        return PerformanceAnalysis(
            pipeline=pipeline,
            status="ok",
            message=f"{pipeline} has no runs in the last {time_range:g} day(s); figures from recorded metrics: "
            + (", ".join(used) or "none of duration, memory, cpu")
            + "; bottlenecks and suggestions need recorded runs",
            window_days=time_range,
            window_start=since,
            duration_stats=stats["duration"],
            cpu_stats=stats["cpu"],
            memory_stats=stats["memory"],
            trends=trend,
            bottlenecks=Bottlenecks(
                critical_path=None, critical_path_jobs=[], queueing=[], serial_chains=[], flaky_jobs=[],
                retries=[], retry_time_lost=seconds(0.0),
            ),
            suggestions=[],
            report_uri=report_uri(pipeline),
        )

    def _plan_from_metrics(
        self, pipeline: str, target_improvement: float, time_range: float, since: float
    ) -> OptimizationPlan | None:
        found = self._recorded(pipeline, "duration", since)
        if found is None:
            return None
        name, stats = found
        # A target is stated no more precisely than the durations it derives from (245.3 s -> 196.2 s),
        # and to a tenth of a second at least.
        values = insights_repo.recorded_metric_values(self.store, pipeline, name, since, limit=1000)
        places = max([1, *(_decimals(v) for v in values)])
        mean = stats.mean
        target = round(mean * (1 - target_improvement), places)
        msg = (
            f"mean of {stats.count} recorded {name} value(s): {mean:g} s; target {target:g} s. "
            "There are no recorded runs to replay, so no change can be estimated"
        )
        return OptimizationPlan(
            pipeline=pipeline,
            status="ok",
            message=msg,
            target_improvement=target_improvement,
            current_performance=CurrentPerformance(
                runs=0, average_duration=seconds(mean), target_duration=seconds(target)
            ),
            suggestions=[],
            expected_outcome=ExpectedOutcome(
                reaches_target=None, estimated_duration=None, estimated_saving=None, improvement=None, message=msg,
            ),
        )

    # -- analysis ----------------------------------------------------------------------------
    def _window(self, time_range: float) -> float:
        if (
            isinstance(time_range, bool)
            or not isinstance(time_range, int | float)
            or not (0 < time_range <= 3650)
        ):
            raise InputError(f"time_range must be a number of days in (0, 3650], got {time_range!r}")
        return self._now() - float(time_range) * 86400.0

    def _run_counts(self, pipeline: str, since: float) -> dict[str, int]:
        return insights_repo.run_status_counts(self.store, pipeline, since)

    def _empty(self, pipeline: str, time_range: float, since: float) -> PerformanceAnalysis | None:
        if not _queries.pipeline_exists(self.store, pipeline):
            status, msg = "unknown_pipeline", f"no pipeline named {pipeline!r} has been registered or run"
        elif not self._run_counts(pipeline, since):
            status, msg = "no_runs_in_window", f"{pipeline} has no runs in the last {time_range:g} day(s)"
        else:
            return None
        return PerformanceAnalysis(
            pipeline=pipeline,
            status=status,
            message=msg,
            window_days=time_range,
            window_start=since,
            report_uri=report_uri(pipeline),
        )

    def _recent(
        self, pipeline: str, since: float
    ) -> tuple[list[_queries.RecentRun], list[_queries.RecentRun]]:
        ok = _queries.recent_runs(self.store, pipeline, since, limit=RECENT_RUNS, statuses=("succeeded",))
        any_finished = ok or _queries.recent_runs(
            self.store, pipeline, since, limit=1, statuses=("failed", "interrupted", "cancelled")
        )
        return ok, any_finished

    def analyze_performance(self, pipeline_name: str, time_range: float = 7) -> PerformanceAnalysis:
        """Duration, CPU and memory statistics, the duration trend, bottlenecks and suggestions.

        Raises:
            InputError: time_range is not a number of days in (0, 3650].
        """
        since = self._window(time_range)
        if self._metrics_only(pipeline_name, since):
            return self._analysis_from_metrics(pipeline_name, time_range, since)
        empty = self._empty(pipeline_name, time_range, since)
        if empty is not None:
            return empty
        p = pipeline_name
        counts = self._run_counts(p, since)
        per_job = _queries.job_metric_summaries(self.store, p, since)
        per_run = _queries.run_metric_summaries(self.store, p, since)
        units = {"duration": "s", "cpu": "s", "memory": "MB"}
        stats = {
            m: MetricStats(
                pipeline=_stats(per_run.get(m), u),
                jobs={j: s for j, summ in per_job[m].items() if (s := _stats(summ, u)) is not None},
            )
            for m, u in units.items()
        }
        aggregates = _queries.job_aggregates(self.store, p, since)
        losses = _queries.retry_losses(self.store, p, since)
        ok_runs, sample = self._recent(p, since)
        bottlenecks = Bottlenecks(
            critical_path=_advice.critical_path_of(sample[0]) if sample else None,
            critical_path_jobs=_advice.critical_path_shares(sample),
            queueing=sorted(
                (
                    QueueWait(
                        job=a.job,
                        runs=a.runs,
                        mean=seconds(a.queue_wait_mean),
                        total=seconds(a.queue_wait_total),
                    )
                    for a in aggregates
                    if a.queue_wait_mean is not None and a.queue_wait_mean > _advice.QUEUE_NOTABLE_S
                ),
                key=lambda q: -q.total.value,
            ),
            serial_chains=_advice.serial_chains(sample[0]) if sample else [],
            flaky_jobs=flaky_jobs(aggregates),
            retries=[
                RetryCost(job=x.job, retried_runs=x.retried_runs, time_lost=seconds(x.seconds_lost))
                for x in losses
            ],
            retry_time_lost=seconds(sum(x.seconds_lost for x in losses)),
        )
        mean = per_run["duration"].mean if "duration" in per_run else None
        suggestions: list[Suggestion] = []
        if ok_runs and mean is not None:
            queue_means = {a.job: a.queue_wait_mean for a in aggregates if a.queue_wait_mean is not None}
            suggestions, _ = _advice.suggest(ok_runs, mean, queue_means)
        total = sum(counts.values())
        message = f"{total} run(s) in the last {time_range:g} day(s): " + ", ".join(
            f"{n} {s}" for s, n in counts.items()
        )
        if not ok_runs:
            message += "; no succeeded run, so no duration statistics or suggestions"
        return PerformanceAnalysis(
            pipeline=p,
            status="ok",
            message=message,
            window_days=time_range,
            window_start=since,
            runs=counts,
            duration_stats=stats["duration"],
            cpu_stats=stats["cpu"],
            memory_stats=stats["memory"],
            trends=trend_of(self.store, p, since),
            bottlenecks=bottlenecks,
            suggestions=suggestions,
            report_uri=report_uri(p),
        )

    def optimize_pipeline_performance(
        self, pipeline_name: str, target_improvement: float = 0.2, *, time_range: float = 7
    ) -> OptimizationPlan:
        """Suggestions ranked by estimated seconds saved, and whether together they reach the target.

        The target is `target_improvement` (a fraction, 0.2 = 20% faster) of the mean duration
        of the succeeded runs in the window.

        Raises:
            InputError: target_improvement is not in (0, 1), or time_range is invalid.
        """
        if (
            isinstance(target_improvement, bool)
            or not isinstance(target_improvement, int | float)
            or not (0 < target_improvement < 1)
        ):
            raise InputError(f"target_improvement must be a fraction in (0, 1), got {target_improvement!r}")
        since = self._window(time_range)
        if self._metrics_only(pipeline_name, since):
            recorded = self._plan_from_metrics(pipeline_name, target_improvement, time_range, since)
            if recorded is not None:
                return recorded
        empty = self._empty(pipeline_name, time_range, since)
        none = CurrentPerformance(runs=0, average_duration=None, target_duration=None)
        if empty is not None:
            return OptimizationPlan(
                pipeline=pipeline_name,
                status=empty.status,
                message=empty.message,
                target_improvement=target_improvement,
                current_performance=none,
                suggestions=[],
                expected_outcome=ExpectedOutcome(
                    reaches_target=None,
                    estimated_duration=None,
                    estimated_saving=None,
                    improvement=None,
                    message=empty.message,
                ),
            )
        p = pipeline_name
        per_run = _queries.run_metric_summaries(self.store, p, since)
        ok_runs, _ = self._recent(p, since)
        if "duration" not in per_run or not ok_runs:
            msg = f"{p} has no succeeded run in the last {time_range:g} day(s); nothing to measure against"
            return OptimizationPlan(
                pipeline=p,
                status="ok",
                message=msg,
                target_improvement=target_improvement,
                current_performance=none,
                suggestions=[],
                expected_outcome=ExpectedOutcome(
                    reaches_target=None,
                    estimated_duration=None,
                    estimated_saving=None,
                    improvement=None,
                    message=msg,
                ),
            )
        mean = per_run["duration"].mean
        target = mean * (1 - target_improvement)
        aggregates = _queries.job_aggregates(self.store, p, since)
        queue_means = {a.job: a.queue_wait_mean for a in aggregates if a.queue_wait_mean is not None}
        suggestions, changes = _advice.suggest(ok_runs, mean, queue_means)
        saving = _advice.combined_saving(ok_runs, changes) if changes else 0.0
        estimated = max(0.0, mean - saving)
        reaches = estimated <= target
        if not suggestions:
            outcome = "no change found that would save time measurably; the target is not reached"
        else:
            outcome = (
                f"all {len(suggestions)} suggestion(s) together: about {estimated:.2f} s per run against a "
                f"target of {target:.2f} s ({saving / mean:.0%} faster); the target is "
                + ("reached" if reaches else "not reached")
            )
        return OptimizationPlan(
            pipeline=p,
            status="ok",
            message=f"mean of {per_run['duration'].count} succeeded run(s): {mean:.2f} s; "
            f"{len(ok_runs)} recent run(s) replayed",
            target_improvement=target_improvement,
            current_performance=CurrentPerformance(
                runs=per_run["duration"].count,
                average_duration=seconds(mean),
                target_duration=seconds(target),
            ),
            suggestions=suggestions,
            expected_outcome=ExpectedOutcome(
                reaches_target=reaches,
                estimated_duration=seconds(estimated),
                estimated_saving=seconds(saving),
                improvement=round(saving / mean, 4) if mean > 0 else None,
                message=outcome,
            ),
        )


def flaky_jobs(aggregates: list[_queries.JobAggregate]) -> list[FlakyJob]:
    return [
        FlakyJob(
            job=a.job,
            runs=a.runs,
            passed_on_retry=a.passed_on_retry,
            rate=round(a.passed_on_retry / a.runs, 4) if a.runs else 0.0,
        )
        for a in aggregates
        if a.passed_on_retry > 0
    ]


def optimize_pipeline_performance(
    pipeline_name: str,
    target_improvement: float = 0.2,
    *,
    workspace_dir: str | os.PathLike[str] | None = None,
    store: Store | None = None,
) -> OptimizationPlan:
    """Convenience: `PipelineOptimizer(workspace_dir).optimize_pipeline_performance(...)`.

    Raises:
        InputError: target_improvement is not in (0, 1).
    """
    return PipelineOptimizer(workspace_dir, store=store).optimize_pipeline_performance(
        pipeline_name, target_improvement
    )
