"""A run's files on disk: job workspaces (source tree plus the artifacts of the jobs a job
depends on), log paths, and artifacts collected from a finished job into the artifact store."""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.pipeline.results import ArtifactRecord

__all__ = ["DEFAULT_SOURCE_EXCLUDES", "RunPaths", "collect_artifacts", "prepare_workspace", "safe_name"]

DEFAULT_SOURCE_EXCLUDES = (
    ".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
    ".cicd", "*.pyc",
)
_DEFAULT_IGNORE = shutil.ignore_patterns(*DEFAULT_SOURCE_EXCLUDES)


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
        # No glob characters in a workspace path: tools match their own paths as patterns
        # (tox's allowlist does), and `test[py=3.12]` would not match itself.
        return self.root / "jobs" / safe_name(job).replace("[", "@").replace("]", "")

    def workspace(self, job: str) -> Path:
        return self.job_dir(job) / "workspace"

    def log(self, job: str) -> Path:
        return self.root / "logs" / f"{safe_name(job)}.log"


def prepare_workspace(
    workspace: Path, *, source: Path | None, state_root: Path, inherited: Iterable[ArtifactRecord],
    working_directory: str | None,
) -> None:
    """Fill a job's workspace: a copy of `source` (without tool caches, nor the engine's own state
    at `state_root` when it lives inside), then the `inherited` artifacts at their relative paths.

    Raises:
        OSError: the workspace cannot be written.
    """
    if workspace.exists():  # a re-run of the same job id
        shutil.rmtree(workspace)
    if source is not None:
        state = state_root.resolve()

        def ignore(directory: str, names: list[str]) -> set[str]:
            ignored = set(_DEFAULT_IGNORE(directory, names))
            if state.is_relative_to(Path(directory).resolve()):
                ignored.update(n for n in names if (Path(directory) / n).resolve() == state)
            return ignored

        shutil.copytree(source, workspace, symlinks=True, ignore=ignore)
    else:
        workspace.mkdir(parents=True)
    for art in inherited:
        dest = workspace / art.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(art.stored_path, dest)
    if working_directory:
        (workspace / working_directory).mkdir(parents=True, exist_ok=True)


def collect_artifacts(job: str, patterns: Iterable[str], cwd: Path, dest_root: Path) -> list[ArtifactRecord]:
    """Copy the files matching `patterns` (globs relative to `cwd`) into `dest_root`.

    A symlink pointing out of the workspace is not collected.

    Raises:
        OSError: a file cannot be read or copied.
    """
    root = cwd.resolve()
    records: list[ArtifactRecord] = []
    seen: set[str] = set()
    for pattern in patterns:
        # The root may hold glob characters itself (matrix job names have brackets).
        for match in sorted(glob.glob(os.path.join(glob.escape(str(root)), pattern), recursive=True)):
            p = Path(match)
            files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else []
            for f in files:
                real = f.resolve()
                if not real.is_relative_to(root):
                    continue
                rel = (f if f.is_relative_to(root) else real).relative_to(root).as_posix()
                if rel in seen or any(fnmatch.fnmatch(part, "__pycache__") for part in Path(rel).parts):
                    continue
                seen.add(rel)
                target = dest_root / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(real, target)
                records.append(ArtifactRecord(job=job, path=rel, stored_path=str(target),
                                              size=target.stat().st_size, sha256=_sha256(target)))
    return records


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            h.update(block)
    return h.hexdigest()
