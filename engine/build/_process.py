"""Run one build command: argument list, own process group, output streamed to a log, deadline.

Output is read line by line on a thread as the process produces it and written to the
log at once, each line stamped with the time it was read; nothing is held whole in
memory. The process runs in its own session so that a timeout or a cancel kills
everything it started (npm and cargo spawn children), not just the direct child.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio

from engine._logfile import LogWriter
from engine._process import signal_group, terminate_group
from engine.errors import ExecutorError

__all__ = ["ProcessOutcome", "run_streamed"]

# A line longer than this is written in pieces, each stamped; a process that never
# prints a newline cannot make the reader hold an unbounded buffer.
_MAX_LINE = 64 * 1024
_KILL_GRACE = 5.0
_POLL = 0.1


@dataclass(frozen=True)
class ProcessOutcome:
    exit_code: int | None      # None when killed by us
    timed_out: bool
    cancelled: bool
    started_at: float
    duration: float


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole group, SIGKILL what is left after a grace period, reap the leader."""
    # The one group killer (engine._process) is async; this thread gets a loop of its own for it.
    anyio.run(partial(terminate_group, proc.pid, grace=_KILL_GRACE, gone=lambda: proc.poll() is not None))
    proc.wait()


def run_streamed(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: LogWriter, deadline: float,
    cancel: threading.Event | None = None,
) -> ProcessOutcome:
    """Run `argv` in `cwd`, stream its stdout and stderr (merged) to `log`, stop it at `deadline`.

    `deadline` is a `time.monotonic()` value. Setting `cancel` stops the process the same way.

    Raises:
        ExecutorError: the program cannot be started (not found, not executable).
    """
    started_at = time.time()
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    except OSError as exc:
        raise ExecutorError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc

    assert proc.stdout is not None
    stdout = proc.stdout

    def pump() -> None:
        for chunk in iter(lambda: stdout.readline(_MAX_LINE), b""):
            log.line(chunk)

    reader = threading.Thread(target=pump, name=f"build-log-{proc.pid}", daemon=True)
    reader.start()
    timed_out = cancelled = False
    try:
        while proc.poll() is None:
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            try:
                proc.wait(timeout=min(_POLL, remaining))
            except subprocess.TimeoutExpired:
                pass
    finally:
        # Always clean the group: on a kill, and also after a normal exit, because a
        # daemonised grandchild would otherwise keep the pipe (and the reader) open.
        if proc.poll() is None:
            _kill_group(proc)
        else:
            signal_group(proc.pid, signal.SIGKILL)
        reader.join(timeout=_KILL_GRACE)
        if not reader.is_alive():   # closing under a blocked reader would race it
            stdout.close()
    killed = timed_out or cancelled
    return ProcessOutcome(
        exit_code=None if killed else proc.returncode, timed_out=timed_out, cancelled=cancelled,
        started_at=started_at, duration=time.monotonic() - t0,
    )
