"""PipelineManager: the engine's front door for pipelines (create, run, inspect, cancel)."""

from __future__ import annotations

import json
import os
import re
import secrets as _secrets
import signal
import subprocess
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from engine._process import group_is_session, owner_alive, signal_group
from engine._secrets import SECRET_NAME, Masker, read_secrets_file
from engine._sync import blocking
from engine.errors import InputError, NotFoundError, SpecError, SpecIssue
from engine.events import EventCallback
from engine.pipeline.executors import LocalExecutor
from engine.pipeline.logs import LogSlice, read_log_slice
from engine.pipeline.results import ArtifactRecord, JobResult, PipelineRun
from engine.pipeline.runner import Runner, RunPaths, safe_name
from engine.pipeline.states import JobStatus, RunStatus
from engine.settings import Settings, resolve_settings
from engine.spec.model import VAR_RE, PipelinePlan, load_pipeline
from engine.store import Store, open_store

__all__ = ["Pipeline", "PipelineManager", "recover_interrupted", "run_pipeline"]

Pipeline = PipelinePlan
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + _secrets.token_hex(3)


def recover_interrupted(store: Store) -> list[str]:
    """Mark runs whose runner process died as `interrupted` and kill what they left running.

    Returns the run ids it marked.
    """
    marked: list[str] = []
    for row in store.query("SELECT * FROM runs WHERE status IN ('queued', 'running')"):
        if owner_alive(row):
            continue
        run_id = row["run_id"]
        why = f"interrupted: the runner process (pid {row['owner_pid']}) is gone"
        for job in store.query("SELECT name, pgid FROM jobs WHERE run_id = ? AND pgid IS NOT NULL", (run_id,)):
            pgid = int(job["pgid"])
            if group_is_session(pgid):
                signal_group(pgid, signal.SIGKILL)
        now = time.time()
        with store.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status = ?, reason = ?, finished_at = COALESCE(finished_at, ?), pgid = NULL "
                "WHERE run_id = ? AND status IN ('pending', 'running', 'retrying')",
                (JobStatus.CANCELLED.value, why, now, run_id),
            )
            conn.execute(
                "UPDATE attempts SET status = 'interrupted', finished_at = COALESCE(finished_at, ?) "
                "WHERE run_id = ? AND status = 'running'", (now, run_id),
            )
            conn.execute(
                "UPDATE runs SET status = ?, reason = ?, finished_at = ?, "
                "duration = ? - COALESCE(started_at, created_at) WHERE run_id = ?",
                (RunStatus.INTERRUPTED.value, why, now, now, run_id),
            )
        marked.append(run_id)
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
        store: Store | None = None, max_workers: int | None = None, executor: LocalExecutor | None = None,
    ) -> None:
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
                        skip_unsupported: bool = False) -> Pipeline:
        """Load and check a pipeline (file path, YAML text or mapping) and register it by name.

        A GitHub Actions workflow file is imported (engine.interop); its jobs that cannot
        run here fail with the reason, or are skipped with `skip_unsupported`.

        Raises:
            SpecError: the pipeline is invalid (file:line:col, field, message).
            NotFoundError: the file does not exist.
        """
        plan = self._load(source, skip_unsupported)
        self.store.execute(
            "INSERT INTO pipelines (name, source_path, spec_json, updated_at) VALUES (?,?,?,?) "
            "ON CONFLICT (name) DO UPDATE SET source_path = excluded.source_path, spec_json = excluded.spec_json, "
            "updated_at = excluded.updated_at",
            (plan.name, plan.spec_path, plan.spec_json(), time.time()),
        )
        return plan

    def list_pipelines(self) -> list[str]:
        names = {r["name"] for r in self.store.query("SELECT name FROM pipelines")}
        names |= {r["pipeline"] for r in self.store.query("SELECT DISTINCT pipeline FROM runs")}
        return sorted(names)

    def _load(self, source: str | os.PathLike[str] | Mapping[str, Any], skip_unsupported: bool = False,
              ) -> PipelinePlan:
        if isinstance(source, Mapping):
            return load_pipeline(source)
        text = os.fspath(source)
        if "\n" in text:
            return load_pipeline(text)
        path = Path(text)
        if _is_file(path):
            from engine.interop.github import is_github_workflow, load_github_workflow, pipeline_data

            if is_github_workflow(path):
                spec = load_github_workflow(path, skip_unsupported=skip_unsupported)
                plan = load_pipeline(pipeline_data(spec))
                return PipelinePlan(spec=plan.spec, jobs=plan.jobs, source_dir=plan.source_dir,
                                    spec_path=str(path.resolve()))
            return load_pipeline(path)
        return self._by_name(text)

    def _by_name(self, name: str) -> PipelinePlan:
        row = self.store.query_one("SELECT source_path, spec_json FROM pipelines WHERE name = ?", (name,))
        if row is not None:
            if row["source_path"] and Path(row["source_path"]).is_file():
                return load_pipeline(Path(row["source_path"]))  # the file may have changed: reload it
            return load_pipeline(json.loads(row["spec_json"]))
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
            InputError: a secret has no value, or a variable name is invalid.
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
        self.store.execute(
            "INSERT INTO runs (run_id, pipeline, status, created_at, variables_json, context_json, spec_path, "
            "spec_json, max_workers) VALUES (?,?,?,?,?,?,?,?,?)",
            (run_id, plan.name, RunStatus.QUEUED.value, time.time(), json.dumps(masker.mask_obj(merged)),
             json.dumps(context), plan.spec_path, plan.spec_json(), workers),
        )
        root = self.workspace / "runs" / run_id
        paths = RunPaths(root=root, artifacts=self.settings.artifact_root / run_id / "artifacts")
        runner = Runner(plan, run_id=run_id, store=self.store, paths=paths, max_workers=workers,
                        variables=merged, secrets=secret_values, context=context, on_event=on_event,
                        executor=self.executor or LocalExecutor())
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
        self.store.execute("UPDATE runs SET cancel_requested = 1 WHERE run_id = ?", (run_id,))
        runner = self._active.get(run_id)
        if runner is not None:
            runner.cancel("cancelled on request (cancel_run)")
        return True

    def _run_row(self, run_id: str) -> Any:
        row = self.store.query_one("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        if row is None:
            recent = [r["run_id"] for r in self.store.query(
                "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 5")]
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
        sql, params = "SELECT * FROM runs", list[Any]()
        where = []
        if pipeline:
            where.append("pipeline = ?")
            params.append(pipeline)
        if status:
            where.append("status = ?")
            params.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"
        params.append(max(1, min(int(limit), 1000)))
        return [self._to_run(r, with_jobs=False) for r in self.store.query(sql, params)]

    def _to_run(self, row: Any, *, with_jobs: bool = True) -> PipelineRun:
        jobs: dict[str, JobResult] = {}
        if with_jobs:
            arts: dict[str, list[ArtifactRecord]] = {}
            for a in self.store.query("SELECT * FROM artifacts WHERE run_id = ? ORDER BY job, path", (row["run_id"],)):
                arts.setdefault(a["job"], []).append(
                    ArtifactRecord(job=a["job"], path=a["path"], stored_path=a["stored_path"], size=a["size"],
                                   sha256=a["sha256"]))
            for j in self.store.query("SELECT * FROM jobs WHERE run_id = ? ORDER BY rowid", (row["run_id"],)):
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
        row = self.store.query_one("SELECT log_path FROM jobs WHERE run_id = ? AND name = ?", (run_id, job))
        if row is None:
            names = [r["name"] for r in self.store.query("SELECT name FROM jobs WHERE run_id = ?", (run_id,))]
            raise NotFoundError(f"run {run_id} has no job {job!r}; jobs: " + ", ".join(names))
        path = Path(row["log_path"] or (self.workspace / "runs" / run_id / "logs" / f"{safe_name(job)}.log"))
        try:
            return read_log_slice(path, job, tail=tail, grep=grep, max_lines=max_lines, max_bytes=max_bytes)
        except ValueError as exc:
            raise InputError(str(exc)) from exc

    def failed_log_tails(self, run_id: str, lines: int = 20) -> dict[str, LogSlice]:
        """The last lines of every failed or timed-out job of a run."""
        rows = self.store.query(
            "SELECT name FROM jobs WHERE run_id = ? AND status IN ('failed', 'timed_out') ORDER BY rowid", (run_id,))
        return {r["name"]: self.read_log(run_id, r["name"], tail=lines) for r in rows}


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
