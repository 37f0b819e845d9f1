"""Who owns a piece of work in the store: a process, named by host, pid and identity.

Deployments and rollback executions record their owner so that a lock held by a process that
died can be told from one held by a process that still works. The identity is the boot id and
the process's start time: a pid reused after a restart or a reboot does not pass for the owner.
Identities written before the boot id was added (bare start times) are still understood.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

__all__ = ["Owner", "current_owner", "owner_alive", "process_identity"]

Owner = tuple[int, str, str | None]  # pid, host, identity


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_BOOT = _boot_id()


def process_identity(pid: int) -> str | None:
    """`<boot id>:<start time>` of a live process; None when it is gone (or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return f"{_BOOT}:{fields[19]}"


def current_owner() -> Owner:
    pid = os.getpid()
    return pid, socket.gethostname(), process_identity(pid)


def owner_alive(row: Any) -> bool:
    """Whether the owner recorded in `row` (owner_pid, owner_host, owner_start) still runs.

    An owner on another host cannot be checked from here: it is taken to be alive.
    """
    if row["owner_pid"] is None:
        return False
    if row["owner_host"] != socket.gethostname():
        return True
    now = process_identity(int(row["owner_pid"]))
    recorded = row["owner_start"]
    if now is None or not recorded:
        return False
    return bool(recorded == now or (":" not in recorded and now.endswith(":" + recorded)))
