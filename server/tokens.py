"""Bearer tokens for SSE/HTTP callers: created once, stored as sha256 hashes, revocable.

Tokens made by `cicd-mcp token create` live in the state store's `tokens` table, which the
gate reads on every call, so a revoked token is refused at its next call without a restart.
Tokens listed in the policy (by hash or environment variable) are fixed for the server's life.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from engine.errors import ConflictError, InputError, NotFoundError
from engine.store import Store
from server.trust import Level, PolicyToken, TrustPolicy, hash_token

__all__ = ["TokenInfo", "TokenStore", "resolve_token"]

_PREFIX = "cicd_"


@dataclass(frozen=True)
class TokenInfo:
    name: str
    level: Level
    created_at: float
    revoked_at: float | None
    source: str   # store | policy


class TokenStore:
    """The `tokens` table."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, level: Level, name: str | None = None) -> tuple[str, TokenInfo]:
        """A new random token; the caller must show it now, it cannot be read back.

        Raises:
            ConflictError: a token of that name exists (revoked ones too: names are not reused).
            InputError: the name is not a plain identifier.
        """
        name = name or f"token-{secrets.token_hex(4)}"
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(name) > 64:
            raise InputError(f"token name {name!r}: use letters, digits, '-', '_' or '.', at most 64 characters")
        token = _PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        if self._store.query_one("SELECT 1 FROM tokens WHERE name = ?", (name,)) is not None:
            raise ConflictError(f"a token named {name!r} already exists; pick another --name")
        self._store.execute(
            "INSERT INTO tokens (name, sha256, level, created_at) VALUES (?, ?, ?, ?)",
            (name, hash_token(token), str(level), now),
        )
        return token, TokenInfo(name, level, now, None, "store")

    def list(self) -> list[TokenInfo]:
        rows = self._store.query("SELECT name, level, created_at, revoked_at FROM tokens ORDER BY created_at")
        return [TokenInfo(r["name"], Level(r["level"]), r["created_at"], r["revoked_at"], "store") for r in rows]

    def revoke(self, name: str) -> None:
        """Raises:
        NotFoundError: no live token of that name in the store.
        """
        changed = self._store.execute(
            "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (time.time(), name)
        )
        if not changed:
            raise NotFoundError(
                f"no live token named {name!r} in the state store (see `cicd-mcp token list`; "
                "tokens listed in the trust policy are removed by editing the policy)"
            )

    def lookup(self, digest: str) -> tuple[str, Level, bool] | None:
        """(name, level, revoked) of the token with this sha256, or None."""
        row = self._store.query_one("SELECT name, level, revoked_at FROM tokens WHERE sha256 = ?", (digest,))
        if row is None:
            return None
        return row["name"], Level(row["level"]), row["revoked_at"] is not None


def resolve_token(
    token: str, policy_tokens: dict[str, PolicyToken], tokens: TokenStore
) -> tuple[str, Level] | str:
    """(caller name, level) for a presented token, or the reason it is refused."""
    digest = hash_token(token)
    for known, entry in policy_tokens.items():
        # Constant-time compare: the digest is of a secret.
        if hmac.compare_digest(known, digest):
            return f"token:{entry.name}", entry.level
    found = tokens.lookup(digest)
    if found is None:
        return "the bearer token is not recognised (unknown token)"
    name, level, revoked = found
    if revoked:
        return f"the bearer token {name!r} has been revoked; ask the operator for a new one"
    return f"token:{name}", level


def policy_token_infos(policy: TrustPolicy) -> list[TokenInfo]:
    return [TokenInfo(t.name, t.level, 0.0, None, "policy") for t in policy.http.tokens]
