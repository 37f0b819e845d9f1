"""What insights reads from the store, as the summaries its reports are made of.

The SQL is in `engine.store.insights`; this module turns the raw figures it returns (counts,
sums, values at ranks) into `Summary` and `Sums` with the definitions of `_stats`.
"""

from __future__ import annotations

import math

from engine.insights._stats import Summary, Sums, percentile_rank
from engine.store import insights as _repo
from engine.store.base import Store
from engine.store.insights import (
    FAILED_RUN_STATES,
    JobAggregate,
    RecentJob,
    RecentRun,
    RetryLoss,
    iterate_run_outcomes,
    job_aggregates,
    known_pipelines,
    load_run,
    pipeline_exists,
    recent_runs,
    retry_losses,
    run_rows,
)

__all__ = [
    "FAILED_RUN_STATES",
    "JobAggregate",
    "RecentJob",
    "RecentRun",
    "RetryLoss",
    "iterate_run_outcomes",
    "job_aggregates",
    "job_metric_summaries",
    "known_pipelines",
    "load_run",
    "pipeline_exists",
    "recent_runs",
    "retry_losses",
    "run_metric_summaries",
    "run_rows",
    "summary_of",
    "trend_sums",
]


def _summary(f: _repo.MetricFigures) -> Summary:
    mean = f.total / f.n
    stddev = math.sqrt(max(0.0, f.squares - f.total * f.total / f.n) / (f.n - 1)) if f.n > 1 else None
    return Summary(f.n, mean, f.median, f.p95, f.lo, f.hi, stddev)


def summary_of(f: _repo.MetricFigures) -> Summary:
    """The summary of figures read from the store."""
    return _summary(f)


def job_metric_summaries(store: Store, pipeline: str, since: float) -> dict[str, dict[str, Summary]]:
    """metric (duration s, cpu s, memory MB) -> job -> summary, over jobs started since `since`."""
    figures = _repo.job_metric_figures(store, pipeline, since, percentile_rank)
    return {metric: {job: _summary(f) for job, f in jobs.items()} for metric, jobs in figures.items()}


def run_metric_summaries(store: Store, pipeline: str, since: float) -> dict[str, Summary]:
    """Whole-run summaries: duration of succeeded runs (s), CPU summed over a run's jobs (s),
    the largest job peak memory in a run (MB)."""
    return {m: _summary(f) for m, f in _repo.run_metric_figures(store, pipeline, since, percentile_rank).items()}


def trend_sums(store: Store, pipeline: str, since: float) -> tuple[Sums, float]:
    """Least-squares sums of succeeded runs' durations (s) against days since `since`.

    Returns (sums, day_span)."""
    t = _repo.trend_figures(store, pipeline, since)
    return Sums(t.n, t.sx, t.sy, t.sxx, t.sxy, t.syy), t.day_span
