"""A run's files on disk: job workspaces (source tree plus the artifacts of the jobs a job
depends on), log paths, and artifacts collected from a finished job into the artifact store."""

from __future__ import annotations

import contextlib
import ctypes
import fnmatch
import functools
import glob
import hashlib
import os
import re
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.pipeline.results import ArtifactRecord

__all__ = [
    "DEFAULT_SOURCE_EXCLUDES",
    "RunPaths",
    "SourceView",
    "collect_artifacts",
    "prepare_workspace",
    "release_workspace",
    "safe_name",
]

DEFAULT_SOURCE_EXCLUDES = (
    ".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
    ".cicd", "*.pyc",
)


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


class SourceView:
    """The source tree as a run's jobs see it: what is hidden from them, found once per run.

    Hidden: tool caches and virtualenvs (DEFAULT_SOURCE_EXCLUDES, `.git` unless a job asks for
    it) and the engine's own state when it lives inside the source (a pipeline file inside
    PIPELINE_WORKSPACE with `source: .`): a job never sees, nor copies, its own workspace.
    """

    def __init__(self, source: Path | None, state_root: Path) -> None:
        self.source = source
        self.state_root = state_root.resolve()
        self._hidden: dict[bool, list[str]] = {}

    def hidden(self, *, git: bool) -> list[str]:
        """Relative paths (POSIX) of the source that a job does not see."""
        if git not in self._hidden:
            self._hidden[git] = self._walk(git) if self.source is not None else []
        return self._hidden[git]

    def _state_entries(self) -> set[Path]:
        assert self.source is not None
        src = self.source.resolve()
        if self.state_root == src:
            # The source is the state root itself: hide what the engine writes there.
            return {src / "runs", *(src / f"state.db{x}" for x in ("", "-wal", "-shm", "-journal"))}
        return {self.state_root} if self.state_root.is_relative_to(src) else set()

    def _walk(self, git: bool) -> list[str]:
        assert self.source is not None
        src = self.source.resolve()
        patterns = [p for p in DEFAULT_SOURCE_EXCLUDES if not (git and p == ".git")]
        state = self._state_entries()
        found: list[str] = []
        for directory, dirs, files in os.walk(src):
            here = Path(directory)
            for names, is_dir in ((dirs, True), (files, False)):
                keep = []
                for name in names:
                    path = here / name
                    if path in state or any(fnmatch.fnmatchcase(name, p) for p in patterns):
                        found.append(path.relative_to(src).as_posix())
                    elif is_dir:
                        keep.append(name)
                if is_dir:
                    dirs[:] = keep   # not walked into: hidden, or symlinks (os.walk does not follow them)
        return found


def prepare_workspace(
    workspace: Path, *, view: SourceView, inherited: Iterable[ArtifactRecord], working_directory: str | None,
    git: bool = False,
) -> str:
    """Fill a job's workspace with the source (as `view` shows it) and the `inherited` artifacts at
    their relative paths. Returns how: "overlay", "copy" or "empty" (no source).

    No full copy where the kernel allows: an overlay mount whose lower layer is the source and
    whose upper layer, beside the workspace, takes the job's writes (copy-up on write); what the
    view hides is a whiteout there. Elsewhere (not root, no overlayfs, a source on a filesystem
    overlayfs refuses) a copy. `release_workspace` ends the mount when the job is done.

    Raises:
        OSError: the workspace cannot be written.
    """
    if workspace.exists() or _layers(workspace)[0].exists():   # a re-run of the same job id
        release_workspace(workspace)
        shutil.rmtree(workspace, ignore_errors=True)
    how = "empty"
    if view.source is not None:
        hidden = view.hidden(git=git)
        how = "overlay" if _overlay(view.source, workspace, hidden) else "copy"
        if how == "copy":
            skip = {view.source.resolve() / h for h in hidden}

            def ignore(directory: str, names: list[str]) -> set[str]:
                here = Path(directory).resolve()
                return {n for n in names if here / n in skip}

            shutil.copytree(view.source, workspace, symlinks=True, ignore=ignore)
    else:
        workspace.mkdir(parents=True)
    for art in inherited:
        dest = workspace / art.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        # A copy, not a link: a job that edits an inherited file in place must not change the stored artifact.
        shutil.copy2(art.stored_path, dest)
    if working_directory:
        (workspace / working_directory).mkdir(parents=True, exist_ok=True)
    return how


def _layers(workspace: Path) -> tuple[Path, Path]:
    """The upper and work directories of a workspace's overlay, under names that need no escaping
    in mount options (a matrix job's name holds commas, which separate the options)."""
    key = hashlib.sha256(str(workspace).encode()).hexdigest()[:16]
    base = workspace.parent.parent.parent / ".overlay" / key
    return base / "upper", base / "work"


_MNT_DETACH = 2


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _overlay(source: Path, workspace: Path, hidden: list[str]) -> bool:
    """Mount `source` at `workspace` as an overlay with its upper layer beside it; False when not possible."""
    libc = _libc()
    upper, work = _layers(workspace)
    if libc is None or os.geteuid() != 0 or any(c in str(p.resolve()) for p in (source, upper) for c in ",:\\"):
        return False
    for d in (workspace, upper, work):
        d.mkdir(parents=True, exist_ok=True)
    for rel in hidden:
        whiteout = upper / rel
        whiteout.parent.mkdir(parents=True, exist_ok=True)
        os.mknod(whiteout, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    options = f"lowerdir={source.resolve()},upperdir={upper.resolve()},workdir={work.resolve()}".encode()
    if libc.mount(b"overlay", str(workspace.resolve()).encode(), b"overlay", 0, options) == 0:
        return True
    shutil.rmtree(upper.parent, ignore_errors=True)
    workspace.rmdir()   # the copy that follows makes it
    return False


def release_workspace(workspace: Path) -> None:
    """End a job's overlay (if it has one): the workspace then holds what the job wrote (its upper layer).

    Safe to call on any workspace, mounted or not.
    """
    upper, _work = _layers(workspace)
    if not upper.exists():
        return
    libc = _libc()
    if libc is not None and os.path.ismount(workspace):
        libc.umount2(str(workspace).encode(), _MNT_DETACH)
    with contextlib.suppress(OSError):
        workspace.rmdir()
    if not workspace.exists():
        os.rename(upper, workspace)
        for directory, _dirs, files in os.walk(workspace):
            for name in files:
                path = os.path.join(directory, name)
                st = os.lstat(path)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:   # a whiteout: a deletion, not a file
                    os.unlink(path)
    shutil.rmtree(upper.parent, ignore_errors=True)


def collect_artifacts(job: str, patterns: Iterable[str], cwd: Path, dest_root: Path) -> list[ArtifactRecord]:
    """Store the files matching `patterns` (globs relative to `cwd`) under `dest_root`: hard-linked
    when on the same filesystem (the job is over: nothing writes its workspace any more), copied
    otherwise.

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
                _link_or_copy(real, target)
                records.append(ArtifactRecord(job=job, path=rel, stored_path=str(target),
                                              size=target.stat().st_size, sha256=_sha256(target)))
    return records


def _link_or_copy(src: Path, dest: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:   # another filesystem (EXDEV), or links not allowed
        shutil.copy2(src, dest)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            h.update(block)
    return h.hexdigest()
