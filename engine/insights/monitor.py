"""PipelineMonitor: health per pipeline and reports per run, from the store."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from engine.errors import InputError, NotFoundError
from engine.insights import _health, _queries
from engine.insights.models import HealthReport, LastRun, PipelineHealth, PipelineReports, seconds
from engine.insights.optimizer import _resolve_store, flaky_jobs, trend_of
from engine.settings import Settings
from engine.store import Store
from engine.store import insights as insights_repo

__all__ = ["PipelineMonitor"]

DEFAULT_REPORT_RUNS = 20


class PipelineMonitor:
    """Health of pipelines and reports of their runs. `workspace_dir` (default: PIPELINE_WORKSPACE)
    locates the store; pass `store` to share one."""

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

    def _since(self, time_range: float) -> float:
        if (
            isinstance(time_range, bool)
            or not isinstance(time_range, int | float)
            or not (0 < time_range <= 3650)
        ):
            raise InputError(f"time_range must be a number of days in (0, 3650], got {time_range!r}")
        return self._now() - float(time_range) * 86400.0

    def pipeline_health(self, pipeline: str, time_range: float = 7) -> PipelineHealth:
        """Health of one pipeline; `unknown` for a name with no runs.

        Raises:
            InputError: time_range is not a number of days in (0, 3650].
        """
        since = self._since(time_range)
        outcomes = _health.fold_outcomes(_queries.iterate_run_outcomes(self.store, pipeline, since))
        newest = _queries.run_rows(self.store, pipeline, limit=1)
        newest_finished = _queries.run_rows(
            self.store, pipeline, since, limit=1, statuses=("succeeded", "failed", "interrupted", "cancelled")
        )
        last = None
        if newest:
            r = newest[0]
            last = LastRun(
                run_id=r["run_id"],
                status=r["status"],
                created_at=r["created_at"],
                finished_at=r["finished_at"],
                duration=seconds(r["duration"]) if r["duration"] is not None else None,
            )
        flaky = flaky_jobs(_queries.job_aggregates(self.store, pipeline, since)) if outcomes.runs else []
        trend = trend_of(self.store, pipeline, since) if outcomes.runs else None
        newest_status = None
        if newest_finished:
            # The newest run that counts: skip cancelled ones, they say nothing about health.
            counted = _queries.run_rows(
                self.store, pipeline, since, limit=1, statuses=("succeeded", "failed", "interrupted")
            )
            newest_status = counted[0]["status"] if counted else "cancelled"
        status, reasons = _health.classify(outcomes, newest_status, flaky, trend)
        if not newest:
            known = _queries.pipeline_exists(self.store, pipeline)
            reasons = [
                f"{pipeline} is registered but has never run" if known else f"no pipeline named {pipeline!r}"
            ]
        rate = outcomes.success_rate
        return PipelineHealth(
            pipeline=pipeline,
            status=status,
            reasons=reasons,
            window_days=time_range,
            runs=outcomes.runs,
            succeeded=outcomes.succeeded,
            failed=outcomes.failed,
            cancelled=outcomes.cancelled,
            success_rate=None if rate is None else round(rate, 4),
            last_run=last,
            failure_streak=outcomes.failure_streak,
            mean_time_to_recovery=None
            if outcomes.mean_time_to_recovery is None
            else seconds(outcomes.mean_time_to_recovery),
            recoveries=outcomes.recoveries,
            flaky_jobs=flaky,
            duration_trend=trend,
        )

    def monitor_pipeline_health(
        self, pipeline_name: str | None = None, *, time_range: float = 7
    ) -> HealthReport:
        """Health of the named pipeline, or of every pipeline the store knows.

        Raises:
            InputError: time_range is not a number of days in (0, 3650].
        """
        names = [pipeline_name] if pipeline_name is not None else _queries.known_pipelines(self.store)
        return HealthReport(
            generated_at=self._now(), pipelines=[self.pipeline_health(n, time_range) for n in names]
        )

    def generate_pipeline_reports(
        self, pipeline_name: str | None = None, run_id: str | None = None, *, limit: int = DEFAULT_REPORT_RUNS
    ) -> PipelineReports:
        """Per run: stages and jobs executed, passed, failed, skipped, artifacts, errors, durations.

        With `run_id`, that run; else the newest `limit` runs of the pipeline (or of all pipelines).

        Raises:
            NotFoundError: no run with that id (or it belongs to another pipeline than the one named).
            InputError: limit is not a positive number.
        """
        if limit < 1:
            raise InputError(f"limit must be at least 1, got {limit}")
        if run_id is not None:
            row = insights_repo.run(self.store, run_id)
            if row is None or (pipeline_name is not None and row["pipeline"] != pipeline_name):
                where = f" of pipeline {pipeline_name}" if pipeline_name else ""
                raise NotFoundError(f"no run {run_id!r}{where}")
            rows = [row]
        else:
            rows = _queries.run_rows(self.store, pipeline_name, limit=limit)
        reports = [_health.run_report(_queries.load_run(self.store, r)) for r in rows]
        if reports:
            message = f"{len(reports)} run(s)"
        elif pipeline_name is not None and not _queries.pipeline_exists(self.store, pipeline_name):
            message = f"no pipeline named {pipeline_name!r}"
        else:
            message = "no runs recorded" + (f" for {pipeline_name}" if pipeline_name else "")
        return PipelineReports(pipeline=pipeline_name, run_id=run_id, message=message, runs=reports)
