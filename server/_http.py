"""The HTTP edge: what every SSE / streamable HTTP request passes before the MCP SDK sees it.

`Guard` is one ASGI middleware, applied in this order to each request:
1. Host and Origin must name this server (DNS-rebinding protection, on whatever address it is
   bound to: the SDK's own check knows only 127.0.0.1, localhost and ::1). 421 / 403.
2. A bearer token, when presented, must be valid. 401.
3. The caller becomes the request's principal (`scope["user"]`, and the SDK's auth context), so the
   SDK binds its sessions and sealed `requestState` to it as well.
4. A session belongs to the principal that opened it: a request, response, cancellation or stream
   read carrying another principal's session id is answered as if the session did not exist. 404.
   (SSE carries the session id in the URL, so it is treated as public.)
5. A principal may hold only so many sessions and streams (`limits:` of the policy, by level). 429.
Every refusal is audited (tool `<METHOD> <path>`, decision `denied`, the reason and the client's
address), so probing shows in `cicd-mcp audit`; a flood does not become a flood of rows: within
REFUSAL_WINDOW seconds of an audited refusal, more of the same kind (same principal, status, error
and reason) are counted, and the window closes with one row saying how many and from which addresses.

Slow clients are cut off below ASGI, in the HTTP protocol (`timed_h11_protocol`): uvicorn has no
timeout while a request's headers or body are arriving, so a client sending one byte a minute would
hold its connection (and a file descriptor) for ever.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import anyio
import h11
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from uvicorn.protocols.http.h11_impl import H11Protocol

from server.audit import AuditRecord, args_digest
from server.gate import CicdServer
from server.oauth import METADATA_PATH, looks_like_jwt
from server.trust import Caller

__all__ = ["Guard", "HostCheck", "audit_timeout", "timed_h11_protocol"]

_SESSION_HEADER = "mcp-session-id"
_SSE_SESSION = re.compile(rb"session_id=([0-9a-fA-F]{32})")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
REFUSAL_WINDOW = 10.0   # seconds in which repeated refusals of one kind are counted, not written
_ADDRESSES_NAMED = 5    # client addresses a window's summary names


# -- 1. Host / Origin ----------------------------------------------------------------------------


def _split_host(value: str) -> str:
    """The host part of a Host header value (no port, no brackets), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value   # a bare IPv6 address, or a name without a port


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class HostCheck:
    """Which Host (and Origin host) values a server bound to `bind` answers to.

    An IP literal is accepted when it is the bind address (any address when bound to all of them:
    a request by IP is not a rebinding, whose whole point is a name the attacker controls). A name is
    accepted when it is configured (`http.allowed_hosts`) or, for a loopback bind, `localhost`.
    """

    bind: str
    names: frozenset[str] = frozenset()
    ips: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset()
    any_ip: bool = False

    @classmethod
    def for_bind(cls, bind: str, configured: list[str]) -> HostCheck:
        names = {_split_host(n) for n in configured}
        ips = {ip for ip in (_ip(n) for n in names) if ip is not None}
        names = {n for n in names if _ip(n) is None}
        bound = _ip(_split_host(bind))
        any_ip = bound is not None and bound.is_unspecified
        loopback = bind.strip().lower() == "localhost" or (bound is not None and bound.is_loopback)
        if bound is not None and not any_ip:
            ips.add(bound)
        elif bound is None:
            names.add(_split_host(bind))
        if loopback:
            names.add("localhost")
            ips.update(ipaddress.ip_address(a) for a in ("127.0.0.1", "::1"))
        return cls(bind, frozenset(names), frozenset(ips), any_ip)

    def accepts(self, host: str) -> bool:
        name = _split_host(host)
        ip = _ip(name)
        if ip is not None:
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            return self.any_ip or ip in self.ips
        return name in self.names

    def origin_accepted(self, origin: str) -> bool:
        parts = urlsplit(origin.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False   # "null" (sandboxed frames, file://) and anything that is not a web origin
        return self.accepts(parts.netloc)


# -- sessions and streams, by principal -------------------------------------------------------------


@dataclass
class _Sessions:
    """Session id -> the principal that opened it (and when it was last used)."""

    idle_timeout: float
    owners: dict[str, str] = field(default_factory=dict)
    last_used: dict[str, float] = field(default_factory=dict)
    opening: dict[str, int] = field(default_factory=dict)   # opening requests in flight, by principal

    def owner(self, sid: str) -> str | None:
        return self.owners.get(sid)

    def bind(self, sid: str, principal: str) -> None:
        self.owners[sid] = principal
        self.last_used[sid] = time.monotonic()

    def touch(self, sid: str) -> None:
        if sid in self.owners:
            self.last_used[sid] = time.monotonic()

    def drop(self, sid: str) -> None:
        self.owners.pop(sid, None)
        self.last_used.pop(sid, None)

    def count(self, principal: str) -> int:
        """Live sessions of `principal`; those idle past the SDK's idle timeout are gone there too."""
        cutoff = time.monotonic() - self.idle_timeout
        for sid in [s for s, t in self.last_used.items() if t < cutoff]:
            self.drop(sid)
        return sum(1 for p in self.owners.values() if p == principal) + self.opening.get(principal, 0)


class Guard:
    """ASGI middleware in front of the SDK's SSE or streamable HTTP app (see the module docstring)."""

    def __init__(self, app: Any, server: CicdServer, hosts: HostCheck, *, session_idle_timeout: float) -> None:
        self.app = AuthContextMiddleware(app)
        self.server = server
        self.hosts = hosts
        self.sessions = _Sessions(session_idle_timeout)
        self._bursts: dict[tuple[str, int, str, str], _Burst] = {}

    def flush_refusals(self) -> None:
        """Write the summary of every open window of refusals (at shutdown)."""
        bursts, self._bursts = self._bursts, {}
        for burst in bursts.values():
            self._summarize(burst)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            async def receive_until_shutdown() -> Any:
                message = await receive()
                if message["type"] == "lifespan.shutdown":
                    self.flush_refusals()   # what was only counted so far is written before the process ends
                return message

            await self.app(scope, receive_until_shutdown, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        oauth = self.server.state.oauth
        if oauth is not None:
            scheme, _, token = headers.get("authorization", "").strip().partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and looks_like_jwt(token) and oauth.cached(token) is None:
                # Verified here, off the event loop (it may fetch the JWKS); the gate then hits the cache.
                await anyio.to_thread.run_sync(oauth.verify, token)
        caller = self.server.caller_from_headers(headers)
        host, origin = headers.get("host", ""), headers.get("origin")
        if not host or not self.hosts.accepts(host):
            await self._refuse(scope, send, caller, 421, "misdirected_request",
                               f"the Host header {host[:200]!r} does not name this server (bound to "
                               f"{self.hosts.bind}; other names go in http.allowed_hosts)", started)
            return
        if origin is not None and not self.hosts.origin_accepted(origin):
            await self._refuse(scope, send, caller, 403, "forbidden_origin",
                               f"the Origin {origin[:200]!r} is not this server's (bound to {self.hosts.bind})",
                               started)
            return
        if oauth is not None and scope.get("method") == "GET" and scope.get("path", "").startswith(METADATA_PATH):
            await _json(send, 200, oauth.metadata())
            return
        if caller.refused is not None:
            await self._refuse(scope, send, caller, 401, "invalid_token", caller.refused, started,
                               audit_as="invalid-token")
            return
        scope["user"] = AuthenticatedUser(AccessToken(token=caller.name, client_id=caller.name,
                                                      scopes=[str(caller.level)]))
        sid = headers.get(_SESSION_HEADER) or _query_session(scope)
        if sid is not None:
            owner = self.sessions.owner(sid)
            if owner is not None and owner != caller.name:
                await self._refuse(scope, send, caller, 404, "session_not_found",
                                   f"session {sid[:8]}... belongs to another caller; a session is used only by the "
                                   "principal that opened it", started)
                return
        method, path = scope.get("method", ""), scope.get("path", "")
        if method == "GET" and (path.rstrip("/").endswith("/sse") or sid is not None):
            await self._stream(scope, receive, send, caller, sid, started)
            return
        opening = method == "POST" and sid is None and not headers.get("mcp-protocol-version", "").startswith("2026")
        if opening and path.rstrip("/").endswith("/mcp"):
            if self.sessions.count(caller.name) >= self.server.state.policy.limits_for(caller.level).sessions:
                limit = self.server.state.policy.limits_for(caller.level).sessions
                await self._refuse(scope, send, caller, 429, "too_many_sessions",
                                   f"too many open sessions for this caller ({caller.name}, level {caller.level}: "
                                   f"{limit} of {limit}); end one (DELETE) or wait for an idle one to expire",
                                   started)
                return
            # Counted from admission, not from the response: concurrent openings must not all pass.
            self.sessions.opening[caller.name] = self.sessions.opening.get(caller.name, 0) + 1
            try:
                await self.app(scope, receive, self._binding_send(send, caller.name))
            finally:
                left = self.sessions.opening[caller.name] - 1
                if left:
                    self.sessions.opening[caller.name] = left
                else:
                    del self.sessions.opening[caller.name]
            return
        if sid is not None:
            self.sessions.touch(sid)   # now too: a call may outlast the idle timeout the registry prunes by
        await self.app(scope, receive, send)
        if sid is not None:
            if method == "DELETE":
                self.sessions.drop(sid)
            else:
                self.sessions.touch(sid)

    def _binding_send(self, send: Any, principal: str) -> Any:
        """`send`, binding the session id the SDK hands out in its response headers to `principal`."""
        async def bound(message: Any) -> None:
            if message["type"] == "http.response.start":
                for key, value in message.get("headers", []):
                    if key.decode("latin-1").lower() == _SESSION_HEADER:
                        self.sessions.bind(value.decode("latin-1"), principal)
            await send(message)

        return bound

    async def _stream(self, scope: Any, receive: Any, send: Any, caller: Caller, sid: str | None,
                      started: float) -> None:
        """A long-lived GET: an SSE session (its id is in the first event) or a session's stream."""
        usage, policy = self.server.state.usage, self.server.state.policy
        refusal = usage.take(policy, caller.name, caller.level, "streams")
        if refusal is not None:
            await self._refuse(scope, send, caller, 429, "too_many_streams", refusal, started)
            return
        opened: list[str] = []

        async def bound(message: Any) -> None:
            if sid is None and not opened and message["type"] == "http.response.body":
                found = _SSE_SESSION.search(message.get("body", b""))
                if found:
                    # The SDK's SSE session id is a UUID written as hex in the endpoint URL.
                    opened.append(found.group(1).decode().lower())
                    self.sessions.bind(opened[0], caller.name)
            await send(message)

        try:
            await self.app(scope, receive, bound)
        finally:
            usage.give(caller.name, "streams")
            for s in opened:
                self.sessions.drop(s)

    async def _refuse(self, scope: Any, send: Any, caller: Caller, status: int, error: str, reason: str,
                      started: float, *, audit_as: str | None = None) -> None:
        client = scope.get("client")
        where = f"{client[0]}:{client[1]}" if client else "an unknown address"
        record = AuditRecord(
            ts=time.time(), transport=self.server.state.transport, caller=audit_as or caller.name,
            level="none" if audit_as else str(caller.level),
            tool=f"{scope.get('method', '?')} {scope.get('path', '?')}", args_sha256=args_digest({}),
            decision="denied", reason=f"{reason} (request from {where}; answered {status})", outcome=None,
            duration_ms=(time.monotonic() - started) * 1000,
        )
        self._audit_refusal((record.caller, status, error, reason), record,
                            client[0] if client else "an unknown address")
        extra: list[tuple[bytes, bytes]] = []
        if status == 401:
            challenge = 'Bearer error="invalid_token"'
            oauth = self.server.state.oauth
            if oauth is not None:
                challenge += f', resource_metadata="{_metadata_url(oauth.settings.resource)}"'
            extra.append((b"www-authenticate", challenge.encode("latin-1")))
        if status == 429:
            extra.append((b"retry-after", b"5"))
        await _json(send, status, {"error": error, "error_description": reason}, extra)


    def _audit_refusal(self, key: tuple[str, int, str, str], record: AuditRecord, address: str) -> None:
        """The first refusal of a kind in a window is written; the others only counted (see the module
        docstring). Without a background task group to close windows, every refusal is written."""
        now = time.monotonic()
        burst = self._bursts.get(key)
        if burst is not None and now - burst.opened < REFUSAL_WINDOW:
            burst.count += 1
            if len(burst.addresses) < _ADDRESSES_NAMED:
                burst.addresses.setdefault(address, None)
            return
        if burst is not None:
            self._summarize(self._bursts.pop(key))
        self.server.state.audit.write(record)
        background = self.server.state.background
        if background is None:
            return
        burst = self._bursts[key] = _Burst(key, record, now)
        background.start_soon(self._close_window, key, burst)

    async def _close_window(self, key: tuple[str, int, str, str], burst: _Burst) -> None:
        await anyio.sleep(REFUSAL_WINDOW)
        if self._bursts.get(key) is burst:
            self._summarize(self._bursts.pop(key))

    def _summarize(self, burst: _Burst) -> None:
        if not burst.count:
            return
        first = burst.first
        _, status, error, reason = burst.key
        named = ", ".join(burst.addresses) + (", ..." if len(burst.addresses) >= _ADDRESSES_NAMED else "")
        self.server.state.audit.write(AuditRecord(
            ts=time.time(), transport=first.transport, caller=first.caller, level=first.level, tool=first.tool,
            args_sha256=first.args_sha256, decision="denied",
            reason=(f"{burst.count} more refused within {REFUSAL_WINDOW:g} s of the one before: {reason} "
                    f"(answered {status} {error}; from {named})"),
            outcome=None, duration_ms=0.0,
        ))


@dataclass
class _Burst:
    """A window of refusals of one kind (principal, status, error, reason): the audited first one,
    and how many followed."""

    key: tuple[str, int, str, str]
    first: AuditRecord
    opened: float
    count: int = 0
    addresses: dict[str, None] = field(default_factory=dict)


async def _json(send: Any, status: int, data: dict[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _metadata_url(resource: str) -> str:
    """RFC 9728: the metadata of https://host/path lives at https://host/.well-known/oauth-protected-resource/path."""
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}{parts.path.rstrip('/')}"


def _query_session(scope: Any) -> str | None:
    """The SSE session id of a POST's query, in the form the SDK keys it by: it reads the value with
    `UUID(hex=...)`, which also takes braces, hyphens, upper case and a `urn:uuid:` prefix."""
    query = scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(query).get("session_id")
    if not values:
        return None
    try:
        return uuid.UUID(hex=values[0]).hex
    except ValueError:
        return str(values[0])   # the SDK refuses it (400)


# -- slow clients ------------------------------------------------------------------------------------


TimeoutHook = Callable[[str, float, Any, "dict[str, Any] | None"], None]
"""Told of each connection closed for slowness: (what was late, the timeout, client address, the
request's scope once its head is in)."""


def audit_timeout(server: CicdServer, what: str, seconds: float, client: Any, scope: dict[str, Any] | None) -> None:
    """The audit row of a connection closed because a request's head or body came too slowly."""
    where = f"{client[0]}:{client[1]}" if client else "an unknown address"
    caller, level, tool = "unknown", "none", "(request head)"
    if scope is not None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        found = server.caller_from_headers(headers)
        caller, level = found.name, str(found.level)
        tool = f"{scope.get('method', '?')} {scope.get('path', '?')}"
    server.state.audit.write(AuditRecord(
        ts=time.time(), transport=server.state.transport, caller=caller, level=level, tool=tool,
        args_sha256=args_digest({}), decision="denied",
        reason=f"the request's {what} did not arrive within {seconds:g} s (request from {where}; connection closed)",
        outcome=None, duration_ms=seconds * 1000,
    ))


def timed_h11_protocol(header_timeout: float, body_timeout: float,
                       on_timeout: TimeoutHook | None = None) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the two timeouts it lacks.

    A request's head must arrive within `header_timeout` of its first byte (or of the connection,
    for the first request), and its body within `body_timeout` of the head; otherwise the connection
    is closed (the app, if it was reading the body, sees a disconnect) and `on_timeout` is told.
    Keep-alive between requests stays uvicorn's own timer.
    """

    class TimedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _phase: Any = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(h11.IDLE, header_timeout)

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE and self._deadline is None:
                self._arm(h11.IDLE, header_timeout)
            super().data_received(data)
            state = self.conn.their_state
            if state is not self._phase:
                self._cancel()
                if state is h11.SEND_BODY:
                    self._arm(h11.SEND_BODY, body_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            super().connection_lost(exc)

        def _arm(self, phase: Any, seconds: float) -> None:
            self._cancel()
            self._phase = phase
            self._deadline = self.loop.call_later(seconds, self._expired, phase)

        def _cancel(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline, self._phase = None, None

        def _expired(self, phase: Any) -> None:
            self._deadline = None
            if self.conn.their_state is phase and not self.transport.is_closing():
                self.transport.close()
                if on_timeout is not None:
                    head = phase is h11.IDLE
                    on_timeout("head" if head else "body", header_timeout if head else body_timeout, self.client,
                               None if head else cast("dict[str, Any]", self.scope))

    return TimedH11Protocol
