"""Owners of store locks: a live process is told from a dead one and from a reused pid."""

from __future__ import annotations

import os
import socket
import subprocess

from engine._process import current_owner, owner_alive, process_identity


def row(pid: int | None, host: str, start: str | None) -> dict[str, object]:
    return {"owner_pid": pid, "owner_host": host, "owner_start": start}


def test_this_process_is_alive_under_its_identity_and_the_legacy_one() -> None:
    pid, host, identity = current_owner()
    assert pid == os.getpid() and host == socket.gethostname() and identity
    assert owner_alive(row(pid, host, identity))
    legacy = identity.rsplit(":", 1)[1]  # start time alone, as stores written before boot ids hold
    assert owner_alive(row(pid, host, legacy))
    assert not owner_alive(row(pid, host, identity + "1"))  # same pid, another process
    assert not owner_alive(row(pid, host, "another-boot:" + legacy))  # same pid and start, another boot
    assert not owner_alive(row(None, host, identity))


def test_a_finished_process_is_dead_and_another_host_is_not_ours_to_judge() -> None:
    child = subprocess.Popen(["sleep", "30"])
    identity = process_identity(child.pid)
    assert identity is not None and owner_alive(row(child.pid, socket.gethostname(), identity))
    child.kill()
    child.wait()
    assert process_identity(child.pid) is None
    assert not owner_alive(row(child.pid, socket.gethostname(), identity))
    assert owner_alive(row(child.pid, "elsewhere.example", identity))
