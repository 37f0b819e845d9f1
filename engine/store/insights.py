"""The insights repository: every read the insights package makes of the store.

Aggregates are computed inside the database (window functions for medians and nearest-rank
p95, running sums for least-squares fits) so the number of rows read never becomes
the size of a Python list; only per-job results and the few most recent runs' jobs
come back. The definitions match `engine.insights._stats` (the tests check this); the
insights package turns the raw figures returned here into its summaries.

Units as stored: durations and CPU in seconds, resident memory in kB (reported in MB,
1 MB = 1024 kB), artifact sizes in bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from engine.store.base import Row, Store

__all__ = [
    "FAILED_RUN_STATES",
    "JobAggregate",
    "MetricFigures",
    "RankFn",
    "RecentJob",
    "RecentRun",
    "RetryLoss",
    "TrendFigures",
    "iterate_run_outcomes",
    "job_aggregates",
    "job_metric_figures",
    "known_pipelines",
    "load_run",
    "metric_unit",
    "pipeline_exists",
    "pipeline_has_metrics",
    "recent_runs",
    "record_metric",
    "recorded_metric_figures",
    "recorded_metric_values",
    "recorded_trend_figures",
    "retry_losses",
    "run",
    "run_metric_figures",
    "run_rows",
    "run_status_counts",
    "trend_figures",
]

RankFn = Callable[[int, float], int]
"""(n, fraction) -> the 1-based nearest rank of that percentile among n sorted values."""

# A run that ended in one of these counts against the success rate; a cancelled run
# was stopped on purpose and counts neither way.
FAILED_RUN_STATES = ("failed", "interrupted")

_HOUR = 3600.0

# metric -> (SQL expression over a jobs row, index walked in value order, rollup prefix, scale)
_JOB_METRICS: dict[str, tuple[str, str, str, float]] = {
    "duration": ("duration", "insights_jobs_duration", "dur", 1.0),
    "cpu": ("cpu_user + cpu_system", "insights_jobs_cpu", "cpu", 1.0),
    "memory": ("peak_rss_kb", "insights_jobs_mem", "mem", 1 / 1024),
}


def _first_full_hour(since: float) -> int:
    return math.ceil(since / _HOUR)


class MetricFigures(NamedTuple):
    """What a summary of n values is made from: their count, sum and sum of squares, and the
    values at the ranks that matter (min, median, nearest-rank p95, max)."""

    n: int
    total: float
    squares: float
    lo: float
    median: float
    p95: float
    hi: float


def _figures(n: int, total: float, squares: float, ranked: tuple[float, float, float, float]) -> MetricFigures:
    return MetricFigures(n, total, squares, *ranked)


def _source(store: Store, table: str, index: str, alias: str = "") -> str:
    # SQLite's planner, left to itself, picks the pipeline index and sorts; the named index
    # walks the values in order (see `_ranked`). Other dialects choose well on their own.
    named = f"{table} {alias}".rstrip()
    return f"{named} INDEXED BY {index}" if store.dialect == "sqlite" else named


def _count_when(condition: str) -> str:
    return f"COALESCE(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END), 0)"


def _total(expr: str) -> str:
    return f"COALESCE(SUM({expr}), 0.0)"


def _ranked(
    store: Store, select: str, params: list[Any], n: int, scale: float, rank: RankFn
) -> tuple[float, float, float, float]:
    """min, median, p95 (nearest rank), max of n values, read in value order.

    `select` ends in `ORDER BY <value> {order}`; the index it walks makes each read an
    OFFSET into ordered entries, so memory stays flat and no sort happens."""

    def at(order: str, offset: int, limit: int = 1) -> list[float]:
        rows = store.query(select.format(order=order) + " LIMIT ? OFFSET ?", [*params, limit, offset])
        return [float(r["v"]) * scale for r in rows]

    lo = at("ASC", 0)
    hi = at("DESC", 0)
    if not lo or not hi:  # rows vanished between the count and the read (a concurrent delete)
        return (math.nan,) * 4
    middle = at("ASC", (n - 1) // 2, 2 if n % 2 == 0 else 1) or hi
    median = sum(middle) / len(middle)
    p95 = at("DESC", max(0, n - rank(n, 0.95)))
    return lo[0], median, (p95 or hi)[0], hi[0]


def pipeline_exists(store: Store, pipeline: str) -> bool:
    return (
        store.query_one("SELECT 1 FROM pipelines WHERE name = ?", (pipeline,)) is not None
        or store.query_one("SELECT 1 FROM runs WHERE pipeline = ? LIMIT 1", (pipeline,)) is not None
    )


def known_pipelines(store: Store) -> list[str]:
    rows = store.query(
        "SELECT name FROM pipelines UNION SELECT DISTINCT pipeline AS name FROM runs ORDER BY name")
    return [r["name"] for r in rows]


@dataclass
class _JobSums:
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    passed_on_retry: int = 0
    queue_n: int = 0
    queue_sum: float = 0.0
    metric: dict[str, list[float]] = field(default_factory=dict)  # metric -> [n, sum, sum of squares]


_SUM_COLUMNS = """started, succeeded, failed, passed_on_retry, queue_n, queue_sum,
    dur_n, dur_sum, dur_sq, cpu_n, cpu_sum, cpu_sq, mem_n, mem_sum, mem_sq"""

# The same contribution the triggers of 0003_insights.sql add up, for the rows of the
# partial hour at the start of the window (the rollup only has whole hours).
_RAW_SUMS = f"""
SELECT name, COUNT(*) AS started, {_count_when("status = 'succeeded'")} AS succeeded,
       {_count_when("status IN ('failed', 'timed_out')")} AS failed,
       {_count_when("status = 'succeeded' AND attempts > 1")} AS passed_on_retry,
       COUNT(queue_wait) AS queue_n, {_total("queue_wait")} AS queue_sum,
       COUNT(duration) AS dur_n, {_total("duration")} AS dur_sum, {_total("duration * duration")} AS dur_sq,
       COUNT(cpu_user + cpu_system) AS cpu_n, {_total("cpu_user + cpu_system")} AS cpu_sum,
       {_total("(cpu_user + cpu_system) * (cpu_user + cpu_system)")} AS cpu_sq,
       COUNT(peak_rss_kb) AS mem_n, {_total("peak_rss_kb / 1024.0")} AS mem_sum,
       {_total("(peak_rss_kb / 1024.0) * (peak_rss_kb / 1024.0)")} AS mem_sq
  FROM {{jobs}}
 WHERE pipeline = ? AND started_at >= ? AND started_at < ?
 GROUP BY name
"""


def _job_sums(store: Store, pipeline: str, since: float) -> dict[str, _JobSums]:
    h0 = _first_full_hour(since)
    rollup = store.query(
        f"SELECT name, {', '.join(f'{_total(c.strip())} AS {c.strip()}' for c in _SUM_COLUMNS.split(','))}"
        " FROM insights_job_hours WHERE pipeline = ? AND hour >= ? GROUP BY name",
        (pipeline, h0),
    )
    raw = store.query(_RAW_SUMS.format(jobs=_source(store, "jobs", "jobs_by_pipeline")), (pipeline, since, h0 * _HOUR))
    out: dict[str, _JobSums] = {}
    for row in [*rollup, *raw]:
        s = out.setdefault(row["name"], _JobSums())
        s.started += int(row["started"])
        s.succeeded += int(row["succeeded"])
        s.failed += int(row["failed"])
        s.passed_on_retry += int(row["passed_on_retry"])
        s.queue_n += int(row["queue_n"])
        s.queue_sum += float(row["queue_sum"])
        for metric, (_, _, prefix, _) in _JOB_METRICS.items():
            acc = s.metric.setdefault(metric, [0.0, 0.0, 0.0])
            acc[0] += row[f"{prefix}_n"]
            acc[1] += row[f"{prefix}_sum"]
            acc[2] += row[f"{prefix}_sq"]
    return {name: s for name, s in out.items() if s.started > 0}


def job_metric_figures(
    store: Store, pipeline: str, since: float, rank: RankFn
) -> dict[str, dict[str, MetricFigures]]:
    """metric (duration s, cpu s, memory MB) -> job -> figures, over jobs started since `since`."""
    out: dict[str, dict[str, MetricFigures]] = {m: {} for m in _JOB_METRICS}
    for job, sums in sorted(_job_sums(store, pipeline, since).items()):
        for metric, (expr, index, _, scale) in _JOB_METRICS.items():
            n, total, squares = sums.metric[metric]
            count = round(n)
            if count <= 0:
                continue
            select = (
                f"SELECT {expr} AS v FROM {_source(store, 'jobs', index)}"
                f" WHERE pipeline = ? AND name = ? AND {expr} IS NOT NULL AND started_at >= ?"
                f" ORDER BY {expr} {{order}}"
            )
            ranked = _ranked(store, select, [pipeline, job, since], count, scale, rank)
            out[metric][job] = _figures(count, total, squares, ranked)
    return out


def run_metric_figures(store: Store, pipeline: str, since: float, rank: RankFn) -> dict[str, MetricFigures]:
    """Whole-run figures: duration of succeeded runs (s), CPU summed over a run's jobs (s),
    the largest job peak memory in a run (MB)."""
    sources = {
        "duration": (
            _source(store, "runs", "insights_runs_duration"),
            "duration",
            "pipeline = ? AND status = 'succeeded' AND duration IS NOT NULL AND created_at >= ?",
        ),
        "cpu": (
            _source(store, "insights_run_totals", "insights_run_cpu"),
            "cpu_seconds",
            "pipeline = ? AND cpu_seconds IS NOT NULL AND started_at >= ?",
        ),
        "memory": (
            _source(store, "insights_run_totals", "insights_run_mem"),
            "peak_rss_mb",
            "pipeline = ? AND peak_rss_mb IS NOT NULL AND started_at >= ?",
        ),
    }
    out: dict[str, MetricFigures] = {}
    for metric, (table, col, where) in sources.items():
        row = store.query_one(
            f"SELECT COUNT({col}) AS n, {_total(col)} AS total, {_total(f'{col} * {col}')} AS squares"
            f" FROM {table} WHERE {where}",
            (pipeline, since),
        )
        assert row is not None  # an aggregate always yields a row
        n = int(row["n"])
        if n == 0:
            continue
        select = f"SELECT {col} AS v FROM {table} WHERE {where} ORDER BY {col} {{order}}"
        ranked = _ranked(store, select, [pipeline, since], n, 1.0, rank)
        out[metric] = _figures(n, float(row["total"]), float(row["squares"]), ranked)
    return out


@dataclass(frozen=True)
class JobAggregate:
    job: str
    runs: int  # times the job started in the window
    succeeded: int
    failed: int  # failed or timed out
    passed_on_retry: int  # succeeded with more than one attempt
    queue_wait_mean: float | None  # seconds
    queue_wait_total: float  # seconds


def job_aggregates(store: Store, pipeline: str, since: float) -> list[JobAggregate]:
    return [
        JobAggregate(
            job,
            s.started,
            s.succeeded,
            s.failed,
            s.passed_on_retry,
            s.queue_sum / s.queue_n if s.queue_n else None,
            s.queue_sum,
        )
        for job, s in sorted(_job_sums(store, pipeline, since).items())
    ]


@dataclass(frozen=True)
class RetryLoss:
    job: str
    retried_runs: int  # runs in which the job needed more than one attempt
    seconds_lost: float  # sum of the durations of the attempts that were retried


def retry_losses(store: Store, pipeline: str, since: float) -> list[RetryLoss]:
    jobs = _source(store, "jobs", "insights_jobs_retried", "j")
    rows = store.query(
        f"""
        SELECT j.name AS job, COUNT(DISTINCT j.run_id) AS runs, {_total("a.duration")} AS lost
          FROM {jobs}
          JOIN attempts a ON a.run_id = j.run_id AND a.job = j.name AND a.attempt < j.attempts
         WHERE j.pipeline = ? AND j.started_at >= ? AND j.attempts > 1
         GROUP BY j.name ORDER BY lost DESC, job
        """,
        (pipeline, since),
    )
    return [RetryLoss(r["job"], r["runs"], float(r["lost"])) for r in rows]


class TrendFigures(NamedTuple):
    """Least-squares sums of (x = days since the window start, y = duration) and the day span."""

    n: int
    sx: float
    sy: float
    sxx: float
    sxy: float
    syy: float
    day_span: float


def trend_figures(store: Store, pipeline: str, since: float) -> TrendFigures:
    """Least-squares sums of succeeded runs' durations (s) against days since `since`:
    one pass over a covering index, nothing kept."""
    row = store.query_one(
        f"""
        SELECT COUNT(*) AS n, {_total("d")} AS sd, {_total("y")} AS sy, {_total("d * d")} AS sdd,
               {_total("y * y")} AS syy, {_total("d * y")} AS sdy, MAX(d) - MIN(d) AS dspan
          FROM (SELECT duration AS y, (created_at - ?) / 86400.0 AS d
                  FROM {_source(store, "runs", "insights_runs_trend")}
                 WHERE pipeline = ? AND status = 'succeeded' AND created_at >= ?
                   AND duration IS NOT NULL) AS succeeded
        """,
        (since, pipeline, since),
    )
    assert row is not None  # an aggregate always yields a row
    return TrendFigures(int(row["n"]), float(row["sd"]), float(row["sy"]), float(row["sdd"]), float(row["sdy"]),
                        float(row["syy"]), float(row["dspan"] or 0.0))


@dataclass
class RecentJob:
    name: str
    stage: str
    status: str
    needs: tuple[str, ...]
    ready_at: float | None
    started_at: float | None
    finished_at: float | None
    duration: float | None  # seconds, all attempts
    queue_wait: float | None  # seconds
    attempts: int
    last_attempt: float | None  # seconds, the final attempt alone
    reason: str | None
    cpu_seconds: float | None = None
    peak_rss_kb: int | None = None
    exit_code: int | None = None
    artifacts: dict[str, str] = field(default_factory=dict)  # path -> sha256
    artifact_bytes: int = 0
    attempt_spans: list[tuple[int, str, float, float | None]] = field(default_factory=list)

    @property
    def wall(self) -> float | None:
        """Seconds the job held its place in the schedule (first start to last finish)."""
        if self.started_at is not None and self.finished_at is not None:
            return max(0.0, self.finished_at - self.started_at)
        return self.duration


@dataclass
class RecentRun:
    run_id: str
    pipeline: str
    status: str
    reason: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    duration: float | None
    max_workers: int | None
    spec: dict[str, Any] | None
    jobs: dict[str, RecentJob]  # in the order they started


def run_rows(
    store: Store,
    pipeline: str | None,
    since: float | None = None,
    *,
    limit: int | None = None,
    statuses: Sequence[str] | None = None,
) -> list[Row]:
    """Run rows, newest first."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if pipeline is not None:
        where.append("pipeline = ?")
        params.append(pipeline)
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    if statuses:
        where.append(f"status IN ({','.join('?' * len(statuses))})")
        params.extend(statuses)
    sql = f"SELECT * FROM runs WHERE {' AND '.join(where)} ORDER BY created_at DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return store.query(sql, params)


def run(store: Store, run_id: str) -> Row | None:
    """One run's row, or None."""
    return store.query_one("SELECT * FROM runs WHERE run_id = ?", (run_id,))


def load_run(store: Store, row: Row) -> RecentRun:
    """A run with its jobs, their attempts and their artifacts (one run: few rows)."""
    run_id = row["run_id"]
    jobs: dict[str, RecentJob] = {}
    for j in store.query(
        "SELECT * FROM jobs WHERE run_id = ? ORDER BY started_at IS NULL, started_at, name", (run_id,)
    ):
        jobs[j["name"]] = RecentJob(
            name=j["name"],
            stage=j["stage"],
            status=j["status"],
            needs=tuple(json.loads(j["needs_json"])),
            ready_at=j["ready_at"],
            started_at=j["started_at"],
            finished_at=j["finished_at"],
            duration=j["duration"],
            queue_wait=j["queue_wait"],
            attempts=j["attempts"],
            last_attempt=None,
            reason=j["reason"],
            cpu_seconds=None if j["cpu_user"] is None else j["cpu_user"] + (j["cpu_system"] or 0.0),
            peak_rss_kb=j["peak_rss_kb"],
            exit_code=j["exit_code"],
        )
    for a in store.query(
        "SELECT job, attempt, status, started_at, finished_at, duration FROM attempts"
        " WHERE run_id = ? ORDER BY job, attempt",
        (run_id,),
    ):
        job = jobs.get(a["job"])
        if job is None:
            continue
        job.attempt_spans.append((a["attempt"], a["status"], a["started_at"], a["finished_at"]))
        if a["duration"] is not None:
            job.last_attempt = a["duration"]
    for art in store.query("SELECT job, path, sha256, size FROM artifacts WHERE run_id = ?", (run_id,)):
        job = jobs.get(art["job"])
        if job is not None:
            job.artifacts[art["path"]] = art["sha256"]
            job.artifact_bytes += art["size"]
    spec = None
    if row["spec_json"]:
        try:
            spec = json.loads(row["spec_json"])
        except ValueError:
            spec = None
    return RecentRun(
        run_id=run_id,
        pipeline=row["pipeline"],
        status=row["status"],
        reason=row["reason"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration=row["duration"],
        max_workers=row["max_workers"],
        spec=spec,
        jobs=jobs,
    )


def recent_runs(
    store: Store, pipeline: str, since: float, *, limit: int, statuses: Sequence[str] | None = None
) -> list[RecentRun]:
    """The newest `limit` runs in the window, fully loaded, newest first."""
    return [load_run(store, row) for row in run_rows(store, pipeline, since, limit=limit, statuses=statuses)]


def iterate_run_outcomes(
    store: Store, pipeline: str, since: float
) -> Iterator[tuple[str, float, float | None]]:
    """(status, created_at, finished_at) of finished runs in the window, oldest first (streamed)."""
    for row in store.iterate(
        "SELECT status, created_at, finished_at FROM runs"
        " WHERE pipeline = ? AND created_at >= ?"
        " AND status IN ('succeeded', 'failed', 'interrupted', 'cancelled')"
        " ORDER BY created_at",
        (pipeline, since),
    ):
        yield row["status"], row["created_at"], row["finished_at"]


def run_status_counts(store: Store, pipeline: str, since: float) -> dict[str, int]:
    """status -> number of runs of the pipeline created since `since`."""
    rows = store.query(
        f"SELECT status, COUNT(*) AS n FROM {_source(store, 'runs', 'insights_runs_trend')}"
        " WHERE pipeline = ? AND created_at >= ? GROUP BY status ORDER BY status",
        (pipeline, since),
    )
    return {r["status"]: int(r["n"]) for r in rows}


def metric_unit(store: Store, name: str, other_than: str) -> str | None:
    """The unit a metric is already recorded in, when it is not `other_than`."""
    row = store.query_one("SELECT unit FROM metrics WHERE name = ? AND unit <> ? LIMIT 1", (name, other_than))
    return None if row is None else str(row["unit"])


def record_metric(
    store: Store, ts: float, name: str, value: float, unit: str,
    pipeline: str | None, run_id: str | None, job: str | None, tags_json: str,
) -> int:
    """Store one metric sample; returns its id."""
    with store.transaction() as tx:
        rows = tx.query(
            "INSERT INTO metrics (ts, name, value, unit, pipeline, run_id, job, tags_json) VALUES (?,?,?,?,?,?,?,?)"
            " RETURNING id",
            (ts, name, value, unit, pipeline, run_id, job, tags_json),
        )
    return int(rows[0]["id"])


def recorded_metric_figures(
    store: Store, pipeline: str, names: Sequence[str], since: float, rank: RankFn
) -> tuple[str, str, MetricFigures] | None:
    """Figures of the first of `names` recorded for the pipeline since `since`, with `record_metric`:
    (name, unit, figures), or None when none of them was."""
    for name in names:
        where = "name = ? AND pipeline = ? AND ts >= ?"
        params = [name, pipeline, since]
        row = store.query_one(
            f"SELECT COUNT(value) AS n, {_total('value')} AS total, {_total('value * value')} AS squares,"
            f" MIN(unit) AS unit FROM metrics WHERE {where}",
            params,
        )
        assert row is not None  # an aggregate always yields a row
        n = int(row["n"])
        if n == 0:
            continue
        select = f"SELECT value AS v FROM metrics WHERE {where} ORDER BY value {{order}}"
        ranked = _ranked(store, select, params, n, 1.0, rank)
        return name, str(row["unit"]), _figures(n, float(row["total"]), float(row["squares"]), ranked)
    return None


def recorded_metric_values(store: Store, pipeline: str, name: str, since: float, limit: int) -> list[float]:
    """The newest `limit` values of a recorded metric, newest first."""
    rows = store.query(
        "SELECT value FROM metrics WHERE name = ? AND pipeline = ? AND ts >= ? ORDER BY ts DESC, id DESC LIMIT ?",
        (name, pipeline, since, limit),
    )
    return [float(r["value"]) for r in rows]


def recorded_trend_figures(store: Store, pipeline: str, name: str, since: float) -> TrendFigures:
    """Least-squares sums of a recorded metric's values against days since `since`."""
    row = store.query_one(
        f"""
        SELECT COUNT(*) AS n, {_total("d")} AS sd, {_total("y")} AS sy, {_total("d * d")} AS sdd,
               {_total("y * y")} AS syy, {_total("d * y")} AS sdy, MAX(d) - MIN(d) AS dspan
          FROM (SELECT value AS y, (ts - ?) / 86400.0 AS d FROM metrics
                 WHERE name = ? AND pipeline = ? AND ts >= ?) AS recorded
        """,
        (since, name, pipeline, since),
    )
    assert row is not None  # an aggregate always yields a row
    return TrendFigures(int(row["n"]), float(row["sd"]), float(row["sy"]), float(row["sdd"]), float(row["sdy"]),
                        float(row["syy"]), float(row["dspan"] or 0.0))


def pipeline_has_metrics(store: Store, pipeline: str, since: float) -> bool:
    """Whether any metric was recorded for the pipeline since `since`."""
    return store.query_one(
        "SELECT 1 FROM metrics WHERE pipeline = ? AND ts >= ? LIMIT 1", (pipeline, since)
    ) is not None
