"""What a run writes to the store as it happens (through engine.store.runs): the run, its
jobs, their attempts, artifacts and metrics. The runner decides; this module records.

Two writes per job in the common case, not five: the fields of a job that starts are held
until its executor hands over the recovery record (they go in the same UPDATE: a job is
`running` in the store once something of it can be left behind), and a job's last attempt,
final row and metrics share one transaction when nothing happens between them (no deploy,
no artifacts). A runner that dies in between leaves what recovery needs: a job with a
process has its recovery record; one without has nothing to kill.

The run's owner holds a lease in the store (`lease_expires_at`), renewed where the runner
polls the cancel flag, so that a process on another machine can tell a dead runner from a
live one without its pid. When the store is lost for longer than the lease (`offline`),
the run is no longer this runner's to record job by job: the writes stop, and `finished`
makes one last attempt to end the run and every unfinished job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from engine._process import current_owner
from engine._secrets import Masker
from engine.errors import StoreError
from engine.pipeline.executors import CommandResult, RecoveryRecord
from engine.pipeline.results import ArtifactRecord, JobResult
from engine.pipeline.states import JobStatus, RunStatus
from engine.settings import get_settings
from engine.store import runs
from engine.store.base import Store

__all__ = ["RunRecords"]


class RunRecords:
    """The store writes of one run."""

    def __init__(self, store: Store, run_id: str, pipeline: str, masker: Masker) -> None:
        self.store = store
        self.run_id = run_id
        self.pipeline = pipeline
        self.masker = masker
        self._held: dict[str, dict[str, Any]] = {}           # job -> columns not written yet
        self._last_attempt: dict[str, runs.Attempt] = {}     # job -> its final attempt, written with its row
        self.lease = get_settings().PIPELINE_LEASE_SECONDS
        self.lease_until = 0.0
        self._renew_at = 0.0
        self.offline = False

    def started(self, started_at: float, jobs: Iterable[runs.NewJob], warnings: Iterable[str] = ()) -> None:
        """The run starts; `warnings` (what could not be isolated as asked) go with its context."""
        now = time.time()
        runs.start_run(self.store, self.run_id, pipeline=self.pipeline, status=RunStatus.RUNNING.value,
                       started_at=started_at, owner=current_owner(), jobs=list(jobs), warnings=list(warnings),
                       lease_until=now + self.lease)
        self._leased(now)

    def _leased(self, now: float) -> None:
        self.lease_until = now + self.lease
        self._renew_at = now + self.lease / 3

    def cancel_requested(self) -> bool:
        """Whether a cancel was requested; renews the lease when a third of it has passed."""
        now = time.time()
        if now >= self._renew_at:
            requested = runs.renew_lease(self.store, self.run_id, until=now + self.lease)
            self._leased(now)
            return requested
        return runs.cancel_requested(self.store, self.run_id)

    def lease_lost(self) -> bool:
        return time.time() >= self.lease_until

    def job(self, name: str, *, hold: bool = False, **fields: Any) -> None:
        """Set some of a job's columns; with `hold`, with the job's next write (see the module docstring)."""
        values = {**self._held.pop(name, {}), **{k: v.value if isinstance(v, JobStatus) else v
                                                 for k, v in fields.items()}}
        if hold:
            self._held[name] = values
        elif not self.offline:
            runs.update_job(self.store, self.run_id, name, **values)

    def job_running_on(self, name: str, executor: str, record: RecoveryRecord) -> None:
        """What recovery needs if this runner dies while the job runs."""
        self.job(name, executor=executor, recovery_json=json.dumps(record))

    def attempt(self, job: str, attempt: int, status: str, klass: str | None, reason: str | None, started: float,
                finished: float | None, result: CommandResult | None, *, last: bool = False) -> None:
        """Record an attempt; `last` (the job's row follows at once) writes it with that row."""
        row = runs.Attempt(
            attempt, status, klass, self.masker.mask(reason) if reason else None, started, finished,
            exit_code=None if result is None else result.exit_code,
            cpu_user=None if result is None else result.cpu_user,
            cpu_system=None if result is None else result.cpu_system,
            peak_rss_kb=None if result is None else result.peak_rss_kb,
        )
        if last:
            self._last_attempt[job] = row
            return
        if self.offline:
            return
        runs.record_attempt(
            self.store, self.run_id, job, row.attempt, status=row.status, failure_class=row.failure_class,
            reason=row.reason, started_at=row.started_at, finished_at=row.finished_at, exit_code=row.exit_code,
            cpu_user=row.cpu_user, cpu_system=row.cpu_system, peak_rss_kb=row.peak_rss_kb,
        )

    def artifacts(self, records: Iterable[ArtifactRecord]) -> None:
        if self.offline:
            return
        runs.record_artifacts(self.store, self.run_id,
                              [(r.job, r.path, r.stored_path, r.size, r.sha256) for r in records])

    def job_finished(self, res: JobResult, now: float, usage: Mapping[str, Any]) -> None:
        """The job's final row (its recovery record cleared), its last attempt if held, and, if it ran,
        its metrics: one transaction."""
        fields = {**self._held.pop(res.name, {}), "status": res.status.value, "reason": res.reason,
                  "finished_at": now, "duration": res.duration, "attempts": res.attempts, "recovery_json": None,
                  **usage}
        if res.deployment is not None:
            fields["deployment_json"] = json.dumps(res.deployment)
        attempt = self._last_attempt.pop(res.name, None)
        if self.offline:
            return
        metrics: list[runs.Metric] = []
        if res.started_at is not None:
            tags = {"stage": res.stage, "status": res.status.value}
            values = [
                ("job.duration", res.duration or 0.0, "s"), ("job.queue_wait", res.queue_wait or 0.0, "s"),
                ("job.cpu_seconds", res.cpu_seconds or 0.0, "s"), ("job.attempts", float(res.attempts), "count"),
            ]
            if res.peak_rss_mb is not None:
                values.append(("job.peak_rss", res.peak_rss_mb, "MB"))
            metrics = [runs.Metric(now, n, v, u, self.pipeline, self.run_id, res.name, tags) for n, v, u in values]
        runs.finish_job(self.store, self.run_id, res.name, fields, attempt=attempt, metrics=metrics)

    def finished(self, status: RunStatus, finished: float, duration: float, reason: str | None,
                 stage_spans: Mapping[str, tuple[float, float]]) -> None:
        if self.offline:
            # The lease is gone: end the run and whatever it left unfinished in one write, if the
            # store is back; if not, whoever reads the expired lease marks the run interrupted.
            try:
                runs.mark_interrupted(self.store, self.run_id, status=status.value,
                                      job_status=JobStatus.FAILED.value, reason=reason or status.value,
                                      now=time.time())
            except StoreError:
                pass
            return
        metrics = [runs.Metric(finished, "run.duration", duration, "s", self.pipeline, self.run_id, None,
                               {"status": status.value})]
        metrics += [runs.Metric(finished, "stage.duration", end - start, "s", self.pipeline, self.run_id, None,
                                {"stage": stage}) for stage, (start, end) in stage_spans.items()]
        runs.finish_run(self.store, self.run_id, status=status.value, finished_at=finished, duration=duration,
                        reason=reason, metrics=metrics)
