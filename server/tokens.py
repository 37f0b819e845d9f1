"""Bearer tokens for SSE/HTTP callers: created once, stored as sha256 hashes, expiring, revocable.

Tokens made by `cicd-mcp token create` live in the state store's `tokens` table, which the
gate reads on every call, so a revoked or expired token is refused at its next call without a
restart. They expire after 90 days unless `--expires-in` says otherwise (`never` for no expiry).
Tokens listed in the policy (by hash or environment variable) live as long as the policy says
(`expires`, optional) and are otherwise fixed for the server's life.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import ConflictError, InputError, NotFoundError
from engine.store import Store, access
from server.trust import Level, PolicyToken, TrustPolicy, hash_token

__all__ = ["Grant", "TokenInfo", "TokenStore", "parse_lifetime", "resolve_token"]

_PREFIX = "cicd_"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_lifetime(text: str) -> float | None:
    """Seconds for a lifetime such as `90d`, `12h`, `30m`, `2w`, or None for `never`.

    Raises:
        InputError: not a positive number followed by s, m, h, d or w, nor `never`.
    """
    if text.strip().lower() == "never":
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if m is None or float(m.group(1)) <= 0:
        raise InputError(f"token lifetime {text!r}: give a positive number and a unit (e.g. 90d, 12h, 30m) or 'never'")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


@dataclass(frozen=True)
class TokenInfo:
    name: str
    level: Level
    created_at: float
    revoked_at: float | None
    source: str   # store | policy
    expires_at: float | None = None
    environments: tuple[str, ...] | None = None   # None: any environment
    tools: tuple[str, ...] | None = None          # None: any tool

    def scope(self) -> str:
        """'' for an unlimited token, else what it is limited to (for listings)."""
        parts = []
        if self.environments is not None:
            parts.append("environments " + (",".join(self.environments) or "(none)"))
        if self.tools is not None:
            parts.append("tools " + (",".join(self.tools) or "(none)"))
        return "; ".join(parts)

    def state(self, now: float | None = None) -> str:
        """live | revoked <when> | expired <when> (for listings)."""
        if self.revoked_at is not None:
            return "revoked " + _utc(self.revoked_at)
        if self.expires_at is not None and self.expires_at <= (time.time() if now is None else now):
            return "expired " + _utc(self.expires_at)
        return "live" + (f" until {_utc(self.expires_at)}" if self.expires_at is not None else ", never expires")


class TokenStore:
    """Stored tokens as the server sees them (levels, names it accepts); their rows live in
    `engine.store.access`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def create(
        self, level: Level, name: str | None = None, *, lifetime: float | None = 90 * 86400.0,
        environments: Sequence[str] | None = None, tools: Sequence[str] | None = None,
    ) -> tuple[str, TokenInfo]:
        """A new random token; the caller must show it now, it cannot be read back. It is refused
        `lifetime` seconds from now (None: never expires). With `environments` / `tools`, its calls may
        change only those environments and call only those tools.

        Raises:
            ConflictError: a token of that name exists (revoked ones too: names are not reused).
            InputError: the name, an environment or a tool is not a plain identifier.
        """
        name = name or f"token-{secrets.token_hex(4)}"
        if not _plain(name):
            raise InputError(f"token name {name!r}: use letters, digits, '-', '_' or '.', at most 64 characters")
        for kind, names in (("environment", environments), ("tool", tools)):
            bad = [n for n in names or () if not _plain(n)]
            if bad:
                raise InputError(f"{kind} name {bad[0]!r}: use letters, digits, '-', '_' or '.'")
        token = _PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        if access.token_named(self._store, name) is not None:
            raise ConflictError(f"a token named {name!r} already exists; pick another --name")
        expires_at = None if lifetime is None else now + lifetime
        envs = None if environments is None else tuple(environments)
        allowed = None if tools is None else tuple(tools)
        access.add_token(self._store, name, hash_token(token), str(level), now, expires_at,
                         environments=envs, tools=allowed)
        return token, TokenInfo(name, level, now, None, "store", expires_at, envs, allowed)

    def list(self) -> list[TokenInfo]:
        return [_info(r) for r in access.tokens(self._store)]

    def revoke(self, name: str) -> None:
        """Raises:
        NotFoundError: no live token of that name in the store.
        """
        if not access.revoke_token(self._store, name, time.time()):
            raise NotFoundError(
                f"no live token named {name!r} in the state store (see `cicd-mcp token list`; "
                "tokens listed in the trust policy are removed by editing the policy)"
            )

    def lookup(self, digest: str) -> TokenInfo | None:
        """The token with this sha256, or None."""
        found = access.token_by_hash(self._store, digest)
        return None if found is None else _info(found)


def _plain(name: str) -> bool:
    return bool(name) and len(name) <= 64 and name.replace("-", "").replace("_", "").replace(".", "").isalnum()


def _info(r: access.TokenRecord) -> TokenInfo:
    return TokenInfo(r.name, Level(r.level), r.created_at, r.revoked_at, "store", r.expires_at, r.environments,
                     r.tools)


@dataclass(frozen=True)
class Grant:
    """What a valid token grants: who the caller is, its level, and what it is limited to."""

    caller: str
    level: Level
    environments: frozenset[str] | None = None
    tools: frozenset[str] | None = None


def _frozen(names: Sequence[str] | None) -> frozenset[str] | None:
    return None if names is None else frozenset(names)


def resolve_token(token: str, policy_tokens: dict[str, PolicyToken], tokens: TokenStore) -> Grant | str:
    """What a presented token grants, or the reason it is refused."""
    digest = hash_token(token)
    now = time.time()
    for known, entry in policy_tokens.items():
        # Constant-time compare: the digest is of a secret.
        if hmac.compare_digest(known, digest):
            expires_at = entry.expires.timestamp() if entry.expires is not None else None
            if expires_at is not None and expires_at <= now:
                return (f"the bearer token {entry.name!r} expired at {_utc(expires_at)} (the trust policy's "
                        "`expires`); ask the operator for a new one")
            return Grant(f"token:{entry.name}", entry.level, _frozen(entry.environments), _frozen(entry.tools))
    found = tokens.lookup(digest)
    if found is None:
        return "the bearer token is not recognised (unknown token)"
    if found.revoked_at is not None:
        return f"the bearer token {found.name!r} has been revoked; ask the operator for a new one"
    if found.expires_at is not None and found.expires_at <= now:
        return f"the bearer token {found.name!r} expired at {_utc(found.expires_at)}; ask the operator for a new one"
    return Grant(f"token:{found.name}", found.level, _frozen(found.environments), _frozen(found.tools))


def policy_token_infos(policy: TrustPolicy) -> list[TokenInfo]:
    return [
        TokenInfo(t.name, t.level, 0.0, None, "policy", t.expires.timestamp() if t.expires is not None else None,
                  None if t.environments is None else tuple(t.environments),
                  None if t.tools is None else tuple(t.tools))
        for t in policy.http.tokens
    ]
