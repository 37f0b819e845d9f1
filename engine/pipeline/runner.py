"""The scheduler: runs a PipelinePlan's job graph for real and records everything.

Theory of operation. Every job is one task in an anyio task group; a job task waits
on the completion events of its dependencies, decides from their outcome (and its
`if:`) whether it runs or is skipped, then waits for a worker (a CapacityLimiter of
`max_workers` tokens) and runs its attempts. A job therefore starts the moment its
last dependency finishes and a worker is free — no polling, no stage barriers.

Stopping: cancel_run, fail_fast, the pipeline timeout and cancellation of the caller
all cancel the task group's scope; each job task catches the cancellation, records the
outcome that `stop_reason` names (running → cancelled/timed_out, waiting → skipped),
and the executor kills the job's process group on the way out.

Everything is written to the store as it happens (run, job, attempt rows, metrics),
so a crash leaves a record that the next start marks `interrupted`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from engine._process import current_owner
from engine._secrets import Masker
from engine.errors import CicdError
from engine.events import Event, EventCallback, emit
from engine.pipeline.executors import LocalExecutor
from engine.pipeline.logs import LogWriter
from engine.pipeline.results import ArtifactRecord, JobResult, PipelineRun
from engine.pipeline.states import JobStatus, RunStatus, check_job_move
from engine.spec.model import JobPlan, PipelinePlan
from engine.store.base import Store

__all__ = ["DEFAULT_SOURCE_EXCLUDES", "RunPaths", "Runner", "safe_name"]

log = logging.getLogger(__name__)

DEFAULT_SOURCE_EXCLUDES = (
    ".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
    ".cicd", "*.pyc",
)
_DEFAULT_IGNORE = shutil.ignore_patterns(*DEFAULT_SOURCE_EXCLUDES)
_CANCEL_POLL = 0.5
_INSERT_METRIC = (
    "INSERT INTO metrics (ts, name, value, unit, pipeline, run_id, job, tags_json) VALUES (?,?,?,?,?,?,?,?)"
)
_SHELL_SYNTAX = re.compile(r"""[\n;&|<>()$`\\'"*?\[\]#~=%{}!^]""")
_SHELL_BUILTINS = frozenset({
    "cd", "export", "set", "unset", "source", ".", "eval", "exec", "exit", "alias", "ulimit", "umask", "trap",
    "wait", "read", "shift", "return", "break", "continue", "local", "declare", "typeset", "readonly",
    "if", "then", "else", "fi", "for", "while", "until", "do", "done", "case", "esac", "function", "time",
})
_VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def safe_name(name: str) -> str:
    """A job name as a file name (matrix values may hold any character)."""
    return re.sub(r"[^A-Za-z0-9_.=,\[\]\-]", "_", name)[:200]


@dataclass(frozen=True)
class RunPaths:
    root: Path           # <workspace>/runs/<run_id>
    artifacts: Path      # <artifact root>/<run_id>/artifacts

    @property
    def workspace_root(self) -> Path:
        return self.root.parent.parent

    def job_dir(self, job: str) -> Path:
        return self.root / "jobs" / safe_name(job)

    def log(self, job: str) -> Path:
        return self.root / "logs" / f"{safe_name(job)}.log"


@dataclass
class _JobState:
    plan: JobPlan
    result: JobResult
    done: anyio.Event = field(default_factory=anyio.Event)
    pgid: int | None = None


class Runner:
    """Runs one pipeline run. Build with `Runner(...)`, then `await runner.run()`."""

    def __init__(
        self, plan: PipelinePlan, *, run_id: str, store: Store, paths: RunPaths, max_workers: int,
        variables: Mapping[str, str], secrets: Mapping[str, str], context: Mapping[str, str],
        on_event: EventCallback | None = None, executor: LocalExecutor | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
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
        self.executor = executor or LocalExecutor()
        self.executor.set_capacity(max_workers)
        self.extra_env = dict(extra_env or {})
        self.jobs = {
            n: _JobState(p, JobResult(name=n, stage=p.stage, status=JobStatus.PENDING,
                                      allow_failure=p.allow_failure, needs=list(p.needs),
                                      log_path=str(paths.log(n))))
            for n, p in plan.jobs.items()
        }
        self._order = {n: i for i, n in enumerate(self.jobs)}
        self._base_env = {**os.environ, **self.extra_env}
        self.stop_reason: tuple[JobStatus, str] | None = None
        self.run_status = RunStatus.QUEUED
        self.created_at = time.time()
        self.started_at: float | None = None
        self._finished_count = 0
        self._scope: anyio.CancelScope | None = None

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
        finished = time.time() if self.run_status.finished else None
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
        await anyio.sleep(timeout)
        if self.stop_reason is None:
            self.stop_reason = (JobStatus.TIMED_OUT, f"the pipeline timed out after {timeout:g}s")
        scope.cancel()

    async def _watch_cancel_flag(self, scope: anyio.CancelScope) -> None:
        while True:
            await anyio.sleep(_CANCEL_POLL)
            row = self.store.query_one("SELECT cancel_requested FROM runs WHERE run_id = ?", (self.run_id,))
            if row is not None and row["cancel_requested"]:
                self.cancel("cancelled on request (cancel_run)")
                return

    async def _job_task(self, state: _JobState, limiter: anyio.CapacityLimiter, group: anyio.CancelScope) -> None:
        plan = state.plan
        try:
            deps = [self.jobs[d] for d in plan.needs]
            for dep in deps:
                await dep.done.wait()
            skip = self._skip_reason(plan, deps)
            if skip is not None:
                await self._finish_job(state, JobStatus.SKIPPED, skip)
                return
            ready_at = time.time()
            async with limiter:
                await self._run_job(state, ready_at)
            if (self.plan.spec.fail_fast and state.result.status in (JobStatus.FAILED, JobStatus.TIMED_OUT)
                    and not plan.allow_failure and self.stop_reason is None):
                self.stop_reason = (JobStatus.CANCELLED, f"fail_fast: stopped after {plan.name} failed")
                group.cancel()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._stop_job(state)
            raise

    def _skip_reason(self, plan: JobPlan, deps: list[_JobState]) -> str | None:
        failed = [d.plan.name for d in deps if not d.result.ok]
        status = {
            "success": not failed, "failure": bool(failed), "always": True,
            "cancelled": self.stop_reason is not None and self.stop_reason[0] == JobStatus.CANCELLED,
        }
        cond = plan.condition
        if cond is None or not cond.uses_status:
            if failed:
                return "dependency " + ", ".join(failed) + " did not succeed"
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
        started = time.time()
        res.started_at = started
        res.queue_wait = max(0.0, started - ready_at)
        self._move(state, JobStatus.RUNNING)
        workspace = self.paths.job_dir(plan.name) / "workspace"
        writer = LogWriter(self.paths.log(plan.name), self.masker)
        cpu_user = cpu_sys = 0.0
        peak: int | None = None
        try:
            self._job_row(plan.name, status=res.status, ready_at=ready_at, started_at=started,
                          queue_wait=res.queue_wait)
            await self._emit("job_started", f"{plan.name} started", job=plan.name, status="running")
            try:
                self._prepare_workspace(plan, workspace)
            except OSError as exc:
                why = str(exc) if len(str(exc)) < 500 else str(exc)[:500] + "..."
                writer.note(f"could not prepare the workspace: {why}")
                res.attempts = 1
                self._attempt_row(plan.name, 1, "failed", "infrastructure", why, started, None, None)
                await self._finish_job(state, JobStatus.FAILED,
                                       self.masker.mask(f"could not prepare the job workspace: {why}"))
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
            script = self._script(plan)
            argv = self._direct_argv(plan)
            retry = plan.retry
            attempt = 0
            status, reason = JobStatus.FAILED, None
            while True:
                attempt += 1
                res.attempts = attempt
                a_start = time.time()
                writer.note(f"attempt {attempt} of {retry.max + 1}")

                def remember(pgid: int, name: str = plan.name) -> None:
                    self.jobs[name].pgid = pgid
                    self._job_row(name, pgid=pgid)

                with anyio.move_on_after(plan.timeout if plan.timeout else float("inf")) as timer:
                    if argv is not None:
                        writer.feed(f"$ {shlex.join(argv)}\n".encode())
                    result = await self.executor.run(script, cwd=cwd, env=env, log=writer, shell=plan.shell, argv=argv,
                                                     on_start=remember)
                a_end = time.time()
                if not timer.cancelled_caught:
                    cpu_user += result.cpu_user
                    cpu_sys += result.cpu_system
                    if result.peak_rss_kb is not None:
                        peak = max(peak or 0, result.peak_rss_kb)
                    res.exit_code = result.exit_code
                if timer.cancelled_caught:
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
                self._attempt_row(plan.name, attempt, status.value, klass, reason, a_start, a_end,
                                  None if timer.cancelled_caught else result)
                if klass is None:
                    break
                if klass in retry.when and attempt <= retry.max:
                    delay = retry.backoff * (2 ** (attempt - 1))
                    self._move(state, JobStatus.RETRYING)
                    self._job_row(plan.name, status=res.status, attempts=attempt)
                    writer.note(f"retrying in {delay:g}s ({klass})")
                    await self._emit("job_retrying", f"{plan.name} attempt {attempt} failed ({reason}); "
                                                     f"retrying in {delay:g}s", job=plan.name, status="retrying")
                    await anyio.sleep(delay)
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
                    res.artifacts = self._collect_artifacts(plan, cwd)
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

    async def _stop_job(self, state: _JobState) -> None:
        """Record the outcome of a job the run stopped (cancel, fail fast, pipeline timeout)."""
        if state.result.status.finished:
            return
        kind, reason = self.stop_reason or (JobStatus.CANCELLED, "the run was stopped")
        if state.result.status == JobStatus.PENDING:
            await self._finish_job(state, JobStatus.SKIPPED if kind != JobStatus.CANCELLED else JobStatus.CANCELLED,
                                   reason)
        else:
            await self._finish_job(state, kind, reason)

    async def _sweep(self) -> None:
        for state in self.jobs.values():
            await self._stop_job(state)

    # -- workspace, env, artifacts ---------------------------------------------------------
    def _prepare_workspace(self, plan: JobPlan, workspace: Path) -> None:
        if workspace.exists():  # a re-run of the same job id
            shutil.rmtree(workspace)
        src = self.plan.source_dir
        if src is not None:
            shutil.copytree(src, workspace, symlinks=True, ignore=self._source_ignore)
        else:
            workspace.mkdir(parents=True)
        # Artifacts of every job this one depends on (directly or not), at their relative paths.
        for dep in self._ancestors(plan.name):
            for art in self.jobs[dep].result.artifacts:
                dest = workspace / art.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(art.stored_path, dest)
        if plan.working_directory:
            (workspace / plan.working_directory).mkdir(parents=True, exist_ok=True)

    def _source_ignore(self, directory: str, names: list[str]) -> set[str]:
        """What not to copy from the source: tool caches, and the engine's own state when it lives inside."""
        ignored = set(_DEFAULT_IGNORE(directory, names))
        state = self.paths.workspace_root.resolve()
        if state.is_relative_to(Path(directory).resolve()):
            ignored.update(n for n in names if (Path(directory) / n).resolve() == state)
        return ignored

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

    def _with_standard_build(self, plan: JobPlan, project: Path) -> JobPlan:
        """A `language:` job without commands runs that language's standard build (engine.build)."""
        from engine.build import standard_build_commands

        commands = [shlex.join(argv) for argv in standard_build_commands(plan.language or "auto", project)]
        return dataclasses.replace(plan, commands=commands)

    def _direct_argv(self, plan: JobPlan) -> list[str] | None:
        """The argv of a job that is one simple command (no shell syntax at all), else None.

        Like make, such a command is executed without a shell: a shell costs several
        milliseconds per job, which dominates short jobs. Anything with quoting, variables,
        globs, redirections, operators or a shell builtin keeps the shell.
        """
        if len(plan.commands) != 1:
            return None
        text = _interpolate(plan.commands[0], self._values(plan), None).strip()
        if not text or _SHELL_SYNTAX.search(text):
            return None
        argv = text.split()
        if argv[0] in _SHELL_BUILTINS or shutil.which(argv[0]) is None and "/" not in argv[0]:
            return None
        return argv

    def _script(self, plan: JobPlan) -> str:
        values = self._values(plan)
        lines = []
        for cmd in plan.commands:
            text = _interpolate(cmd, values, None)
            echo = text if len(text) < 2000 else text[:2000] + "..."
            lines.append(f"printf '%s\\n' {_sh_quote('$ ' + echo.splitlines()[0] if echo else '$')}")
            lines.append(text)
        return "\n".join(lines) + "\n"

    def _collect_artifacts(self, plan: JobPlan, cwd: Path) -> list[ArtifactRecord]:
        dest_root = self.paths.artifacts / safe_name(plan.name)
        root = cwd.resolve()
        records: list[ArtifactRecord] = []
        seen: set[str] = set()
        for pattern in plan.artifacts:
            # The root may hold glob characters itself (matrix job names have brackets).
            for match in sorted(glob.glob(os.path.join(glob.escape(str(root)), pattern), recursive=True)):
                p = Path(match)
                files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else []
                for f in files:
                    real = f.resolve()
                    if not real.is_relative_to(root):
                        continue  # a symlink pointing out of the workspace is not collected
                    rel = (f if f.is_relative_to(root) else real).relative_to(root).as_posix()
                    if rel in seen or any(fnmatch.fnmatch(part, "__pycache__") for part in Path(rel).parts):
                        continue
                    seen.add(rel)
                    target = dest_root / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(real, target)
                    digest = _sha256(target)
                    records.append(ArtifactRecord(job=plan.name, path=rel, stored_path=str(target),
                                                  size=target.stat().st_size, sha256=digest))
        if records:
            self.store.executemany(
                "INSERT OR REPLACE INTO artifacts (run_id, job, path, stored_path, size, sha256) VALUES (?,?,?,?,?,?)",
                [(self.run_id, r.job, r.path, r.stored_path, r.size, r.sha256) for r in records],
            )
        return records

    # -- recording --------------------------------------------------------------------------
    def _record_start(self) -> None:
        self.started_at = time.time()
        self.run_status = RunStatus.RUNNING
        pid, host, identity = current_owner()
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE runs SET status = ?, started_at = ?, owner_pid = ?, owner_host = ?, owner_start = ? "
                "WHERE run_id = ?",
                (RunStatus.RUNNING.value, self.started_at, pid, host, identity,
                 self.run_id),
            )
            conn.executemany(
                "INSERT INTO jobs (run_id, name, pipeline, stage, base_name, matrix_json, needs_json, status, "
                "allow_failure, log_path) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(self.run_id, n, self.plan.name, s.plan.stage, s.plan.base_name, json.dumps(s.plan.matrix),
                  json.dumps(s.plan.needs), JobStatus.PENDING.value, int(s.plan.allow_failure),
                  str(self.paths.log(n))) for n, s in self.jobs.items()],
            )

    def _job_row(self, name: str, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{k} = ?" for k in fields)
        values = [v.value if isinstance(v, JobStatus) else v for v in fields.values()]
        self.store.execute(f"UPDATE jobs SET {cols} WHERE run_id = ? AND name = ?", (*values, self.run_id, name))

    def _attempt_row(self, job: str, attempt: int, status: str, klass: str | None, reason: str | None,
                     started: float, finished: float | None, result: Any) -> None:
        self.store.execute(
            "INSERT OR REPLACE INTO attempts (run_id, job, attempt, status, failure_class, reason, started_at, "
            "finished_at, duration, exit_code, cpu_user, cpu_system, peak_rss_kb) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (self.run_id, job, attempt, status, klass, self.masker.mask(reason) if reason else None, started,
             finished, (finished - started) if finished else None,
             getattr(result, "exit_code", None), getattr(result, "cpu_user", None),
             getattr(result, "cpu_system", None), getattr(result, "peak_rss_kb", None)),
        )

    def _move(self, state: _JobState, new: JobStatus) -> None:
        state.result.status = check_job_move(state.plan.name, state.result.status, new)

    async def _finish_job(self, state: _JobState, status: JobStatus, reason: str | None, **usage: Any) -> None:
        res = state.result
        if res.status.finished:
            return
        self._move(state, status)
        res.reason = reason
        now = time.time()
        res.finished_at = now
        if res.started_at is not None:
            res.duration = now - res.started_at
        self._job_row(res.name, status=status, reason=reason, finished_at=now, duration=res.duration,
                      attempts=res.attempts, pgid=None, **usage)
        if res.started_at is not None:
            tags = json.dumps({"stage": res.stage, "status": status.value})
            rows = [
                ("job.duration", res.duration or 0.0, "s"), ("job.queue_wait", res.queue_wait or 0.0, "s"),
                ("job.cpu_seconds", res.cpu_seconds or 0.0, "s"), ("job.attempts", float(res.attempts), "count"),
            ]
            if res.peak_rss_mb is not None:
                rows.append(("job.peak_rss", res.peak_rss_mb, "MB"))
            self.store.executemany(
                _INSERT_METRIC,
                [(now, n, v, u, self.plan.name, self.run_id, res.name, tags) for n, v, u in rows],
            )
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
            status = RunStatus.SUCCEEDED
        else:
            status = RunStatus.FAILED
        self.run_status = status
        finished = time.time()
        duration = finished - (self.started_at or finished)
        reason = self._reason()
        with self.store.transaction() as conn:
            conn.execute("UPDATE runs SET status = ?, finished_at = ?, duration = ?, reason = ? WHERE run_id = ?",
                         (status.value, finished, duration, reason, self.run_id))
            metrics = [(finished, "run.duration", duration, "s", self.plan.name, self.run_id, None,
                        json.dumps({"status": status.value}))]
            for stage, (start, end) in self._stage_spans().items():
                metrics.append((finished, "stage.duration", end - start, "s", self.plan.name, self.run_id, None,
                                json.dumps({"stage": stage})))
            conn.executemany(
                _INSERT_METRIC,
                metrics,
            )
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
        failed = [s.result.name for s in self.jobs.values()
                  if s.result.status in (JobStatus.FAILED, JobStatus.TIMED_OUT) and not s.result.allow_failure]
        if failed:
            return "failed jobs: " + ", ".join(failed)
        return None

    async def _emit(self, kind: str, message: str, *, job: str | None = None, status: str | None = None) -> None:
        await emit(self.on_event, Event(
            kind=kind, subject="run", subject_id=self.run_id, message=self.masker.mask(message), job=job,
            status=status, done=self._finished_count, total=len(self.jobs)))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            h.update(block)
    return h.hexdigest()


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


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
