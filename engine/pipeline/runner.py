"""The scheduler: runs a PipelinePlan's job graph and records everything.

Theory of operation. Every job is one task in an anyio task group; a job task waits
on the completion events of its dependencies, decides from their outcome (and its
`if:`) whether it runs or is skipped, then waits for a worker (a CapacityLimiter of
`max_workers` tokens) and runs its attempts. A job therefore starts the moment its
last dependency finishes and a worker is free — no polling, no stage barriers.

Running a job: its workspace is filled (`_workspace`), its commands are interpolated
into a `JobCommand` and handed to the executor its `runs_on:` names (`executors`); the
runner knows nothing of shells, hosts or processes. The executor's recovery record is
stored with the job so that a later start can have that executor kill what is left.

Stopping: cancel_run, fail_fast, the pipeline timeout and cancellation of the caller
all cancel the task group's scope; each job task catches the cancellation, records the
outcome that `stop_reason` names (running → cancelled/timed_out, waiting → skipped),
and the executor kills the job's commands on the way out. A job's timeout cancels only
its own attempt. Timers, retry backoff and the cancel-flag poll run on the injected
`Clock`, so their logic is testable on virtual time.

Everything is written to the store as it happens (`_records`: run, job, attempt rows,
metrics), so a crash leaves a record that the next start marks `interrupted`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from engine._clock import Clock, SystemClock
from engine._secrets import Masker
from engine.errors import CicdError, StoreError
from engine.events import Event, EventCallback, emit
from engine.pipeline._records import RunRecords
from engine.pipeline._workspace import (
    RunPaths,
    SourceView,
    collect_artifacts,
    prepare_workspace,
    release_workspace,
    safe_name,
)
from engine.pipeline.executors import CommandResult, Executor, JobCommand, make_executor
from engine.pipeline.executors.base import OnStart
from engine.pipeline.logs import LogWriter
from engine.pipeline.results import JobResult, PipelineRun
from engine.pipeline.states import JobStatus, RunStatus, check_job_move, check_run_move
from engine.spec.model import JobPlan, PipelinePlan
from engine.store import runs
from engine.store.base import Store

__all__ = ["Runner"]


_CANCEL_POLL = 0.5
_VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MATRIX_ENV = "CICD_MATRIX_"
_NO_LIMIT = contextlib.nullcontext()   # a job whose matrix group has no max_parallel


@dataclass
class _JobState:
    plan: JobPlan
    result: JobResult
    done: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope | None = None     # cancels this job alone (its matrix group failing fast)
    stopped: tuple[JobStatus, str] | None = None   # why it was cancelled alone


class Runner:
    """Runs one pipeline run. Build with `Runner(...)`, then `await runner.run()`."""

    def __init__(
        self, plan: PipelinePlan, *, run_id: str, store: Store, paths: RunPaths, max_workers: int,
        variables: Mapping[str, str], secrets: Mapping[str, str], context: Mapping[str, str],
        on_event: EventCallback | None = None, executor: Executor | None = None,
        default_executor: str = "local", extra_env: Mapping[str, str] | None = None, clock: Clock | None = None,
        fail_fast: bool = True,
    ) -> None:
        """`executor` runs every job when given; otherwise each job's `runs_on:` (default:
        `default_executor`) names its kind in the EXECUTORS registry. `fail_fast` False turns the
        pipeline's and the matrices' fail fast off for this run.

        Raises:
            InputError: a job names an executor kind that is not registered.
        """
        self.plan = plan
        self.run_id = run_id
        self.store = store
        self.paths = paths
        self.max_workers = max_workers
        self.variables = dict(variables)
        self.secrets = dict(secrets)
        self.context = dict(context)
        self.masker = Masker(self.secrets.values())
        self.on_event = on_event
        self.clock: Clock = clock or SystemClock()
        self._fail_fast = fail_fast
        self.records = RunRecords(store, run_id, plan.name, self.masker)
        self._executors: dict[str, Executor] = {}
        for p in plan.jobs.values():
            kind = p.runs_on or default_executor
            if kind not in self._executors:
                self._executors[kind] = executor or make_executor(kind)
                self._executors[kind].set_capacity(max_workers)
        self._default_executor = default_executor
        # An executor that could not isolate as asked (a sandbox without bubblewrap) says so once, on the run.
        self.warnings = list(dict.fromkeys(w for ex in self._executors.values() if (w := getattr(ex, "warning", None))))
        self.extra_env = dict(extra_env or {})
        self.jobs = {
            n: _JobState(p, JobResult(name=n, stage=p.stage, status=JobStatus.PENDING,
                                      allow_failure=p.allow_failure, needs=list(p.needs),
                                      log_path=str(paths.log(n))))
            for n, p in plan.jobs.items()
        }
        self._order = {n: i for i, n in enumerate(self.jobs)}
        # Matrix groups: fail_fast cancels a failed job's siblings; max_parallel bounds a group.
        self._groups: dict[str, list[_JobState]] = {}
        for state in self.jobs.values():
            self._groups.setdefault(state.plan.group, []).append(state)
        self._group_limits: dict[str, anyio.CapacityLimiter] = {}
        for group, members in self._groups.items():
            limits = [m.plan.max_parallel for m in members if m.plan.max_parallel]
            if limits and min(limits) < len(members):
                self._group_limits[group] = anyio.CapacityLimiter(min(limits))
        self._base_env = {**os.environ, **self.extra_env}
        self._source = SourceView(plan.source_dir, paths.workspace_root)
        self._any_artifacts = any(p.artifacts for p in plan.jobs.values())
        self.stop_reason: tuple[JobStatus, str] | None = None
        self.run_status = RunStatus.QUEUED
        self.created_at = self.clock.time()
        self.started_at: float | None = None
        self._finished_count = 0
        self._scope: anyio.CancelScope | None = None
        self._lost_store: StoreError | None = None

    # -- public ---------------------------------------------------------------------------
    def cancel(self, reason: str = "the run was cancelled") -> None:
        if self.stop_reason is None:
            self.stop_reason = (JobStatus.CANCELLED, reason)
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> PipelineRun:
        self._record_start()
        await self._emit("run_started", f"run {self.run_id} of {self.plan.name} started "
                                        f"({len(self.jobs)} jobs, {self.max_workers} workers)")
        for warning in self.warnings:
            await self._emit("run_warning", f"warning: {warning}")
        limiter = anyio.CapacityLimiter(self.max_workers)
        outer_cancelled = False
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self.stop_reason is not None:
                    scope.cancel()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch_cancel_flag, tg.cancel_scope)
                    if self.plan.spec.timeout:
                        tg.start_soon(self._pipeline_timer, self.plan.spec.timeout, tg.cancel_scope)
                    for state in self.jobs.values():
                        tg.start_soon(self._job_task, state, limiter, tg.cancel_scope)
                    await self._all_done()
                    tg.cancel_scope.cancel()  # stops the watcher and the timer
        except anyio.get_cancelled_exc_class():
            outer_cancelled = True
            if self.stop_reason is None:
                self.stop_reason = (JobStatus.CANCELLED, "the caller cancelled the run")
            with anyio.CancelScope(shield=True):
                await self._sweep()
                await self._finish()
            raise
        finally:
            if not outer_cancelled and self.run_status not in (RunStatus.SUCCEEDED, RunStatus.FAILED,
                                                                 RunStatus.CANCELLED):
                with anyio.CancelScope(shield=True):
                    await self._sweep()
                    await self._finish()
        return self.result()

    def result(self) -> PipelineRun:
        finished = self.clock.time() if self.run_status.finished else None
        return PipelineRun(
            run_id=self.run_id, pipeline=self.plan.name, status=self.run_status,
            jobs={n: s.result for n, s in self.jobs.items()}, created_at=self.created_at,
            started_at=self.started_at, finished_at=finished,
            duration=(finished - self.started_at) if finished and self.started_at else None,
            reason=self._reason(), variables=self.masker.mask_obj(self.variables),  # type: ignore[arg-type]
            context=dict(self.context),
        )

    # -- scheduling -----------------------------------------------------------------------
    async def _all_done(self) -> None:
        for state in self.jobs.values():
            await state.done.wait()

    async def _pipeline_timer(self, timeout: float, scope: anyio.CancelScope) -> None:
        await self.clock.sleep(timeout)
        if self.stop_reason is None:
            self.stop_reason = (JobStatus.TIMED_OUT, f"the pipeline timed out after {timeout:g}s")
        scope.cancel()

    async def _watch_cancel_flag(self, scope: anyio.CancelScope) -> None:
        while True:
            await self.clock.sleep(_CANCEL_POLL)
            if self._lost_store is not None:
                self._store_lost(self._lost_store)
                return
            try:
                requested = self.records.cancel_requested()  # and renews the run's lease
            except StoreError as exc:
                if self.records.lease_lost():
                    self._store_lost(exc)
                    return
                continue
            if requested:
                self.cancel("cancelled on request (cancel_run)")
                return

    def _store_lost(self, exc: StoreError) -> None:
        """The store failed for longer than the run's lease (its writes retry that long): another
        process may take the run for dead, so it stops here, failed as infrastructure."""
        self.records.offline = True
        if self.stop_reason is None:
            self.stop_reason = (JobStatus.FAILED, f"infrastructure: {exc}")
        if self._scope is not None:
            self._scope.cancel()

    async def _job_task(self, state: _JobState, limiter: anyio.CapacityLimiter, group: anyio.CancelScope) -> None:
        plan = state.plan
        with anyio.CancelScope() as state.scope:
            if state.stopped is not None:   # its group failed fast before this task began
                state.scope.cancel()
            try:
                deps = [self.jobs[d] for d in plan.needs]
                for dep in deps:
                    await dep.done.wait()
                skip = self._skip_reason(plan, deps)
                if skip is not None:
                    await self._finish_job(state, JobStatus.SKIPPED, skip)
                    return
                ready_at = self.clock.time()
                async with self._group_limits.get(plan.group, _NO_LIMIT), limiter:
                    await self._run_job(state, ready_at)
                failed = (self._fail_fast and state.result.status in (JobStatus.FAILED, JobStatus.TIMED_OUT)
                          and not plan.allow_failure)
                if failed and self.plan.spec.fail_fast and self.stop_reason is None:
                    self.stop_reason = (JobStatus.CANCELLED, f"fail_fast: stopped after {plan.name} failed")
                    group.cancel()
                elif failed and plan.fail_fast:
                    self._fail_group_fast(state)
            except StoreError as exc:
                self._store_lost(exc)
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    await self._stop_job(state)
                raise

    def _fail_group_fast(self, failed: _JobState) -> None:
        """GitHub Actions' strategy.fail-fast: the failed job's matrix siblings that are queued or
        running are cancelled; the rest of the run goes on."""
        reason = f"fail-fast: {failed.plan.name} of the same matrix failed"
        for sibling in self._groups[failed.plan.group]:
            if sibling is failed or sibling.result.status.finished or sibling.stopped is not None:
                continue
            sibling.stopped = (JobStatus.CANCELLED, reason)
            if sibling.scope is not None:
                sibling.scope.cancel()

    def _skip_reason(self, plan: JobPlan, deps: list[_JobState]) -> str | None:
        # A dependency skipped by its own condition (not because something failed) skips this
        # job too, and that is no failure: the run can still succeed (GitHub Actions' rule).
        skipped = [d.plan.name for d in deps if d.result.status == JobStatus.SKIPPED
                   and not self._skipped_by_failure(d.result)]
        failed = [d.plan.name for d in deps if not d.result.ok and d.plan.name not in skipped]
        status = {
            "success": not failed, "failure": bool(failed), "always": True,
            "cancelled": self.stop_reason is not None and self.stop_reason[0] == JobStatus.CANCELLED,
        }
        cond = plan.condition
        if cond is None or not cond.uses_status:
            if failed:
                return "dependency " + ", ".join(failed) + " did not succeed"
            if skipped:
                return "needed job " + ", ".join(skipped) + " was skipped"
            if cond is None:
                return None
        assert cond is not None
        names: dict[str, Any] = {**self.context, "pipeline": self.plan.name, "run_id": self.run_id}
        merged = {**self.variables, **plan.variables}
        names.update(merged)
        names.update({f"vars.{k}": v for k, v in merged.items()})
        names.update({f"matrix.{k}": v for k, v in plan.matrix.items()})
        names.update({f"env.{k}": v for k, v in os.environ.items()})
        names.update({f"secrets.{k}": v for k, v in self.secrets.items()})
        if cond.evaluate(names, status):
            return None
        return self.masker.mask(f"condition {cond.text!r} is false")

    async def _run_job(self, state: _JobState, ready_at: float) -> None:
        plan, res = state.plan, state.result
        started = self.clock.time()
        res.started_at = started
        res.queue_wait = max(0.0, started - ready_at)
        self._move(state, JobStatus.RUNNING)
        workspace = self.paths.workspace(plan.name)
        writer = LogWriter(self.paths.log(plan.name), self.masker)
        executor = self._executor(plan)
        cpu_user = cpu_sys = 0.0
        peak: int | None = None
        try:
            self.records.job(plan.name, status=res.status, ready_at=ready_at, started_at=started,
                             queue_wait=res.queue_wait, hold=True)
            await self._emit("job_started", f"{plan.name} started", job=plan.name, status="running")
            if plan.deploy_stage:  # a stage with `environment:` and no jobs: engine.pipeline._deploy_stage
                await self._deploy_stage(state, writer)
                return
            try:
                inherited = ([a for d in self._ancestors(plan.name) for a in self.jobs[d].result.artifacts]
                             if self._any_artifacts else [])
                prepare = functools.partial(prepare_workspace, workspace, view=self._source, inherited=inherited,
                                            working_directory=plan.working_directory, git=plan.git)
                # Without a source it is a mkdir; with one, a walk (once per run) or a copy: off the loop.
                if self.plan.source_dir is None:
                    prepare()
                else:
                    await anyio.to_thread.run_sync(prepare)
            except OSError as exc:
                await self._infrastructure_failure(state, writer, exc, started)
                return
            env = self._job_env(plan, workspace)
            cwd = workspace / plan.working_directory if plan.working_directory else workspace
            if not plan.commands and plan.language:
                try:
                    plan = self._with_standard_build(plan, cwd)
                except CicdError as exc:
                    writer.note(str(exc))
                    res.attempts = 1
                    await self._finish_job(state, JobStatus.FAILED, self.masker.mask(str(exc)))
                    return
            command = JobCommand(
                job=plan.name, commands=tuple(_reference(c, self._values(plan)) for c in plan.commands), env=env,
                cwd=cwd, workspace=workspace, shell=plan.shell, timeout=plan.timeout, run_id=self.run_id,
                home=self.paths.job_dir(plan.name) / "home", network=plan.network, image=plan.image,
                services=tuple(plan.services), artifacts=tuple(plan.artifacts), resources=plan.resources)
            try:
                await executor.prepare(command)
            except (OSError, CicdError) as exc:
                await self._infrastructure_failure(state, writer, exc, started)
                return
            retry = plan.retry
            attempt = 0
            status, reason = JobStatus.FAILED, None
            while True:
                attempt += 1
                res.attempts = attempt
                a_start = self.clock.time()
                writer.note(f"attempt {attempt} of {retry.max + 1}")

                def remember(record: dict[str, Any], name: str = plan.name, kind: str = executor.name) -> None:
                    try:
                        self.records.job_running_on(name, kind, record)
                    except StoreError as exc:
                        # Maybe on an executor's thread: the watcher stops the run (and the
                        # executor the job) from the event loop.
                        self._lost_store = exc

                result = await self._attempt(executor, command, writer, remember)
                a_end = self.clock.time()
                if result is not None:
                    cpu_user += result.cpu_user
                    cpu_sys += result.cpu_system
                    if result.peak_rss_kb is not None:
                        peak = max(peak or 0, result.peak_rss_kb)
                    res.exit_code = result.exit_code
                if result is None:
                    klass, status, reason = "timeout", JobStatus.TIMED_OUT, f"timed out after {plan.timeout:g}s"
                    writer.note(f"timed out after {plan.timeout:g}s; the job's processes were killed")
                elif result.infrastructure_error:
                    klass, status, reason = "infrastructure", JobStatus.FAILED, result.infrastructure_error
                    writer.note(result.infrastructure_error)
                elif result.exit_code == 0:
                    klass, status, reason = None, JobStatus.SUCCEEDED, None
                else:
                    klass, status = "failure", JobStatus.FAILED
                    reason = f"exited with code {result.exit_code}"
                    if result.signal:
                        reason += f" (killed by signal {result.signal})"
                    writer.note(reason)
                final = klass is None or klass not in retry.when or attempt > retry.max
                self.records.attempt(plan.name, attempt, status.value, klass, reason, a_start, a_end, result,
                                     last=final and plan.environment is None and not plan.artifacts)
                if klass is None:
                    break
                if klass in retry.when and attempt <= retry.max:
                    delay = retry.backoff * (2 ** (attempt - 1))
                    self._move(state, JobStatus.RETRYING)
                    self.records.job(plan.name, status=res.status, attempts=attempt)
                    writer.note(f"retrying in {delay:g}s ({klass})")
                    await self._emit("job_retrying", f"{plan.name} attempt {attempt} failed ({reason}); "
                                                     f"retrying in {delay:g}s", job=plan.name, status="retrying")
                    await self.clock.sleep(delay)
                    self._move(state, JobStatus.RUNNING)
                    continue
                break
            res.cpu_seconds = cpu_user + cpu_sys
            res.peak_rss_mb = None if peak is None else round(peak / 1024, 3)
            usage = {"cpu_user": cpu_user, "cpu_system": cpu_sys, "peak_rss_kb": peak, "exit_code": res.exit_code}
            if status == JobStatus.SUCCEEDED and plan.environment is not None:
                status, reason = await self._deploy(plan, cwd, writer)
            if status == JobStatus.SUCCEEDED and plan.artifacts:
                try:
                    res.artifacts = collect_artifacts(plan.name, plan.artifacts, cwd,
                                                      self.paths.artifacts / safe_name(plan.name))
                    self.records.artifacts(res.artifacts)
                except OSError as exc:
                    status, reason = JobStatus.FAILED, f"could not collect artifacts: {exc}"
                    writer.note(reason)
                else:
                    if not res.artifacts:
                        writer.note("no file matched the artifact paths " + ", ".join(plan.artifacts))
            await self._finish_job(state, status, self.masker.mask(reason) if reason else None, **usage)
        finally:
            res.cpu_seconds = cpu_user + cpu_sys
            res.peak_rss_mb = None if peak is None else round(peak / 1024, 3)
            writer.close()
            if self.plan.source_dir is not None:
                # Ending an overlay mount waits for the kernel (tens of ms): off the loop, and shielded.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(release_workspace, workspace)

    def _executor(self, plan: JobPlan) -> Executor:
        return self._executors[plan.runs_on or self._default_executor]

    async def _attempt(self, executor: Executor, command: JobCommand, writer: LogWriter,
                       on_start: OnStart) -> CommandResult | None:
        """One run of the job's commands on its executor; None when the job's timeout stopped it."""
        timeout = command.timeout
        if not timeout:
            return await executor.run(command, writer, on_start)
        result: CommandResult | None = None
        async with anyio.create_task_group() as tg:
            async def timer() -> None:
                await self.clock.sleep(timeout)
                tg.cancel_scope.cancel()

            tg.start_soon(timer)
            result = await executor.run(command, writer, on_start)
            tg.cancel_scope.cancel()
        return result

    async def _infrastructure_failure(self, state: _JobState, writer: LogWriter, exc: Exception,
                                      started: float) -> None:
        why = str(exc) if len(str(exc)) < 500 else str(exc)[:500] + "..."
        writer.note(f"could not prepare the workspace: {why}")
        state.result.attempts = 1
        self.records.attempt(state.plan.name, 1, "failed", "infrastructure", why, started, None, None)
        await self._finish_job(state, JobStatus.FAILED, self.masker.mask(f"could not prepare the job workspace: {why}"))

    async def _stop_job(self, state: _JobState) -> None:
        """Record the outcome of a job the run stopped (cancel, fail fast, pipeline timeout)."""
        if state.result.status.finished:
            return
        kind, reason = self.stop_reason or state.stopped or (JobStatus.CANCELLED, "the run was stopped")
        if state.result.status == JobStatus.PENDING:
            await self._finish_job(state, JobStatus.SKIPPED if kind != JobStatus.CANCELLED else JobStatus.CANCELLED,
                                   reason)
        else:
            await self._finish_job(state, kind, reason)

    async def _sweep(self) -> None:
        for state in self.jobs.values():
            await self._stop_job(state)

    # -- env, deploy, builds ----------------------------------------------------------------
    def _ancestors(self, name: str) -> list[str]:
        seen: dict[str, None] = {}
        todo = list(self.jobs[name].plan.needs)
        while todo:
            d = todo.pop()
            if d not in seen:
                seen[d] = None
                todo.extend(self.jobs[d].plan.needs)
        return sorted(seen, key=self._order.__getitem__)

    def _values(self, plan: JobPlan) -> dict[str, str]:
        base = {**self.variables, **plan.matrix}
        # Job variables may refer to pipeline variables and matrix values (py: "${matrix.py}").
        return {**base, **{k: _interpolate(v, base, None) for k, v in plan.variables.items()}}

    def _job_env(self, plan: JobPlan, workspace: Path) -> dict[str, str]:
        env = dict(self._base_env)
        values = self._values(plan)
        env.update({k: _interpolate(v, values, env) for k, v in values.items()})
        # `${matrix.KEY}` in a command refers to this name (a job variable may shadow KEY itself).
        env.update({_MATRIX_ENV + k: v for k, v in plan.matrix.items()})
        env.update(self.secrets)
        env.update({
            "CI": "true", "CICD": "true", "CICD_RUN_ID": self.run_id, "CICD_PIPELINE": self.plan.name,
            "CICD_JOB": plan.name, "CICD_STAGE": plan.stage, "CICD_WORKSPACE": str(workspace),
            "CICD_BRANCH": self.context.get("branch", ""), "CICD_EVENT": self.context.get("event", ""),
        })
        return env

    async def _deploy(self, plan: JobPlan, cwd: Path, writer: LogWriter) -> tuple[JobStatus, str | None]:
        """A deploy stage's job: deploy its artifact through the orchestrator (engine.deploy)."""
        from engine.deploy import deploy_artifacts

        assert plan.environment is not None and plan.deploy is not None
        d = plan.deploy
        values = {**self._values(plan), "CICD_RUN_ID": self.run_id, "CICD_PIPELINE": self.plan.name}
        version = _interpolate(d.version, values, None)
        artifact = (cwd / d.artifact).resolve()
        if not artifact.exists():
            writer.note(f"nothing to deploy: {d.artifact} is not in the job workspace")
            return JobStatus.FAILED, f"deploy: {d.artifact} is not in the job workspace"
        writer.note(f"deploying {d.artifact} as version {version} to {plan.environment}"
                    + (f" ({plan.strategy})" if plan.strategy else ""))

        async def forward(event: Event) -> None:
            writer.note(f"deploy: {event.message}")
            await self._emit(f"deploy_{event.kind}", f"{plan.name}: {event.message}", job=plan.name,
                             status="running")

        try:
            result = await deploy_artifacts(
                self.paths.workspace_root, plan.environment, d.service, version, [str(artifact)], plan.strategy,
                forward, config_path=plan.deploy_config, run_id=self.run_id,
                rollback_on_failure=d.rollback_on_failure, store=self.store, **d.options,
            )
        except CicdError as exc:
            writer.note(f"deploy refused: {exc}")
            return JobStatus.FAILED, f"deploy refused: {exc}"
        status_text = getattr(result.status, "value", str(result.status))
        writer.note(f"deployment {result.deployment_id}: {status_text}")
        if result.ok:
            return JobStatus.SUCCEEDED, None
        why = getattr(result, "reason", None) or status_text
        return JobStatus.FAILED, f"deployment {result.deployment_id} {status_text}: {why}"

    async def _deploy_stage(self, state: _JobState, writer: LogWriter) -> None:
        from engine.pipeline._deploy_stage import run_deploy_stage

        plan = state.plan
        state.result.attempts = 1

        async def emit_deploy(kind: str, message: str) -> None:
            await self._emit(kind, message, job=plan.name, status="running")

        try:
            outcome = await run_deploy_stage(
                plan, spec_path=self.plan.spec_path, run_id=self.run_id, store=self.store,
                workspace_root=self.paths.workspace_root, release_dir=self.paths.job_dir(plan.name) / "release",
                artifacts=[a for d in plan.needs for a in self.jobs[d].result.artifacts],
                version=_interpolate(plan.deploy.version if plan.deploy else "${CICD_RUN_ID}", {
                    **self._values(plan), "CICD_RUN_ID": self.run_id, "CICD_PIPELINE": self.plan.name}, None),
                writer=writer, emit=emit_deploy,
            )
        except OSError as exc:
            await self._infrastructure_failure(state, writer, exc, state.result.started_at or self.clock.time())
            return
        state.result.deployment = outcome.deployment
        await self._finish_job(state, outcome.status, self.masker.mask(outcome.reason) if outcome.reason else None)

    def _with_standard_build(self, plan: JobPlan, project: Path) -> JobPlan:
        """A `language:` job without commands runs that language's standard build (engine.build)."""
        from engine.build import standard_build_commands

        commands = [shlex.join(argv) for argv in standard_build_commands(plan.language or "auto", project)]
        return dataclasses.replace(plan, commands=commands)

    # -- recording --------------------------------------------------------------------------
    def _record_start(self) -> None:
        self.run_status = check_run_move(self.run_id, self.run_status, RunStatus.RUNNING)
        self.started_at = self.clock.time()
        self.records.started(self.started_at, [
            runs.NewJob(name=n, stage=st.plan.stage, base_name=st.plan.base_name, matrix=st.plan.matrix,
                        needs=st.plan.needs, status=JobStatus.PENDING.value, allow_failure=st.plan.allow_failure,
                        log_path=str(self.paths.log(n)), executor=self._executor(st.plan).name)
            for n, st in self.jobs.items()], warnings=self.warnings)
        if self.warnings:
            self.context["warning"] = "; ".join(self.warnings)

    def _move(self, state: _JobState, new: JobStatus) -> None:
        state.result.status = check_job_move(state.plan.name, state.result.status, new)

    async def _finish_job(self, state: _JobState, status: JobStatus, reason: str | None, **usage: Any) -> None:
        res = state.result
        if res.status.finished:
            return
        self._move(state, status)
        res.reason = reason
        now = self.clock.time()
        res.finished_at = now
        if res.started_at is not None:
            res.duration = now - res.started_at
        self.records.job_finished(res, now, usage)
        self._finished_count += 1
        state.done.set()
        kind = "job_skipped" if status == JobStatus.SKIPPED else "job_finished"
        msg = f"{res.name} {status.value}"
        if reason:
            msg += f": {reason}"
        if res.duration is not None:
            msg += f" ({res.duration:.1f}s)"
        await self._emit(kind, msg, job=res.name, status=status.value)

    async def _finish(self) -> None:
        if self.run_status.finished:
            return
        results = [s.result for s in self.jobs.values()]
        if self.stop_reason is not None and self.stop_reason[0] == JobStatus.CANCELLED \
                and not self.stop_reason[1].startswith("fail_fast"):
            status = RunStatus.CANCELLED
        elif all(r.ok or r.status == JobStatus.SKIPPED and not self._skipped_by_failure(r) for r in results):
            ran = any(r.status != JobStatus.SKIPPED for r in results)
            status = RunStatus.SUCCEEDED if ran else RunStatus.SKIPPED
        else:
            status = RunStatus.FAILED
        self.run_status = check_run_move(self.run_id, self.run_status, status)
        finished = self.clock.time()
        duration = finished - (self.started_at or finished)
        reason = self._reason()
        self.records.finished(status, finished, duration, reason, self._stage_spans())
        await self._emit("run_finished", f"run {self.run_id} {status.value} in {duration:.1f}s"
                                         + (f": {reason}" if reason else ""), status=status.value)

    def _skipped_by_failure(self, res: JobResult) -> bool:
        return bool(res.reason and res.reason.startswith("dependency "))

    def _stage_spans(self) -> dict[str, tuple[float, float]]:
        spans: dict[str, tuple[float, float]] = {}
        for s in self.jobs.values():
            r = s.result
            if r.started_at is None or r.finished_at is None:
                continue
            lo, hi = spans.get(r.stage, (r.started_at, r.finished_at))
            spans[r.stage] = (min(lo, r.started_at), max(hi, r.finished_at))
        return spans

    def _reason(self) -> str | None:
        if self.stop_reason is not None:
            return self.stop_reason[1]
        if self.jobs and all(s.result.status == JobStatus.SKIPPED for s in self.jobs.values()):
            return "nothing ran: every job was skipped"
        failed = [s.result.name for s in self.jobs.values()
                  if s.result.status in (JobStatus.FAILED, JobStatus.TIMED_OUT) and not s.result.allow_failure]
        if failed:
            return "failed jobs: " + ", ".join(failed)
        return None

    async def _emit(self, kind: str, message: str, *, job: str | None = None, status: str | None = None) -> None:
        await emit(self.on_event, Event(
            kind=kind, subject="run", subject_id=self.run_id, message=self.masker.mask(message), job=job,
            status=status, done=self._finished_count, total=len(self.jobs)))


def _reference(command: str, values: Mapping[str, str]) -> str:
    """A command line whose `${NAME}` and `${matrix.KEY}` refer to the environment variables the
    job exports, rather than holding their values: a value is data to the shell, never code
    (`1; touch x; $(touch y)` stays one argument). Unknown names are left for the shell.

    A reference inside single quotes still gets the value, as pasting used to give it: the quote
    is closed around a double-quoted reference (`'a ${X} b'` → `'a '"${X}"' b'`), which the shell
    expands without re-reading it as code. A `#` comment is passed over, so an apostrophe in it
    opens no quote.
    """
    def name(key: str) -> str | None:
        if key.startswith("matrix.") and _ENV_NAME.match(key[len("matrix."):]):
            return _MATRIX_ENV + key[len("matrix."):]
        return key if key in values and _ENV_NAME.match(key) else None

    out: list[str] = []
    i, n = 0, len(command)
    single = double = False
    while i < n:
        c = command[i]
        if c == "$":
            m = _VAR_REF.match(command, i)
            ref = name(m.group(1)) if m else None
            if m is not None and ref is not None:
                out.append(f"'\"${{{ref}}}\"'" if single else f"${{{ref}}}")
                i = m.end()
                continue
        if single:
            single = c != "'"
        elif c == "\\" and i + 1 < n:
            out.append(command[i:i + 2])
            i += 2
            continue
        elif c == '"':
            double = not double
        elif c == "'" and not double:
            single = True
        elif c == "#" and not double and (i == 0 or command[i - 1] in " \t\n;&|("):
            end = command.find("\n", i)
            end = n if end < 0 else end
            out.append(command[i:end])
            i = end
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _interpolate(text: str, values: Mapping[str, str], env: Mapping[str, str] | None) -> str:
    """Replace ${NAME} with a variable or matrix value; unknown names are left for the shell."""
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key.startswith("matrix."):
            key = key[len("matrix."):]
        if key in values:
            return values[key]
        if env is not None and key in env:
            return env[key]
        return m.group(0)

    return _VAR_REF.sub(sub, text)

