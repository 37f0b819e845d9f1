"""Transports: stdio (default), SSE and streamable HTTP.

HTTP binds 127.0.0.1 unless told otherwise, and refuses another address while no live bearer
token exists (anyone on the network would be an anonymous caller). Every HTTP request passes
the `Guard` (server/_http.py: Host/Origin, bearer token, session owner, per-caller limits, each
refusal audited) and uvicorn's h11 protocol with header and body timeouts; the gate checks the
token again inside tools/call, where it decides the level.
"""

from __future__ import annotations

import ipaddress
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from engine.errors import InputError
from server._transports import TRANSPORTS
from server.gate import CicdServer

__all__ = ["SESSION_IDLE_TIMEOUT", "check_bind", "http_app", "run"]

SESSION_IDLE_TIMEOUT = 30 * 60.0   # the SDK's default, named here because the Guard counts sessions by it


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(server: CicdServer, host: str) -> None:
    """Raises:
    InputError: a non-loopback address while no live token (not revoked, not expired) exists.
    """
    if _is_loopback(host):
        return
    state = server.state
    if state.policy.http.oauth is not None:
        return   # callers authenticate with the authorization server's tokens
    now = time.time()
    live = [t for t in state.tokens.list()
            if t.revoked_at is None and (t.expires_at is None or t.expires_at > now)]
    live_policy = [t for t in state.policy_tokens.values() if t.expires is None or t.expires.timestamp() > now]
    if not live_policy and not live:
        raise InputError(
            f"refusing to listen on {host}: no bearer token is configured (none that is neither revoked nor "
            "expired), so anyone who can reach it would be a caller. Create one with `cicd-mcp token create "
            "--level verified` (or list one in the trust policy), or listen on 127.0.0.1."
        )


def http_app(server: CicdServer, transport: str, host: str) -> Any:
    """The SDK's SSE or streamable HTTP app behind the `Guard` (server/_http.py)."""
    from mcp.server.transport_security import TransportSecuritySettings

    from server._http import Guard, HostCheck

    # The Guard checks Host and Origin on every bind address; the SDK's own check (which knows only
    # 127.0.0.1, localhost and ::1, and turns itself off elsewhere) would only disagree with it.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    if transport == "sse":
        app = server.sse_app(host=host, transport_security=security)
    else:
        app = server.streamable_http_app(host=host, transport_security=security,
                                         session_idle_timeout=SESSION_IDLE_TIMEOUT)
    hosts = HostCheck.for_bind(host, server.state.policy.http.allowed_hosts)
    return Guard(app, server, hosts, session_idle_timeout=SESSION_IDLE_TIMEOUT)


async def _serve_http(server: CicdServer, transport: str, host: str, port: int) -> None:
    import uvicorn

    from server._http import audit_timeout, timed_h11_protocol

    # Recovered at process start, not at the first session's lifespan: orphaned jobs of a killed
    # server must not run on until a client connects.
    server.state.recover()
    app = http_app(server, transport, host)
    # One task group for the process: runs started with wait=false outlive the HTTP session.
    async with anyio.create_task_group() as tg:
        server.state.background = tg
        # Idle connections must outlive the clients' own pools (httpx keeps them 5 s): with
        # uvicorn's default of 5 s the server closes a connection just as a client reuses it,
        # and that request fails with a ReadError (seen under bench/load.py).
        http = server.state.policy.http
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                                timeout_keep_alive=75,
                                http=timed_h11_protocol(http.header_timeout, http.body_timeout,
                                                        partial(audit_timeout, server)))
        await uvicorn.Server(config).serve()
        tg.cancel_scope.cancel()


def run(server: CicdServer, transport: str = "stdio", *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until stopped.

    Raises:
        InputError: unknown transport, or a refused bind address.
    """
    if transport not in TRANSPORTS:
        raise InputError(f"unknown transport {transport!r}; use one of {', '.join(TRANSPORTS)}")
    # Which file decides who may do what: said once, where the operator looks (stdout is the protocol's).
    source = server.state.policy.source
    shown = str(Path(source).resolve()) if not source.startswith("<") else source
    print(f"cicd-mcp: trust policy: {shown}", file=sys.stderr, flush=True)
    if transport == "stdio":
        anyio.run(server.run_stdio_async)
        return
    check_bind(server, host)
    anyio.run(_serve_http, server, transport, host, port)
