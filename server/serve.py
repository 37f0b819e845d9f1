"""Transports: stdio (default), SSE and streamable HTTP.

HTTP binds 127.0.0.1 unless told otherwise, and refuses another address while no bearer
token exists (anyone on the network would be an anonymous caller). Every HTTP request's
bearer token is checked as it arrives (a token that is unknown or revoked gets 401, and an
audit record, so token guessing shows in `cicd-mcp audit`); the gate checks it again inside
tools/call, where it decides the level.
"""

from __future__ import annotations

import ipaddress
import json
import time
from typing import Any

import anyio

from engine.errors import InputError
from server._transports import TRANSPORTS
from server.audit import AuditRecord, args_digest
from server.gate import CicdServer
from server.tokens import resolve_token

__all__ = ["BearerCheck", "check_bind", "run"]



def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(server: CicdServer, host: str) -> None:
    """Raises:
    InputError: a non-loopback address while no token is configured.
    """
    if _is_loopback(host):
        return
    state = server.state
    live = [t for t in state.tokens.list() if t.revoked_at is None]
    if not state.policy_tokens and not live:
        raise InputError(
            f"refusing to listen on {host}: no bearer token is configured, so anyone who can reach it would "
            "be a caller. Create one with `cicd-mcp token create --level verified` (or list one in the trust "
            "policy), or listen on 127.0.0.1."
        )


class BearerCheck:
    """ASGI middleware: a request that presents a token must present a valid one.

    A refused request is answered 401 before its body is read, and audited like a refused tool call:
    caller 'invalid-token', level 'none', tool '<METHOD> <path>' (the tool it meant is in the unread
    body), decision 'denied', and the reason with the client's address.
    """

    def __init__(self, app: Any, server: CicdServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            auth = None
            for key, value in scope.get("headers", []):
                if key == b"authorization":
                    auth = value.decode("latin-1")
            if auth is not None:
                started = time.monotonic()
                problem = self._problem(auth)
                if problem is not None:
                    self._audit(scope, problem, started)
                    await _reject(send, problem)
                    return
        await self.app(scope, receive, send)

    def _problem(self, auth: str) -> str | None:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "the Authorization header must be 'Bearer <token>'"
        state = self.server.state
        found = resolve_token(token.strip(), state.policy_tokens, state.tokens)
        return found if isinstance(found, str) else None

    def _audit(self, scope: Any, problem: str, started: float) -> None:
        client = scope.get("client")
        where = f"{client[0]}:{client[1]}" if client else "an unknown address"
        self.server.state.audit.write(AuditRecord(
            ts=time.time(), transport=self.server.state.transport, caller="invalid-token", level="none",
            tool=f"{scope.get('method', '?')} {scope.get('path', '?')}", args_sha256=args_digest({}),
            decision="denied", reason=f"{problem} (request from {where}; answered 401)", outcome=None,
            duration_ms=(time.monotonic() - started) * 1000,
        ))


async def _reject(send: Any, message: str) -> None:
    body = json.dumps({"error": "invalid_token", "error_description": message}).encode()
    await send({
        "type": "http.response.start", "status": 401,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer error="invalid_token"')],
    })
    await send({"type": "http.response.body", "body": body})


def http_app(server: CicdServer, transport: str, host: str) -> Any:
    if transport == "sse":
        app = server.sse_app(host=host)
    else:
        app = server.streamable_http_app(host=host)
    return BearerCheck(app, server)


async def _serve_http(server: CicdServer, transport: str, host: str, port: int) -> None:
    import uvicorn

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
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                                timeout_keep_alive=75)
        await uvicorn.Server(config).serve()
        tg.cancel_scope.cancel()


def run(server: CicdServer, transport: str = "stdio", *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until stopped.

    Raises:
        InputError: unknown transport, or a refused bind address.
    """
    if transport not in TRANSPORTS:
        raise InputError(f"unknown transport {transport!r}; use one of {', '.join(TRANSPORTS)}")
    if transport == "stdio":
        anyio.run(server.run_stdio_async)
        return
    check_bind(server, host)
    anyio.run(_serve_http, server, transport, host, port)
