"""Build a project with its language's standard build: preflight checks, commands, artifacts."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from engine._logfile import LogWriter
from engine.build._languages import Builder, detect_language, get_builder
from engine.build._models import (
    BuildArtifact,
    BuildPlan,
    BuildResult,
    BuildStatus,
    CommandRecord,
    Finding,
)
from engine.build._process import run_streamed
from engine.errors import ExecutorError, InputError, NotFoundError

__all__ = [
    "DEFAULT_TIMEOUT",
    "aorchestrate_build_pipeline",
    "orchestrate_build_pipeline",
    "standard_build_commands",
    "validate_build_config",
    "validate_build_dependencies",
]

DEFAULT_TIMEOUT = 1800.0


def _project(project_path: str | os.PathLike[str]) -> Path:
    path = Path(project_path).expanduser().resolve()
    if not path.is_dir():
        raise NotFoundError(f"project directory {str(project_path)!r} does not exist")
    return path


def _resolve(project_path: str | os.PathLike[str], language: str) -> tuple[Path, str, Builder[Any]]:
    project = _project(project_path)
    name = detect_language(project) if language == "auto" else language
    return project, name, get_builder(name)


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ)
    merged.update(env or {})
    return merged


def validate_build_config(project_path: str | os.PathLike[str], language: str = "auto") -> list[Finding]:
    """What is wrong with the project's own files for a build in `language` (nothing is run).

    Raises:
        NotFoundError: the project directory does not exist.
        InputError: unknown language, or `auto` cannot tell which one.
    """
    project, _, builder = _resolve(project_path, language)
    return builder.config_findings(builder.inspect(project, _environment(None), sys.executable))


def validate_build_dependencies(
    project_path: str | os.PathLike[str], language: str = "auto", *, env: Mapping[str, str] | None = None,
    python: str | None = None,
) -> list[Finding]:
    """What is missing to build the project: toolchain on PATH, lockfile, build backend.

    Raises:
        NotFoundError: the project directory does not exist.
        InputError: unknown language, or `auto` cannot tell which one.
    """
    project, _, builder = _resolve(project_path, language)
    return builder.dependency_findings(builder.inspect(project, _environment(env), python or sys.executable))


def standard_build_commands(
    language: str, project_path: str | os.PathLike[str], output_dir: str | os.PathLike[str] = "dist", *,
    python: str | None = None,
) -> list[list[str]]:
    """The argument lists of `language`'s standard build, to run with the project as working directory.

    A relative `output_dir` is relative to the project. Environment settings a step needs
    are carried by an `env(1)` prefix, so every command stands alone.

    Raises:
        NotFoundError: the project directory does not exist.
        InputError: unknown language, `auto` cannot tell, or the project's files are invalid.
    """
    project, name, builder = _resolve(project_path, language)
    facts = builder.inspect(project, _environment(None), python or sys.executable)
    errors = [f for f in builder.config_findings(facts) if f.severity == "error"]
    if errors:
        raise InputError(f"cannot plan the {name} build of {project}: " + "; ".join(str(f) for f in errors))
    return [step.as_command() for step in builder.plan(facts, Path(output_dir)).steps]


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    if not directory.is_dir():
        return {}
    return {e.name: (e.stat().st_mtime_ns, e.stat().st_size) for e in directory.iterdir() if e.is_file()}


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _kind(name: str, plan: BuildPlan) -> str:
    return next((kind for suffix, kind in plan.artifact_kinds.items() if name.endswith(suffix)), "binary")


def _collect(output_dir: Path, before: dict[str, tuple[int, int]], plan: BuildPlan) -> list[BuildArtifact]:
    """Files the build made or rewrote at the top of `output_dir` (older files are not this build's)."""
    after = _snapshot(output_dir)
    made = sorted(name for name, stamp in after.items() if before.get(name) != stamp)
    return [
        BuildArtifact(path=str(output_dir / name), kind=_kind(name, plan), size=after[name][1],
                      sha256=_sha256(output_dir / name))
        for name in made
    ]


def orchestrate_build_pipeline(
    project_path: str | os.PathLike[str], language: str = "auto",
    output_dir: str | os.PathLike[str] | None = None, *, timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None, python: str | None = None,
    log_path: str | os.PathLike[str] | None = None, cancel: threading.Event | None = None,
) -> BuildResult:
    """Build the project with its language's standard build and report what it made.

    Preflight checks (`validate_build_config`, `validate_build_dependencies`) run first;
    an error among them fails the build before any command runs. Each command is an
    argument list run in the project directory with `env` on top of this process's
    environment; its output is streamed, timestamped, to the log. `timeout` (seconds)
    bounds the whole build; past it the running command's process group is killed.
    Setting `cancel` stops the build the same way.

    `output_dir` defaults to `<project>/dist`; the log defaults to
    `<output_dir>/logs/build-<language>.log`. Artifacts are the files the build wrote
    at the top of `output_dir`, each with its size and sha256.

    Raises:
        NotFoundError: the project directory does not exist.
        InputError: unknown language, or `auto` cannot tell which one.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout
    project, name, builder = _resolve(project_path, language)
    out = Path(output_dir).expanduser() if output_dir is not None else project / "dist"
    out = (out if out.is_absolute() else Path.cwd() / out).resolve()
    log_file = Path(log_path).resolve() if log_path is not None else out / "logs" / f"build-{name}.log"
    environment = _environment(env)

    def result(status: BuildStatus, log: LogWriter, **fields: Any) -> BuildResult:
        return BuildResult(status=status, language=name, project_path=str(project), output_dir=str(out),
                           log_path=str(log_file), log_tail=log.tail(), duration=time.monotonic() - t0,
                           **fields)

    with LogWriter(log_file, append=False, tail_lines=40) as log:
        log.line(f"build {name} project {project} into {out}")
        facts = builder.inspect(project, environment, python or sys.executable)
        findings = builder.config_findings(facts) + builder.dependency_findings(facts)
        for finding in findings:
            log.line(f"preflight {finding}")
        errors = [f for f in findings if f.severity == "error"]
        if errors:
            return result(BuildStatus.FAILED, log, findings=findings,
                          reason="preflight checks failed: " + "; ".join(f.message for f in errors))

        plan = builder.plan(facts, out)
        warnings = list(plan.warnings)
        for warning in warnings:
            log.line(f"warning: {warning}")
        out.mkdir(parents=True, exist_ok=True)
        before = _snapshot(out)
        commands: list[CommandRecord] = []
        for step in plan.steps:
            log.line(f"$ {step.display()}")
            step_env = {**environment, **step.env}
            try:
                outcome = run_streamed(step.argv, cwd=project, env=step_env, log=log, deadline=deadline,
                                       cancel=cancel)
            except ExecutorError as exc:
                log.line(f"error: {exc}")
                return result(BuildStatus.FAILED, log, findings=findings, commands=commands,
                              warnings=warnings, reason=str(exc))
            commands.append(CommandRecord(argv=list(step.argv), env=dict(step.env), cwd=str(project),
                                          exit_code=outcome.exit_code, duration=outcome.duration,
                                          started_at=outcome.started_at))
            if outcome.timed_out or outcome.cancelled:
                why = f"timed out after {timeout:g}s" if outcome.timed_out else "cancelled"
                log.line(f"{why} during `{step.display()}`: process group killed")
                status = BuildStatus.TIMED_OUT if outcome.timed_out else BuildStatus.CANCELLED
                return result(status, log, findings=findings, commands=commands, warnings=warnings,
                              reason=f"{why} during `{step.display()}`")
            log.line(f"exit {outcome.exit_code} after {outcome.duration:.2f}s")
            if outcome.exit_code != 0:
                return result(BuildStatus.FAILED, log, findings=findings, commands=commands,
                              warnings=warnings, reason=f"`{step.display()}` exited with {outcome.exit_code}")

        artifacts = _collect(out, before, plan)
        for artifact in artifacts:
            log.line(f"artifact {artifact.path} {artifact.size} bytes sha256={artifact.sha256}")
        if plan.expects_artifacts and not artifacts:
            return result(BuildStatus.FAILED, log, findings=findings, commands=commands, warnings=warnings,
                          reason=f"the build succeeded but wrote no artifact into {out}")
        log.line(f"build succeeded in {time.monotonic() - t0:.2f}s")
        return result(BuildStatus.SUCCEEDED, log, findings=findings, commands=commands, warnings=warnings,
                      artifacts=artifacts)


async def aorchestrate_build_pipeline(
    project_path: str | os.PathLike[str], language: str = "auto",
    output_dir: str | os.PathLike[str] | None = None, **options: Any,
) -> BuildResult:
    """`orchestrate_build_pipeline` on a worker thread; cancelling the caller kills the build's processes.

    Raises:
        NotFoundError: the project directory does not exist.
        InputError: unknown language, or `auto` cannot tell which one.
    """
    cancel = threading.Event()
    finished = threading.Event()

    def work() -> BuildResult:
        try:
            return orchestrate_build_pipeline(project_path, language, output_dir, cancel=cancel, **options)
        finally:
            finished.set()

    try:
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        cancel.set()
        # Wait for the worker to kill its process group, so nothing outlives the cancel.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(partial(finished.wait, 30))
        raise
