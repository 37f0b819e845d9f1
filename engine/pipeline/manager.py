"""PipelineManager: the engine's front door for pipelines (create, run, inspect, cancel)."""

from __future__ import annotations

import json
import os
import re
import secrets as _secrets
import subprocess
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from engine._confined import read_confined
from engine._process import owner_alive
from engine._secrets import SECRET_NAME, Masker, read_secrets_file
from engine._sync import blocking
from engine.errors import InputError, NotFoundError, SpecError, SpecIssue
from engine.events import EventCallback
from engine.pipeline._recovery import recover_interrupted
from engine.pipeline._workspace import RunPaths, safe_name
from engine.pipeline.executors import Executor
from engine.pipeline.logs import LogSlice, read_log_slice
from engine.pipeline.results import ArtifactRecord, JobResult, PipelineRun
from engine.pipeline.runner import Runner
from engine.pipeline.states import JobStatus, RunStatus
from engine.settings import Settings, resolve_settings
from engine.spec.model import VAR_RE, PipelinePlan, deploy_environments, load_pipeline
from engine.store import Store, open_store, runs

__all__ = ["PipelineManager", "recover_interrupted", "run_pipeline"]

# Files beside a detached run's request (engine.pipeline._detached): who cancelled it, why it did not start.
DETACHED_CANCEL = ".cancel"
DETACHED_ERROR = ".error"
_START_TIMEOUT = 60.0
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + _secrets.token_hex(3)


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
        recover: bool = True, config_roots: Sequence[Path] | None = None,
    ) -> None:
        """`executor` runs every job when given (a fake, in tests); otherwise each job's `runs_on:`
        picks one from the EXECUTORS registry, PIPELINE_EXECUTOR for jobs that name none. `recover`
        (default on) closes runs whose runner is gone; a detached runner, one of many, leaves that
        to the servers and commands that start them. With `config_roots` (a server's), every
        pipeline file read, however it was named (a path, or the recorded source of a registered
        pipeline), must lie under one of them."""
        self.config_roots = config_roots
        self.settings = resolve_settings(workspace_dir, settings)
        self.workspace = self.settings.workspace
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.store: Store = store or open_store(self.workspace)
        self.max_workers = max_workers or self.settings.PIPELINE_MAX_WORKERS
        self.executor = executor
        self._active: dict[str, Runner] = {}
        if recover:
            recover_interrupted(self.store)

    # -- pipelines --------------------------------------------------------------------------
    def create_pipeline(self, source: str | os.PathLike[str] | Mapping[str, Any], *,
                        skip_unsupported: bool = False, environments: frozenset[str] | None = None,
                        ) -> PipelinePlan:
        """Load and check a pipeline (file path, YAML text or mapping) and register it by name.

        A GitHub Actions workflow file is imported (engine.interop); its jobs that cannot
        run here fail with the reason, or are skipped with `skip_unsupported`. With
        `environments`, a pipeline that deploys anywhere else is refused (a caller decided on
        those environments, and the file may have changed since).

        Raises:
            SpecError: the pipeline is invalid (file:line:col, field, message).
            NotFoundError: the file does not exist.
            InputError: it deploys outside `environments`.
        """
        plan, _ = self._create(source, skip_unsupported, environments)
        return plan

    def _create(self, source: str | os.PathLike[str] | Mapping[str, Any], skip_unsupported: bool = False,
                environments: frozenset[str] | None = None, **github: Any) -> tuple[PipelinePlan, list[str] | None]:
        """The plan, checked against `environments` and registered, and the GitHub Actions import's
        warnings (None: not a workflow)."""
        plan, warnings = self._load_any(source, skip_unsupported, **github)
        outside = sorted(deploy_environments(plan) - environments) if environments is not None else []
        if outside:
            raise InputError(
                f"pipeline {plan.name!r} deploys to {', '.join(outside)}, which this run was not allowed to change "
                "(the file changed after the call was checked?); nothing ran"
            )
        runs.save_pipeline(self.store, plan.name, source_path=plan.spec_path, spec_json=plan.spec_json(),
                           updated_at=time.time())
        return plan, warnings

    def check_pipeline(self, source: str | os.PathLike[str] | Mapping[str, Any]) -> PipelinePlan:
        """Load and check a pipeline as `create_pipeline` does, without registering it: nothing changes.

        Raises:
            SpecError: the pipeline is invalid (file:line:col, field, message).
            NotFoundError: the file does not exist.
        """
        return self._load(source)

    def environments_of(self, source: str | os.PathLike[str] | Mapping[str, Any]) -> frozenset[str]:
        """The environments a run of `source` (as `run_pipeline` would load it) deploys to.

        Raises:
            SpecError: the pipeline is invalid.
            NotFoundError: no such file or registered pipeline.
        """
        return deploy_environments(self._load(source))

    def list_pipelines(self) -> list[str]:
        return runs.pipeline_names(self.store)

    def _load(self, source: str | os.PathLike[str] | Mapping[str, Any], skip_unsupported: bool = False,
              ) -> PipelinePlan:
        return self._load_any(source, skip_unsupported)[0]

    def _load_any(self, source: str | os.PathLike[str] | Mapping[str, Any], skip_unsupported: bool = False,
                  **github: Any) -> tuple[PipelinePlan, list[str] | None]:
        if isinstance(source, Mapping):
            return load_pipeline(source), None
        text = os.fspath(source)
        if "\n" in text:
            return load_pipeline(text), None
        path = Path(text)
        if _is_file(path):
            from engine.interop import import_github_workflow, is_github_workflow, pipeline_data

            if is_github_workflow(path):
                if self.config_roots is not None:
                    read_confined(path, self.config_roots, what="workflow file")
                imported = import_github_workflow(path, skip_unsupported=skip_unsupported, **github)
                plan = load_pipeline(pipeline_data(imported.spec))
                return PipelinePlan(spec=plan.spec, jobs=plan.jobs, source_dir=plan.source_dir,
                                    spec_path=str(path.resolve())), imported.warnings
            return load_pipeline(path, roots=self.config_roots), None
        return self._by_name(text), None

    def _by_name(self, name: str) -> PipelinePlan:
        registered = runs.registered_pipeline(self.store, name)
        if registered is not None:
            source_path, spec_json = registered
            if source_path and Path(source_path).is_file():
                # The file may have changed: reload it (a workflow is imported again), from under the
                # config roots only.
                return self._load_any(Path(source_path))[0]
            return load_pipeline(json.loads(spec_json))
        config = self.settings.PIPELINE_CONFIG_PATH
        if config is not None:
            config = Path(config).expanduser()
            candidates = [config] if config.is_file() else [config / f"{name}.yaml", config / f"{name}.yml"]
            for cand in candidates:
                if _is_file(cand):
                    plan = load_pipeline(cand, roots=self.config_roots)
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
        environments: frozenset[str] | None = None, fail_fast: bool = True,
    ) -> PipelineRun:
        """Run a pipeline to the end and return its result. Cancelling the caller cancels the run.
        With `fail_fast` False no failure cancels other jobs (the pipeline's `fail_fast` and its
        matrices' are off for this run): every job runs to its own end.

        Raises:
            SpecError, NotFoundError: the pipeline is invalid or unknown (nothing ran).
            InputError: a secret has no value, a variable name is invalid, PIPELINE_EXECUTOR names
                no registered executor, or it deploys outside `environments` (see `create_pipeline`).
        """
        overrides = {str(k): _stringify(v) for k, v in (variables or {}).items()}
        # A GitHub Actions workflow is imported for the event and branch it runs for (its
        # matrix, runs-on and static if: are decided then); --var sets workflow_dispatch inputs.
        plan, import_warnings = self._create(source, skip_unsupported, environments, event=event, branch=branch,
                                             inputs=overrides)
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
            "event": event or overrides.get("event") or ("push" if import_warnings is not None else "manual"),
            "provider": self.settings.CI_PROVIDER,
        }
        if import_warnings:
            context["import_warnings"] = json.dumps(import_warnings)
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
                        executor=self.executor, default_executor=self.settings.PIPELINE_EXECUTOR,
                        fail_fast=fail_fast)
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
        max_workers: int | None = None, skip_unsupported: bool = False, fail_fast: bool = True,
    ) -> PipelineRun:
        """Synchronous `arun_pipeline` (inside a running event loop it runs in a thread of its own)."""
        return blocking(partial(self.arun_pipeline, source, variables, on_event=on_event, branch=branch,
                                 event=event, max_workers=max_workers, skip_unsupported=skip_unsupported,
                                 fail_fast=fail_fast))

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

    def cancel_run(self, run_id: str, reason: str = "cancelled on request (cancel_run)") -> bool:
        """Ask a run to stop (in this process at once, in another within a second); `reason`
        (who stopped it) becomes the run's reason.

        Returns True when the run was still going, False when it had already ended.

        Raises:
            NotFoundError: no such run.
        """
        row = self._run_row(run_id)
        if RunStatus(row["status"]).finished:
            return False
        # The reason first: a detached runner reads it when it sees the file (engine.pipeline._detached).
        runners = self.workspace / "runners"
        if runners.is_dir():
            try:
                (runners / f"{run_id}{DETACHED_CANCEL}").write_text(reason, encoding="utf-8")
            except OSError:
                pass
        runs.request_cancel(self.store, run_id)
        runner = self._active.get(run_id)
        if runner is not None:
            runner.cancel(reason)
        return True

    def start_detached(
        self, source: str | os.PathLike[str] | Mapping[str, Any], variables: Mapping[str, Any] | None = None, *,
        run_id: str | None = None, environments: frozenset[str] | None = None,
    ) -> tuple[str, int]:
        """Start a run in a runner process of its own (engine.pipeline._detached) that outlives this
        process; returns (run id, runner pid) once the run is recorded.

        Raises:
            SpecError, NotFoundError: the pipeline is invalid or unknown (nothing ran).
            InputError: the run was refused before it started (a secret without a value, ...).
            ExecutorError: the runner process could not start.
        """
        import subprocess
        import sys
        import threading

        from engine.errors import ExecutorError
        plan = self.create_pipeline(source, environments=environments)
        if isinstance(source, Mapping):
            source = plan.spec_json()
        elif "\n" not in os.fspath(source) and _is_file(Path(os.fspath(source))):
            # The runner process works in another directory: a relative path must not change meaning.
            source = str(Path(os.fspath(source)).resolve())
        run_id = run_id or _new_run_id()
        if not _RUN_ID.match(run_id):
            raise InputError(f"run id {run_id!r} is invalid")
        folder = self.workspace / "runners"
        folder.mkdir(parents=True, exist_ok=True)
        request = folder / f"{run_id}.json"
        data = {"source": source if isinstance(source, str | dict) else os.fspath(source),
                "variables": {str(k): _stringify(v) for k, v in (variables or {}).items()},
                "settings": self.settings.model_dump(mode="json"),
                # The runner process checks the file again as it loads it: the same roots and the same
                # environments a caller decided on hold there (the file may change in between).
                "config_roots": None if self.config_roots is None else [str(r) for r in self.config_roots],
                "environments": None if environments is None else sorted(environments)}
        fd = os.open(request, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)   # variables may hold credentials
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(folder / f"{run_id}.log", "ab") as out:
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "engine.pipeline._detached", run_id, str(request)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=str(self.workspace),
                    env=env, start_new_session=True, close_fds=True,
                )
            except OSError as exc:
                request.unlink(missing_ok=True)
                raise ExecutorError(f"could not start a runner process for run {run_id}: {exc}") from exc
        # Reaped by a thread of ours while we live; by init once we are gone.
        threading.Thread(target=proc.wait, name=f"reap-{run_id}", daemon=True).start()
        error = request.with_suffix(DETACHED_ERROR)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if runs.get_run(self.store, run_id) is not None:
                return run_id, proc.pid
            if proc.poll() is not None or error.exists():
                time.sleep(0.05)
                if runs.get_run(self.store, run_id) is not None:
                    return run_id, proc.pid
                try:
                    failure = json.loads(error.read_text(encoding="utf-8"))
                    error.unlink()
                except (OSError, ValueError):
                    failure = {"input": False, "message": f"the runner process exited with code {proc.returncode}; "
                               f"see {folder / (run_id + '.log')}"}
                if failure.get("input"):
                    raise InputError(str(failure["message"]))
                raise ExecutorError(f"run {run_id} did not start: {failure['message']}")
            time.sleep(0.02)
        raise ExecutorError(f"the runner process of run {run_id} did not record the run within "
                            f"{_START_TIMEOUT:g}s; see {folder / (run_id + '.log')}")

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
                    deployment=json.loads(j["deployment_json"]) if j.get("deployment_json") else None,
                )
        return PipelineRun(
            run_id=row["run_id"], pipeline=row["pipeline"], status=RunStatus(row["status"]), jobs=jobs,
            created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
            duration=row["duration"], reason=row["reason"], variables=json.loads(row["variables_json"]),
            context=json.loads(row["context_json"]),
        )

    def read_log(self, run_id: str, job: str, *, tail: int | None = None, grep: str | None = None,
                 max_lines: int = 200, max_bytes: int = 64 * 1024, head: int | None = None,
                 offset: int | None = None, byte_offset: int | None = None, timestamps: bool = True,
                 line_chars: int = 0) -> LogSlice:
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
            return read_log_slice(path, job, tail=tail, grep=grep, max_lines=max_lines, max_bytes=max_bytes,
                                  head=head, offset=offset, byte_offset=byte_offset, timestamps=timestamps,
                                  line_chars=line_chars)
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
