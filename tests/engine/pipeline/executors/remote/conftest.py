"""Real services for the remote executors: three sshd "hosts" on 127.0.0.1, started once per session.

Each host has its own sshd, host key, port and HOME, as separate machines would. `kill_host`
drops a host the way a crash or a network cut does for its clients (the daemon and its session
processes die; the jobs it started keep running), `revive_host` brings it back on the same port
with the same host key.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.deploy.conftest import services, unavailable

__all__ = ["kill_host", "processes_with", "revive_host"]


@pytest.fixture(scope="session")
def pool_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    base = tmp_path_factory.mktemp("sshpool")
    client_key = base / "id_ed25519"
    ports = services.PortPool(18500, 18599)
    servers: list[Any] = []
    try:
        try:
            services.make_key(client_key)
            servers.extend(services.start_sshd(base / f"host{i}", ports.take(), client_key=client_key)
                           for i in range(3))
        except services.ServiceUnavailable as exc:
            unavailable(str(exc))
        known_hosts = base / "known_hosts"
        known_hosts.write_text("".join(s.known_hosts.read_text() for s in servers))
        for s in servers:
            s.known_hosts = known_hosts
        yield servers
    finally:
        for s in servers:
            s.stop()


def pools_yaml(hosts: list[Any], *, name: str = "default", max_jobs: int = 2, extra: str = "") -> str:
    first = hosts[0]
    lines = [
        "pools:",
        f"  {name}:",
        f"    user: {first.user}",
        f"    key_file: {first.key_path}",
        f"    known_hosts: {first.known_hosts}",
        f"    work_dir: {first.root.parent / 'jobs'}",
        f"    max_jobs: {max_jobs}",
        "    unhealthy_for: 1",
        "    grace: 1",
        "    hosts:",
    ]
    for i, h in enumerate(hosts):
        lines += [f"      - host: {h.host}", f"        port: {h.port}", f"        name: h{i}",
                  f"        work_dir: {h.root / 'jobs'}"]
    return "\n".join(lines) + "\n" + extra


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kill_host(server: Any) -> None:
    """SIGKILL the host's sshd and its session processes; what the sessions started lives on."""
    doomed, todo = [server.pid], [server.pid]
    while todo:
        for child in _children(todo.pop()):
            if _comm(child).startswith("sshd"):
                doomed.append(child)
                todo.append(child)
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def revive_host(server: Any) -> None:
    """Start the host's sshd again (same config, port and host key)."""
    config = server.root / "sshd_config"
    deadline = time.monotonic() + 15
    while True:
        server.log_path.write_text("")
        subprocess.run(["/usr/sbin/sshd", "-f", str(config), "-E", str(server.log_path)], check=True)
        while time.monotonic() < deadline:
            text = server.log_path.read_text(errors="replace")
            pid = (server.root / "sshd.pid").read_text().strip() if (server.root / "sshd.pid").exists() else ""
            if "Server listening on 127.0.0.1" in text and pid.isdigit():   # sshd logs before it writes its pid
                server.pid = int(pid)
                return
            if "Cannot bind" in text:
                break
            time.sleep(0.05)
        if time.monotonic() >= deadline:
            raise RuntimeError(f"sshd on port {server.port} did not come back:\n{text[-1000:]}")
        time.sleep(0.2)   # the port is still held by the killed daemon's socket


def processes_with(marker: str) -> list[int]:
    """Processes of this machine whose environment holds `marker` (NAME=value)."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry))
    return found
