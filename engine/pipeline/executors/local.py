"""LocalExecutor: a job's script as a real process in its own process group.

Theory of operation. The script runs under `bash -eo pipefail` (or `sh -e`) started
with `start_new_session=True`, so the shell and everything it starts share one process
group that we can signal as a whole. One worker thread per running job pumps the
shell's combined stdout/stderr into the job's `LogWriter` in bounded chunks and reaps
the shell with `os.wait4`, which also yields the CPU time and peak RSS of the shell and
the children it waited for. When the shell has exited but a background grandchild keeps
the pipe open, the pump stops reading after a short drain and the group is killed: a job
leaves nothing behind. When the awaiting task is cancelled (timeout, cancel_run, fail
fast, the client went away), the group gets SIGTERM, then SIGKILL after a grace period,
and the cancellation goes on up.
"""

from __future__ import annotations

import functools
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

from engine._process import group_peak_rss_kb, signal_group
from engine.pipeline.logs import LogWriter

__all__ = ["CommandResult", "LocalExecutor"]

_DRAIN_AFTER_EXIT = 1.0   # seconds a background grandchild may keep writing after the shell exits
_POLL = 0.1
_SAMPLE_EVERY = (0.05, 0.2, 0.5, 1.0)  # seconds between memory samples: dense at first, then steady


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None           # None when the process could not be started
    cpu_user: float = 0.0           # seconds
    cpu_system: float = 0.0         # seconds
    peak_rss_kb: int | None = None   # None: the job ended before its memory was first sampled
    infrastructure_error: str | None = None   # could not start/supervise the process
    signal: int | None = None       # killed by this signal


@functools.cache
def _shell(kind: str) -> list[str]:
    if kind == "bash" and shutil.which("bash"):
        return ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]
    return ["sh", "-e", "-c"]


class LocalExecutor:
    """Runs job scripts as local processes. `grace` is the SIGTERM→SIGKILL delay in seconds."""

    name = "local"

    def __init__(self, *, grace: float = 5.0, max_threads: int = 64) -> None:
        self.grace = grace
        self._limiter = anyio.CapacityLimiter(max_threads)

    def set_capacity(self, workers: int) -> None:
        self._limiter.total_tokens = max(self._limiter.total_tokens, workers + 4)

    async def run(
        self, script: str, *, cwd: Path, env: Mapping[str, str], log: LogWriter, shell: str = "bash",
        on_start: Callable[[int], None] | None = None, argv: list[str] | None = None,
    ) -> CommandResult:
        """Run `script` to the end. `on_start(pgid)` is called (from a worker thread) once it runs.

        Starting the process happens in the worker thread too: fork+exec of a large
        process takes milliseconds that the event loop should spend on other jobs.
        With `argv`, that program is executed directly instead of the script (the caller
        decided the script is one simple command, as make does).
        """
        finished = threading.Event()
        handoff = threading.Lock()
        outcome: dict[str, object] = {}
        flags: dict[str, object] = {"started": False, "abandoned": False, "pgid": None}

        def work() -> None:
            try:
                with handoff:
                    if flags["abandoned"]:
                        return
                    flags["started"] = True
                try:
                    proc = subprocess.Popen(  # noqa: S603 - the script is the user's pipeline, run on purpose
                        argv or [*_shell(shell), script], cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                    )
                except OSError as exc:
                    outcome["result"] = CommandResult(
                        exit_code=None, infrastructure_error=f"could not start the job's shell: {exc}")
                    return
                flags["pgid"] = proc.pid
                if on_start is not None:
                    on_start(proc.pid)
                outcome["result"] = _pump(proc, log)
            except BaseException as exc:  # reported to the awaiting task below
                outcome["error"] = exc
            finally:
                finished.set()

        try:
            await anyio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=self._limiter)
        except BaseException:
            with handoff:
                started = bool(flags["started"])
                flags["abandoned"] = not started
            if started:
                with anyio.CancelScope(shield=True):
                    await self._terminate(flags, finished)
            raise
        if "error" in outcome:
            err = outcome["error"]
            return CommandResult(exit_code=None, infrastructure_error=f"lost track of the job's process: {err}")
        result = outcome["result"]
        assert isinstance(result, CommandResult)
        return result

    async def _terminate(self, flags: Mapping[str, object], finished: threading.Event) -> None:
        # The worker may be between fork and recording the pid: give it a moment.
        deadline = time.monotonic() + 2.0
        while flags["pgid"] is None and not finished.is_set() and time.monotonic() < deadline:
            await anyio.sleep(0.005)
        pgid = flags["pgid"]
        if not isinstance(pgid, int) or not signal_group(pgid, signal.SIGTERM):
            return
        deadline = time.monotonic() + self.grace
        while not finished.is_set() and time.monotonic() < deadline:
            await anyio.sleep(0.02)
        signal_group(pgid, signal.SIGKILL)
        # The worker reaps the shell; wait briefly so no zombie outlives the job.
        deadline = time.monotonic() + 2.0
        while not finished.is_set() and time.monotonic() < deadline:
            await anyio.sleep(0.02)


def _pump(proc: subprocess.Popen[bytes], log: LogWriter) -> CommandResult:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    exited: tuple[int, os.struct_rusage] | None = None  # type: ignore[name-defined]
    exit_time = 0.0
    started = last_check = time.monotonic()
    samples = 0
    next_sample = started + _SAMPLE_EVERY[0]
    peak_kb = 0
    try:
        while True:
            ready = sel.select(_POLL)
            now = time.monotonic()
            if exited is None and now >= next_sample:
                peak_kb = max(peak_kb, group_peak_rss_kb(proc.pid))
                samples += 1
                next_sample = now + _SAMPLE_EVERY[min(samples, len(_SAMPLE_EVERY) - 1)]
            if ready:
                data = os.read(fd, 256 * 1024)
                if not data:
                    break
                log.feed(data)
            if exited is None and (not ready or now - last_check >= _POLL):
                last_check = now
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    exited, exit_time = (status, usage), now
            if exited is not None and now - exit_time > _DRAIN_AFTER_EXIT:
                log.note("output still open after the job's shell exited; stopping its background processes")
                break
    finally:
        sel.close()
        proc.stdout.close()
    if exited is None:
        _, status, usage = os.wait4(proc.pid, 0)
    else:
        status, usage = exited
    # Nothing of the job may outlive it: the group goes, whatever is left in it.
    signal_group(proc.pid, signal.SIGKILL)
    proc.returncode = os.waitstatus_to_exitcode(status)
    code = proc.returncode
    log.flush()
    return CommandResult(
        exit_code=code if code >= 0 else 128 - code,
        cpu_user=usage.ru_utime, cpu_system=usage.ru_stime, peak_rss_kb=peak_kb or None,
        signal=-code if code < 0 else None,
    )
