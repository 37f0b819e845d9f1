"""SSH sessions for the SSH target: one paramiko client per host, reused while its transport
lives, and the one place paramiko and socket errors become `TargetError`.

Host keys are checked against `known_hosts` with paramiko's RejectPolicy: an unknown or
changed host key is refused, never trusted on first use. Paramiko calls block, so `on_host`
runs them in worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from engine.errors import TargetError

__all__ = ["SSHEndpoint", "SSHSessions", "parse_host"]

T = TypeVar("T")


@dataclass(frozen=True)
class SSHEndpoint:
    """Where and as whom to log in; `label` names the host in messages."""

    label: str
    host: str
    port: int
    user: str


def parse_host(raw: Any) -> Any:
    """A host written `name` or `name:port` in a config, as the mapping its model reads; anything
    else is left to the model to check."""
    if isinstance(raw, str):
        host, _, port = raw.rpartition(":") if raw.count(":") == 1 else (raw, "", "")
        return {"host": host or raw, "port": int(port)} if port.isdigit() else {"host": raw}
    return raw


class SSHSessions:
    def __init__(
        self, *, known_hosts: Path, key_file: Path | None, connect_timeout: float, command_timeout: float
    ) -> None:
        self.known_hosts = known_hosts
        self.key_file = key_file
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, ep: SSHEndpoint) -> Any:
        """A connected paramiko client for the host (blocking; raises paramiko's and OSError)."""
        import paramiko

        with self._lock:
            client = self._clients.get(ep.label)
            transport = client.get_transport() if client is not None else None
            if transport is not None and transport.is_active():
                return client
            known = self.known_hosts.expanduser()
            client = paramiko.SSHClient()
            if known.is_file():
                client.load_host_keys(str(known))
            # Never trust on first use: a host whose key is not in known_hosts is refused.
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.connect(
                ep.host, port=ep.port, username=ep.user,
                key_filename=str(self.key_file.expanduser()) if self.key_file else None,
                look_for_keys=self.key_file is None, allow_agent=self.key_file is None,
                timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
            )
            self._clients[ep.label] = client
            return client

    def forget(self, label: str) -> None:
        with self._lock:
            client = self._clients.pop(label, None)
        if client is not None:
            client.close()

    async def on_host(self, ep: SSHEndpoint, what: str, fn: Callable[[Any], T]) -> T:
        """Run `fn(client)` for the host in a worker thread; paramiko and socket errors become TargetError."""
        import paramiko

        def run() -> T:
            try:
                return fn(self.client(ep))
            except TargetError as exc:  # a remote command failed: say where and while doing what
                raise TargetError(f"ssh {ep.label}: {what}: {exc}") from exc
            except paramiko.BadHostKeyException as exc:
                self.forget(ep.label)
                raise TargetError(
                    f"ssh {ep.label}: {what}: the host key does not match {self.known_hosts} "
                    f"(got {exc.key.get_name()} {exc.key.get_base64()[:24]}...); refusing to connect"
                ) from exc
            except paramiko.SSHException as exc:
                self.forget(ep.label)
                text = str(exc)
                if "not found in known_hosts" in text:
                    raise TargetError(
                        f"ssh {ep.label}: {what}: its host key is not in {self.known_hosts}; an "
                        f"unknown host is refused, never trusted on first use (verify its fingerprint and "
                        f"add it, e.g. ssh-keyscan -p {ep.port} {ep.host})"
                    ) from exc
                raise TargetError(f"ssh {ep.label}: {what}: {text or type(exc).__name__}") from exc
            except OSError as exc:  # refused, unreachable, timed out, SFTP I/O
                self.forget(ep.label)
                raise TargetError(f"ssh {ep.label}: {what}: {exc}") from exc

        return await anyio.to_thread.run_sync(run)

    def exec(self, client: Any, command: str, *, check: bool = True) -> tuple[int, str, str]:
        """Run a shell command; (exit code, stdout, stderr).

        Raises:
            TargetError: with `check`, the command exited non-zero (its output says why).
        """
        stdin, stdout, stderr = client.exec_command(command, timeout=self.command_timeout)
        stdin.close()
        out = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace")
        code = int(stdout.channel.recv_exit_status())
        if check and code != 0:
            detail = (err or out).strip()[-800:]
            raise TargetError(f"remote command failed (exit {code}): {detail or command[:200]}")
        return code, out, err

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
