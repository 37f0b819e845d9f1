"""LocalExecutor: a job's commands as a real process in its own process group on this host.

Theory of operation. A job's commands become one script run under `bash -eo pipefail` (or
`sh -e`), each command echoed before it runs; a job that is one simple command (no shell
syntax, no builtin, a program on PATH) is executed directly, as make does, because a shell
costs milliseconds that dominate short jobs. The process starts with `start_new_session=True`,
so it and everything it starts share one process group that can be signalled as a whole;
that group id is the job's recovery record. A child that leaves the group (`setsid`, a
double fork) keeps its environment: each job's processes carry a random `CICD_JOB_COOKIE`,
and a timeout, a cancel or recovery also kills every process whose environment holds it
(as Jenkins' process-tree killer does). A process that clears its own environment escapes
that; the sandbox executor's PID namespace does not let it.

One worker thread per running job starts the process (fork+exec of a large process takes
milliseconds the event loop should spend on other jobs), pumps its combined stdout/stderr
into the job's `LogWriter` in bounded chunks and reaps it with `os.wait4`, which also yields
the CPU time of the process and the children it waited for. Memory is measured as the peak
resident set (VmHWM) of the job's processes: the process tree is read often (a few small
/proc reads), the whole group now and then (children a job left to run on their own). When
the leader has exited but a background grandchild keeps the pipe open, the pump stops
reading after a short drain and the group is killed: a job leaves nothing behind. When the
awaiting task is cancelled (timeout, cancel_run, fail fast, the client went away), the group
gets SIGTERM, then SIGKILL after a grace period, and the cancellation goes on up.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import selectors
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping

import anyio
import anyio.to_thread

from engine._process import (
    group_is_session,
    group_peak_rss_kb,
    kill_marked,
    peak_rss_kb,
    signal_group,
    terminate_group,
)
from engine.pipeline.executors.base import CommandResult, JobCommand, OnStart, RecoveryRecord
from engine.pipeline.logs import LogWriter

__all__ = ["COOKIE", "LocalExecutor", "local_argv"]

COOKIE = "CICD_JOB_COOKIE"
"""The environment variable that marks every process of one job (see the module docstring)."""

_DRAIN_AFTER_EXIT = 1.0   # seconds a background grandchild may keep writing after the shell exits
_POLL = 0.1
_TREE_EVERY = 0.02         # seconds between reads of the job's process tree (cheap)
_GROUP_EVERY = (0.05, 0.2, 0.5, 1.0)  # seconds between scans of the whole group: dense at first, then steady
_SHELL_SYNTAX = re.compile(r"""[\n;&|<>()$`\\'"*?\[\]#~=%{}!^]""")
_SHELL_BUILTINS = frozenset({
    "cd", "export", "set", "unset", "source", ".", "eval", "exec", "exit", "alias", "ulimit", "umask", "trap",
    "wait", "read", "shift", "return", "break", "continue", "local", "declare", "typeset", "readonly",
    "if", "then", "else", "fi", "for", "while", "until", "do", "done", "case", "esac", "function", "time",
})


@functools.cache
def _shell(kind: str) -> tuple[str, ...]:
    if kind == "bash" and shutil.which("bash"):
        return ("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c")
    return ("sh", "-e", "-c")


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _direct_argv(command: JobCommand) -> tuple[str, ...] | None:
    """The argv of a job that is one simple command (no shell syntax at all), else None.

    Anything with quoting, variables, globs, redirections, operators or a shell builtin keeps
    the shell.
    """
    if len(command.commands) != 1:
        return None
    text = command.commands[0].strip()
    if not text or _SHELL_SYNTAX.search(text):
        return None
    argv = text.split()
    if argv[0] in _SHELL_BUILTINS or "/" not in argv[0] and _which(argv[0], command.env.get("PATH")) is None:
        return None
    return tuple(argv)


@functools.lru_cache(maxsize=256)
def _which(program: str, path: str | None) -> str | None:
    # Looked up once per run's PATH: a PATH search is a dozen stat calls, per job otherwise.
    return shutil.which(program, path=path)


def _script(commands: tuple[str, ...]) -> str:
    lines = []
    for text in commands:
        echo = text if len(text) < 2000 else text[:2000] + "..."
        lines.append(f"printf '%s\\n' {_sh_quote('$ ' + echo.splitlines()[0] if echo else '$')}")
        lines.append(text)
    return "\n".join(lines) + "\n"


def local_argv(command: JobCommand) -> tuple[tuple[str, ...], str | None]:
    """What LocalExecutor executes for `command`: (argv, the line it echoes to the log first, if any)."""
    if command.argv is not None:
        return command.argv, f"$ {shlex.join(command.argv)}"
    direct = _direct_argv(command)
    if direct is not None:
        return direct, f"$ {shlex.join(direct)}"
    return (*_shell(command.shell), _script(command.commands)), None


class LocalExecutor:
    """Runs jobs as local processes. `grace` is the SIGTERM→SIGKILL delay in seconds."""

    name = "local"

    def __init__(self, *, grace: float = 5.0, max_threads: int = 64) -> None:
        self.grace = grace
        self._limiter = anyio.CapacityLimiter(max_threads)

    def set_capacity(self, workers: int) -> None:
        self._limiter.total_tokens = max(self._limiter.total_tokens, workers + 4)

    async def prepare(self, command: JobCommand) -> None:
        """Nothing to do: the job runs in the workspace the runner filled on this host."""

    def recover(self, record: RecoveryRecord) -> bool:
        pgid, cookie = record.get("pgid"), record.get("cookie")
        killed = False
        # A recorded pgid that now names something else (not a session leader) is not killed.
        if isinstance(pgid, int) and group_is_session(pgid):
            killed = signal_group(pgid, signal.SIGKILL)
        if isinstance(cookie, str) and cookie:
            killed = bool(kill_marked(COOKIE, cookie)) or killed
        return killed

    def _launch(self, command: JobCommand, log: LogWriter) -> tuple[tuple[str, ...], dict[str, str]]:
        """The argv and environment that run `command` (a sandbox wraps them)."""
        if command.network is False:
            log.note("network: false is not enforced by the local executor (the sandbox and docker executors cut "
                     "the network)")
        return self._argv_env(command, log)

    def _argv_env(self, command: JobCommand, log: LogWriter) -> tuple[tuple[str, ...], dict[str, str]]:
        argv, echo = local_argv(command)
        if echo is not None:
            log.feed(echo.encode() + b"\n")
        return argv, dict(command.env)

    def _record(self, pid: int, cookie: str) -> RecoveryRecord:
        return {"pgid": pid, "cookie": cookie}

    async def run(self, command: JobCommand, log: LogWriter, on_start: OnStart | None = None) -> CommandResult:
        """Run the job's commands to the end (see the module docstring)."""
        argv, env = self._launch(command, log)
        cookie = secrets.token_hex(8)
        env[COOKIE] = cookie
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
                        argv, cwd=command.cwd, env=env, stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                    )
                except OSError as exc:
                    outcome["result"] = CommandResult(
                        exit_code=None, infrastructure_error=f"could not start the job's shell: {exc}")
                    return
                flags["pgid"] = proc.pid
                if on_start is not None:
                    on_start(self._record(proc.pid, cookie))
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
                    # What left the group (setsid, double fork) still carries the cookie.
                    await anyio.to_thread.run_sync(kill_marked, COOKIE, cookie)
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
        if isinstance(pgid, int):
            # The worker reaps the leader: the job is over when it has.
            await terminate_group(pgid, grace=self.grace, gone=finished.is_set)


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc/<pid>/task/<tid>/children (no scan of /proc)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children", "rb") as f:
                    todo.extend(int(c) for c in f.read().split())
            except (OSError, ValueError):
                continue
    return found


def _tree_peak_rss_kb(pid: int) -> int:
    """The largest VmHWM (KiB) among `pid` and its descendants (0 for a zombie, which has none)."""
    return peak_rss_kb(_tree(pid))


def _pump(proc: subprocess.Popen[bytes], log: LogWriter) -> CommandResult:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    exited: tuple[int, os.struct_rusage] | None = None  # type: ignore[name-defined]
    exit_time = 0.0
    started = last_check = time.monotonic()
    scans = 0
    next_tree = started
    next_scan = started + _GROUP_EVERY[0]
    peak_kb = 0
    try:
        while True:
            now = time.monotonic()
            if exited is None and now >= next_tree:
                # VmHWM is a high-water mark, but it goes with the process: a short-lived
                # allocation is seen only by a read while its process lives, hence often.
                peak_kb = max(peak_kb, _tree_peak_rss_kb(proc.pid))
                next_tree = now + _TREE_EVERY
            if exited is None and now >= next_scan:
                peak_kb = max(peak_kb, group_peak_rss_kb(proc.pid))
                scans += 1
                next_scan = now + _GROUP_EVERY[min(scans, len(_GROUP_EVERY) - 1)]
            ready = sel.select(min(_POLL, max(0.0, next_tree - now)) if exited is None else _POLL)
            now = time.monotonic()
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
