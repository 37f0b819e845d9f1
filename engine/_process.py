"""Processes as the engine sees them: who owns a piece of work, whether it still runs, and
stopping a whole process group (a job, an instance, a hook) so nothing it started survives.

The only module that reads /proc/<pid>/stat or calls `os.killpg`. A zombie counts as gone
everywhere: it holds no port, no file and no CPU, and its parent may never reap it.

Owners: runs, deployments and rollback executions record (pid, host, identity) so that work
held by a process that died can be told from work of a process that still runs; a run's owner
also holds a lease (see `owner_alive`), the only witness another machine can read. The identity
is the boot id and the process's start time, so a pid reused after a restart or a reboot
does not pass for the owner. Identities written before the boot id was added (bare start
times) are still understood.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio

__all__ = [
    "Owner",
    "current_owner",
    "group_alive",
    "group_is_session",
    "group_peak_rss_kb",
    "kill_marked",
    "owner_alive",
    "peak_rss_kb",
    "process_identity",
    "signal_group",
    "start_time",
    "terminate_group",
]

Owner = tuple[int, str, str | None]  # pid, host, identity


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_BOOT = _boot_id()


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (fields[0] is the state), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot; None when it is gone or a zombie."""
    fields = _stat(pid)
    if fields is None or fields[0] == b"Z":
        return None
    return fields[19].decode()


def process_identity(pid: int) -> str | None:
    """`<boot id>:<start time>` of a live process; None when it is gone (or a zombie)."""
    start = start_time(pid)
    return None if start is None else f"{_BOOT}:{start}"


def current_owner() -> Owner:
    pid = os.getpid()
    return pid, socket.gethostname(), process_identity(pid)


def owner_alive(row: Any, now: float | None = None) -> bool:
    """Whether the owner recorded in `row` (owner_pid, owner_host, owner_start) still runs.

    A row that carries a lease (`lease_expires_at`, renewed by its owner) is the owner's only
    while the lease lasts, wherever the owner runs: across machines, leases rather than pids.
    On this host a dead pid is gone at once, without waiting for the lease to run out. An
    owner on another host without a lease cannot be checked from here: it is taken to be alive.
    """
    expires = row.get("lease_expires_at") if isinstance(row, Mapping) else None
    if expires is not None and float(expires) <= (time.time() if now is None else now):
        return False
    if row["owner_host"] and row["owner_host"] != socket.gethostname():
        return True
    if row["owner_pid"] is None:
        return False
    identity = process_identity(int(row["owner_pid"]))
    recorded = row["owner_start"]
    if identity is None or not recorded:
        return False
    return bool(recorded == identity or (":" not in recorded and identity.endswith(":" + recorded)))


def signal_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False when it no longer exists (or is not ours to signal)."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _members(pgid: int) -> list[int]:
    """The live (non-zombie) processes of a process group."""
    found: list[int] = []
    try:
        entries = os.scandir("/proc")
    except OSError:
        return found
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] != b"Z" and int(fields[2]) == pgid:
                found.append(int(entry.name))
    return found


def group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is in the group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return bool(_members(pgid))


def group_is_session(pgid: int) -> bool:
    """True when `pgid` still leads a process group and session of its own (as a job started with
    `start_new_session` does): a recorded pgid that now names something else is not killed."""
    fields = _stat(pgid)
    return fields is not None and int(fields[2]) == pgid and int(fields[3]) == pgid


def group_peak_rss_kb(pgid: int) -> int:
    """The largest peak resident set (VmHWM, KiB) of the live processes of a process group.

    Why sample /proc rather than trust wait4's ru_maxrss: a child forked from this (large)
    Python process carries our memory image until it execs, and the kernel keeps that in
    ru_maxrss — every job would look as big as the engine. VmHWM is reset at exec, so it
    measures the job's own programs.
    """
    return peak_rss_kb(_members(pgid))


def peak_rss_kb(pids: Iterable[int]) -> int:
    """The largest VmHWM (KiB) among `pids` (0 for those gone, and for zombies, which have none)."""
    peak = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
                        break
        except (OSError, ValueError, IndexError):
            continue
    return peak


def kill_marked(name: str, value: str, *, rounds: int = 5) -> int:
    """SIGKILL every process whose environment holds `name=value`; returns how many were killed.

    What a job started and then lost from its process group (`setsid`, a double fork) still
    carries the job's environment. A process forking while it is scanned is caught by the next
    round: the scan repeats until a round finds nothing.
    """
    needle = f"{name}={value}".encode() + b"\0"
    me, killed = os.getpid(), 0
    for _ in range(rounds):
        found = 0
        try:
            entries = list(os.scandir("/proc"))
        except OSError:
            return killed
        for entry in entries:
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    env = b"\0" + f.read()
            except OSError:
                continue
            if b"\0" + needle in env or env.endswith(b"\0" + needle[:-1]):
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                    found += 1
                except (ProcessLookupError, PermissionError):
                    continue
        killed += found
        if not found:
            break
    return killed


async def terminate_group(
    pgid: int, *, grace: float, gone: Callable[[], bool] | None = None, poll: float = 0.02,
) -> bool:
    """SIGTERM a process group, SIGKILL it after `grace` seconds, wait until it is gone.

    `gone` says when the caller's own view of the work ended (its leader reaped by a waiting
    thread, say); without it, the group's live members are looked up. Returns False when the
    group still has live members 2 s after SIGKILL (a process in uninterruptible sleep).
    """
    def finished() -> bool:
        return gone() if gone is not None else not group_alive(pgid)

    if not signal_group(pgid, signal.SIGTERM):
        return True
    deadline = time.monotonic() + grace
    while not finished() and time.monotonic() < deadline:
        await anyio.sleep(poll)
    signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while not finished() and time.monotonic() < deadline:
        await anyio.sleep(poll)
    return finished()
