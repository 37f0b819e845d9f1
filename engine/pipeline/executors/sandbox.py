"""SandboxExecutor: a job's commands under bubblewrap (`bwrap`), the default executor.

Theory of operation. The job runs as LocalExecutor runs it (same script, same pump, same
measurements), wrapped in `bwrap`: the host's root is bound read-only, `/dev` and `/proc` are
the sandbox's own, `/tmp` is an empty tmpfs, and only the job's workspace and its own HOME
are bound writable. Host toolchains stay usable (read-only): a virtualenv in the workspace
works, `pip install` into the system fails with "Read-only file system".

`--unshare-pid --as-pid-1` gives the job its own PID namespace whose init is the job's command:
when it ends, or is killed, the kernel kills every process left in the namespace —
`setsid` children, double forks and SIGTERM-ignorers included. `--die-with-parent` ties the
sandbox to the engine process: a runner that dies takes its sandboxes with it.
Directories named in PIPELINE_SANDBOX_WRITABLE (a shared cache) are bound writable too. The recovery
record still names bwrap's process group, for a runner stopped without dying (SIGSTOP) or an
outer bwrap that outlived its parent. `network: false` adds `--unshare-net` (loopback only).

What this does not isolate: it is not a VM boundary. The job shares the host kernel, runs
as the engine's user (root stays root, with the capabilities bwrap leaves), reads every
file that user can read (secrets on the host included), and reaches the network unless
the job says `network: false`. See docs/executors.md.

Where bwrap is missing or cannot create namespaces (an unprivileged container, a kernel
that forbids user namespaces), the executor runs jobs as `local` and says why in `warning`;
the runner records that warning on the run, once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import anyio

from engine._process import terminate_group
from engine.pipeline.executors.base import CommandResult, JobCommand, OnStart, RecoveryRecord
from engine.pipeline.executors.local import LocalExecutor, _tree
from engine.pipeline.logs import LogWriter, tail_lines

__all__ = ["BWRAP", "WRITABLE_ENV", "SandboxExecutor", "bwrap_argv", "sandbox_unavailable", "writable_paths"]

BWRAP = "bwrap"
"""The bubblewrap program (a name on PATH or a path)."""
WRITABLE_ENV = "PIPELINE_SANDBOX_WRITABLE"
_SETUP_RETRIES = 3
_SETUP_FAILED = re.compile(r"^\S+ bwrap: .*\bmount")
"""bwrap's own error, as the job's log has it, when it could not build the sandbox's mounts."""


@functools.cache
def sandbox_unavailable(bwrap: str = BWRAP) -> str | None:
    """Why jobs cannot be sandboxed on this host, or None when they can (probed once per program)."""
    path = shutil.which(bwrap)
    if path is None:
        return (f"bubblewrap ({bwrap}) is not installed (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf "
                "install bubblewrap)")
    probe = [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--die-with-parent",
             "true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=10, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not be started: {exc}"
    if done.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {done.stderr.strip()[:300] or f'exit {done.returncode}'}"
    return None


def writable_paths() -> list[Path]:
    """Host directories an operator made writable in every sandbox (PIPELINE_SANDBOX_WRITABLE, os.pathsep
    separated: a shared cache, say); those that do not exist are left out."""
    raw = os.environ.get(WRITABLE_ENV, "")
    return [Path(p) for p in raw.split(os.pathsep) if p and os.path.isdir(p)]


@functools.cache
def _own_installation() -> tuple[str, ...]:
    """This installation's directories that lie under /tmp (hidden by the sandbox's own /tmp)."""
    import engine

    tmp = Path("/tmp").resolve()  # noqa: S108 - the directory the sandbox replaces
    roots = {Path(engine.__file__).resolve().parents[1], Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    return tuple(sorted(str(r) for r in roots if r.is_relative_to(tmp) and r != tmp))


def bwrap_argv(command: JobCommand, bwrap: str = BWRAP) -> tuple[str, ...]:
    """The bwrap prefix that sandboxes `command` (its argv follows)."""
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # cicd-mcp itself (its source and its interpreter's prefix) stays readable where the tmpfs would hide
    # it: jobs run our own helpers (the GitHub Actions step runner) with this interpreter.
    for path in _own_installation():
        args += ["--ro-bind", path, path]
    # Bound after the tmpfs: a workspace under /tmp must show through it.
    paths = [*writable_paths(), command.workspace, *([command.home] if command.home is not None else [])]
    for path in dict.fromkeys(str(p.resolve()) for p in paths):
        args += ["--bind", path, path]
    # --as-pid-1: the job's command is the namespace's init (no bwrap init in between). --new-session:
    # the job is not in the outer bwrap's process group (nor can it push input into our terminal);
    # the outer bwrap exits without reaping it, and a zombie in our group would look like a live job
    # until the host's init reaps it.
    args += ["--chdir", str(command.cwd.resolve()), "--unshare-pid", "--as-pid-1", "--new-session",
             "--die-with-parent"]
    if not command.network:
        args.append("--unshare-net")
    return (*args, "--")


def _setup_failed(log: LogWriter) -> bool:
    """Whether the attempt's last line is bwrap's own error about the sandbox's mounts."""
    log.flush()
    last, _ = tail_lines(log.path, 1)
    return bool(last) and _SETUP_FAILED.match(last[-1]) is not None


class SandboxExecutor(LocalExecutor):
    """Runs jobs as local processes inside bubblewrap; falls back to `local` (with `warning`) where it cannot."""

    name = "sandbox"

    def __init__(self, *, grace: float = 5.0, max_threads: int = 64, bwrap: str | None = None) -> None:
        super().__init__(grace=grace, max_threads=max_threads)
        self.bwrap = bwrap or BWRAP
        why = sandbox_unavailable(self.bwrap)
        self.warning: str | None = None if why is None else (
            f"jobs run without a sandbox, as local processes with the server's user: {why}")

    async def prepare(self, command: JobCommand) -> None:
        if command.home is not None:
            command.home.mkdir(parents=True, exist_ok=True)

    def _launch(self, command: JobCommand, log: LogWriter) -> tuple[tuple[str, ...], dict[str, str]]:
        if self.warning is not None:
            return super()._launch(command, log)
        argv, env = self._argv_env(command, log)
        if command.home is not None:
            env["HOME"] = str(command.home)
        env["TMPDIR"] = "/tmp"  # noqa: S108 - the sandbox's own tmpfs
        # Without it pip answers a read-only system with a silent `--user` install into the job's HOME:
        # `pip install` outside a virtualenv must fail, and say why.
        env["PYTHONNOUSERSITE"] = "1"
        return (*bwrap_argv(command, shutil.which(self.bwrap) or self.bwrap), *argv), env

    async def run(self, command: JobCommand, log: LogWriter, on_start: OnStart | None = None) -> CommandResult:
        """Run the job in a sandbox; a sandbox that could not be built is built again.

        bwrap copies the host's mount tree (`--ro-bind / /`, each `--bind`) and then remounts every
        submount read-only or as it was; a mount that appears or goes in the meantime (another job's
        overlay workspace) fails that remount, and bwrap exits 1 before the job's command ran. That
        is no job failure: nothing of the job ran, so it is started again.
        """
        attempt = 0
        while True:
            result = await super().run(command, log, on_start)
            if self.warning is not None or result.exit_code != 1 or attempt == _SETUP_RETRIES \
                    or not _setup_failed(log):
                return result
            attempt += 1
            log.note("the sandbox could not be built (a mount changed while bwrap copied the mount tree); "
                     "building it again")
            await anyio.sleep(0.05 * attempt)

    async def _terminate(self, flags: Mapping[str, object], finished: threading.Event) -> None:
        """SIGTERM the job's processes inside the sandbox, SIGKILL the sandbox's PID 1 after the grace period.

        Not the process group, which holds the outer bwrap too: killed first, it could no longer
        reap the job's PID 1, left a zombie in our group until the host's init reaps it. The outer
        bwrap reaps it and exits; the worker thread reaps the outer bwrap.
        """
        if self.warning is not None:
            await super()._terminate(flags, finished)
            return
        deadline = time.monotonic() + 2.0
        while flags["pgid"] is None and not finished.is_set() and time.monotonic() < deadline:
            await anyio.sleep(0.005)
        outer = flags["pgid"]
        if not isinstance(outer, int):
            return
        tree = _tree(outer)
        inits = [p for p in tree if p != outer][:1]   # the job's command, PID 1 of the sandbox
        # PID 1 gets SIGTERM only if it handles it (a trap); the rest of the job gets it anyway.
        for pid in tree[1:]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while not finished.is_set() and time.monotonic() < deadline:
            await anyio.sleep(0.02)
        for pid in inits:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)   # the kernel kills the whole PID namespace with it
        if not finished.is_set():
            await terminate_group(outer, grace=2.0, gone=finished.is_set)

    def _record(self, pid: int, cookie: str) -> RecoveryRecord:
        # bwrap leads the group; killing it takes the whole PID namespace down.
        return {"pgid": pid, "cookie": cookie, "sandbox": self.warning is None}
