"""PipelineManager: the engine's front door for pipelines (create, run, inspect, cancel)."""

from __future__ import annotations

import json
import os
import re
import secrets as _secrets
import socket
import subprocess
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from engine._process import owner_alive
from engine._secrets import SECRET_NAME, Masker, read_secrets_file
from engine._sync import blocking
from engine.errors import InputError, NotFoundError, SpecError, SpecIssue
from engine.events import EventCallback
from engine.pipeline._workspace import RunPaths, safe_name
from engine.pipeline.executors import Executor, make_executor
from engine.pipeline.logs import LogSlice, read_log_slice
from engine.pipeline.results import ArtifactRecord, JobResult, PipelineRun
from engine.pipeline.runner import Runner
from engine.pipeline.states import JobStatus, RunStatus, check_run_move
from engine.settings import Settings, resolve_settings
from engine.spec.model import VAR_RE, PipelinePlan, load_pipeline
from engine.store import Store, open_store, runs

__all__ = ["PipelineManager", "recover_interrupted", "run_pipeline"]

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + _secrets.token_hex(3)


def recover_interrupted(store: Store) -> list[str]:
    """Mark runs whose runner died as `interrupted` and kill what they left running.

    A runner is dead when its process on this host is gone, or when its lease ran out
    (wherever it ran). Each job that was running left its executor's name and recovery
    record; that executor kills what the record names — on the runner's own host, at once
    or at that host's next recovery. Returns the run ids it marked.
    """
    marked: list[str] = []
    executors: dict[str, Executor] = {}

    def recover(kind: str | None, record: dict[str, Any]) -> None:
        kind = kind or "local"
        if kind not in executors:
            try:
                executors[kind] = make_executor(kind)
            except InputError:   # an executor this process does not have (a plugin, a test's fake)
                return
        executors[kind].recover(record)

    here = socket.gethostname()
    for row in runs.unfinished_runs(store):
        if owner_alive(row):
            continue
        run_id = row["run_id"]
        status = check_run_move(run_id, RunStatus(row["status"]), RunStatus.INTERRUPTED)
        # What a runner on another machine left (process groups, containers) is that machine's
        # to kill: its records stay for its next start there (the loop below).
        local = not row["owner_host"] or row["owner_host"] == here
        if local:
            why = f"interrupted: the runner process (pid {row['owner_pid']}) is gone"
            for _job, kind, record in runs.job_recovery_records(store, run_id):
                recover(kind, record)
        else:
            why = f"interrupted: the runner on {row['owner_host']} stopped renewing its lease"
        runs.mark_interrupted(store, run_id, status=status.value, job_status=JobStatus.CANCELLED.value, reason=why,
                              now=time.time(), keep_recovery=not local)
        marked.append(run_id)
    for run_id, job, kind, record in runs.orphaned_recovery_records(store, here):
        recover(kind, record)
        runs.clear_recovery_record(store, run_id, job)
    return marked


def _git_branch(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "--abbrev-ref", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() != "HEAD" else ""


class PipelineManager:
    """Create, run, inspect and cancel pipelines; every run is kept in the store.

    `PipelineManager(workspace_dir=...)` uses `<workspace_dir>/state.db` and
    `<workspace_dir>/runs/`; without it, `PIPELINE_WORKSPACE` (see engine.settings).
    """

    def __init__(
        self, workspace_dir: str | os.PathLike[str] | None = None, *, settings: Settings | None = None,
        store: Store | None = None, max_workers: int | None = None, executor: Executor | None = None,
    ) -> None:
        """`executor` runs every job when given (a fake, in tests); otherwise each job's `runs_on:`
        picks one from the EXECUTORS registry, PIPELINE_EXECUTOR for jobs that name none."""
        self.settings = resolve_settings(workspace_dir, settings)
        self.workspace = self.settings.workspace
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.store: Store = store or open_store(self.workspace)
        self.max_workers = max_workers or self.settings.PIPELINE_MAX_WORKERS
        self.executor = executor
        self._active: dict[str, Runner] = {}
        recover_interrupted(self.store)

    # -- pipelines --------------------------------------------------------------------------
    def create_pipeline(self, source: str | os.PathLike[str] | Mapping[str, Any], *,
                        skip_unsupported: bool = False) -> PipelinePlan:
        """Load and check a pipeline (file path, YAML text or mapping) and register it by name.

        A GitHub Actions workflow file is imported (engine.interop); its jobs that cannot
        run here fail with the reason, or are skipped with `skip_unsupported`.

        Raises:
            SpecError: the pipeline is invalid (file:line:col, field, message).
            NotFoundError: the file does not exist.
        """
        plan = self._load(source, skip_unsupported)
        runs.save_pipeline(self.store, plan.name, source_path=plan.spec_path, spec_json=plan.spec_json(),
                           updated_at=time.time())
        return plan

    def list_pipelines(self) -> list[str]:
        return runs.pipeline_names(self.store)

    def _load(self, source: str | os.PathLike[str] | Mapping[str, Any], skip_unsupported: bool = False,
              ) -> PipelinePlan:
        if isinstance(source, Mapping):
            return load_pipeline(source)
        text = os.fspath(source)
        if "\n" in text:
            return load_pipeline(text)
        path = Path(text)
        if _is_file(path):
            from engine.interop import is_github_workflow, load_github_workflow, pipeline_data

            if is_github_workflow(path):
                spec = load_github_workflow(path, skip_unsupported=skip_unsupported)
                plan = load_pipeline(pipeline_data(spec))
                return PipelinePlan(spec=plan.spec, jobs=plan.jobs, source_dir=plan.source_dir,
                                    spec_path=str(path.resolve()))
            return load_pipeline(path)
        return self._by_name(text)

    def _by_name(self, name: str) -> PipelinePlan:
        registered = runs.registered_pipeline(self.store, name)
        if registered is not None:
            source_path, spec_json = registered
            if source_path and Path(source_path).is_file():
                return load_pipeline(Path(source_path))  # the file may have changed: reload it
            return load_pipeline(json.loads(spec_json))
        config = self.settings.PIPELINE_CONFIG_PATH
        if config is not None:
            config = Path(config).expanduser()
            candidates = [config] if config.is_file() else [config / f"{name}.yaml", config / f"{name}.yml"]
            for cand in candidates:
                if _is_file(cand):
                    plan = load_pipeline(cand)
                    if plan.name == name or cand.stem == name:
                        return plan
        known = self.list_pipelines()
        raise NotFoundError(
            f"no pipeline file or registered pipeline named {name!r}; registered: "
            + (", ".join(known) if known else "none") + ". Give a path to a pipeline YAML file, or register one first."
        )

    # -- runs -------------------------------------------------------------------------------
    async def arun_pipeline(
        self, source: str | os.PathLike[str] | Mapping[str, Any], variables: Mapping[str, Any] | None = None, *,
        on_event: EventCallback | None = None, branch: str | None = None, event: str | None = None,
        run_id: str | None = None, max_workers: int | None = None, skip_unsupported: bool = False,
    ) -> PipelineRun:
        """Run a pipeline to the end and return its result. Cancelling the caller cancels the run.

        Raises:
            SpecError, NotFoundError: the pipeline is invalid or unknown (nothing ran).
            InputError: a secret has no value, a variable name is invalid, or PIPELINE_EXECUTOR names
                no registered executor.
        """
        plan = self.create_pipeline(source, skip_unsupported=skip_unsupported)
        overrides = {str(k): _stringify(v) for k, v in (variables or {}).items()}
        for key, value in overrides.items():
            if not re.match(VAR_RE, key):
                raise InputError(f"variable name {key!r} is invalid: it must match {VAR_RE}")
            if "\x00" in value:   # a process environment cannot hold it: refused now, not as a failed job
                raise InputError(f"variable {key} contains a NUL character, which an environment variable cannot hold")
        secret_values = self._secrets(plan)
        # A caller (an agent through the server) passes credentials as run variables without
        # declaring them in the file; they must not reach logs or the stored run in clear.
        secret_values.update({k: v for k, v in overrides.items()
                              if SECRET_NAME.search(k) and len(v) >= 4 and k not in secret_values})
        merged = {k: _stringify(v) for k, v in plan.spec.variables.items()}
        merged.update(overrides)
        context = {
            "branch": branch or overrides.get("branch") or _git_branch(plan.source_dir) or "",
            "event": event or overrides.get("event") or "manual",
            "provider": self.settings.CI_PROVIDER,
        }
        context["ref"] = f"refs/heads/{context['branch']}" if context["branch"] else ""
        if run_id is not None and not _RUN_ID.match(run_id):
            raise InputError(f"run id {run_id!r} is invalid")
        run_id = run_id or _new_run_id()
        workers = max_workers or plan.spec.max_workers or self.max_workers
        masker = Masker(secret_values.values())
        root = self.workspace / "runs" / run_id
        paths = RunPaths(root=root, artifacts=self.settings.artifact_root / run_id / "artifacts")
        # Built before the run is recorded: an unknown executor kind refuses the run, it does not strand it.
        runner = Runner(plan, run_id=run_id, store=self.store, paths=paths, max_workers=workers,
                        variables=merged, secrets=secret_values, context=context, on_event=on_event,
                        executor=self.executor, default_executor=self.settings.PIPELINE_EXECUTOR)
        runs.insert_run(self.store, run_id, pipeline=plan.name, status=RunStatus.QUEUED.value, created_at=time.time(),
                        variables=masker.mask_obj(merged), context=context,  # type: ignore[arg-type]
                        spec_path=plan.spec_path, spec_json=plan.spec_json(), max_workers=workers)
        self._active[run_id] = runner
        try:
            return await runner.run()
        finally:
            self._active.pop(run_id, None)

    def run_pipeline(
        self, source: str | os.PathLike[str] | Mapping[str, Any], variables: Mapping[str, Any] | None = None, *,
        on_event: EventCallback | None = None, branch: str | None = None, event: str | None = None,
        max_workers: int | None = None, skip_unsupported: bool = False,
    ) -> PipelineRun:
        """Synchronous `arun_pipeline` (inside a running event loop it runs in a thread of its own)."""
        return blocking(partial(self.arun_pipeline, source, variables, on_event=on_event, branch=branch,
                                 event=event, max_workers=max_workers, skip_unsupported=skip_unsupported))

    def _secrets(self, plan: PipelinePlan) -> dict[str, str]:
        from_file = read_secrets_file(self.settings.PIPELINE_SECRETS_FILE)
        values, missing = {}, []
        for name in plan.spec.secrets:
            value = os.environ.get(name, from_file.get(name))
            if value is None or value == "":
                missing.append(name)
            else:
                values[name] = value
        if missing:
            raise SpecError([SpecIssue(
                "secret " + ", ".join(missing) + " has no value: set it in the environment or in the file named "
                "by PIPELINE_SECRETS_FILE (KEY=VALUE lines)", file=plan.spec_path, field="secrets")])
        return values

    def cancel_run(self, run_id: str) -> bool:
        """Ask a run to stop (in this process at once, in another within a second).

        Returns True when the run was still going, False when it had already ended.

        Raises:
            NotFoundError: no such run.
        """
        row = self._run_row(run_id)
        if RunStatus(row["status"]).finished:
            return False
        runs.request_cancel(self.store, run_id)
        runner = self._active.get(run_id)
        if runner is not None:
            runner.cancel("cancelled on request (cancel_run)")
        return True

    def _run_row(self, run_id: str) -> Any:
        row = runs.get_run(self.store, run_id)
        if row is not None and row["status"] in ("queued", "running") and row["owner_host"] \
                and not owner_alive(row):
            # Its runner died (here) or stopped renewing its lease (anywhere) since this
            # process started: the reader sees it interrupted rather than running forever.
            recover_interrupted(self.store)
            row = runs.get_run(self.store, run_id)
        if row is None:
            recent = runs.recent_run_ids(self.store, 5)
            raise NotFoundError(f"no run {run_id!r}; most recent runs: " + (", ".join(recent) or "none"))
        return row

    def get_run(self, run_id: str) -> PipelineRun:
        """The stored state of a run (live while it runs).

        Raises:
            NotFoundError: no such run.
        """
        row = self._run_row(run_id)
        return self._to_run(row)

    def list_runs(self, pipeline: str | None = None, limit: int = 50, status: str | None = None) -> list[PipelineRun]:
        rows = runs.list_runs(self.store, pipeline=pipeline, status=status, limit=max(1, min(int(limit), 1000)))
        return [self._to_run(r, with_jobs=False) for r in rows]

    def _to_run(self, row: Any, *, with_jobs: bool = True) -> PipelineRun:
        jobs: dict[str, JobResult] = {}
        if with_jobs:
            arts: dict[str, list[ArtifactRecord]] = {}
            for a in runs.run_artifacts(self.store, row["run_id"]):
                arts.setdefault(a["job"], []).append(
                    ArtifactRecord(job=a["job"], path=a["path"], stored_path=a["stored_path"], size=a["size"],
                                   sha256=a["sha256"]))
            for j in runs.run_jobs(self.store, row["run_id"]):
                cpu = None if j["cpu_user"] is None else (j["cpu_user"] or 0) + (j["cpu_system"] or 0)
                jobs[j["name"]] = JobResult(
                    name=j["name"], stage=j["stage"], status=JobStatus(j["status"]), attempts=j["attempts"],
                    exit_code=j["exit_code"], reason=j["reason"], started_at=j["started_at"],
                    finished_at=j["finished_at"], duration=j["duration"], queue_wait=j["queue_wait"],
                    cpu_seconds=cpu,
                    peak_rss_mb=None if j["peak_rss_kb"] is None else round(j["peak_rss_kb"] / 1024, 3),
                    allow_failure=bool(j["allow_failure"]), needs=json.loads(j["needs_json"]), log_path=j["log_path"],
                    artifacts=arts.get(j["name"], []),
                )
        return PipelineRun(
            run_id=row["run_id"], pipeline=row["pipeline"], status=RunStatus(row["status"]), jobs=jobs,
            created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
            duration=row["duration"], reason=row["reason"], variables=json.loads(row["variables_json"]),
            context=json.loads(row["context_json"]),
        )

    def read_log(self, run_id: str, job: str, *, tail: int | None = None, grep: str | None = None,
                 max_lines: int = 200, max_bytes: int = 64 * 1024) -> LogSlice:
        """A bounded slice of a job's log; says what was cut.

        Raises:
            NotFoundError: no such run or job.
            InputError: grep is not a valid regular expression.
        """
        self._run_row(run_id)
        log_path = runs.job_log_path(self.store, run_id, job)
        if log_path is None:
            names = runs.job_names(self.store, run_id)
            if job not in names:
                raise NotFoundError(f"run {run_id} has no job {job!r}; jobs: " + ", ".join(names))
        path = Path(log_path or (self.workspace / "runs" / run_id / "logs" / f"{safe_name(job)}.log"))
        try:
            return read_log_slice(path, job, tail=tail, grep=grep, max_lines=max_lines, max_bytes=max_bytes)
        except ValueError as exc:
            raise InputError(str(exc)) from exc


def _is_file(path: Path) -> bool:
    """Path.is_file, False for a name the OS refuses (too long, ...) rather than an OSError."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run_pipeline(config_path: str | os.PathLike[str], variables: Mapping[str, Any] | None = None,
                 workspace_dir: str | os.PathLike[str] | None = None) -> PipelineRun:
    """Convenience: run the pipeline file at `config_path` with the default settings."""
    return PipelineManager(workspace_dir).run_pipeline(config_path, variables)
