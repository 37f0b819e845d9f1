"""The access repository: bearer tokens and the trust gate's audit log (tables `tokens`, `audit`).

The only place their SQL lives. What a token or a decision means (levels, expiry, how a
caller is named) belongs to the server; here they are rows of plain values.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.store.base import Store

__all__ = [
    "AuditRecord",
    "TokenRecord",
    "add_token",
    "recent_audit",
    "revoke_token",
    "token_by_hash",
    "token_named",
    "tokens",
    "write_audit",
]


@dataclass(frozen=True)
class TokenRecord:
    name: str
    level: str
    created_at: float
    revoked_at: float | None
    expires_at: float | None
    environments: tuple[str, ...] | None = None   # None: any environment
    tools: tuple[str, ...] | None = None          # None: any tool


@dataclass(frozen=True)
class AuditRecord:
    ts: float
    transport: str
    caller: str
    level: str
    tool: str
    args_sha256: str
    decision: str
    reason: str | None
    outcome: str | None
    duration_ms: float


_TOKEN_COLUMNS = "name, level, created_at, revoked_at, expires_at, environments_json, tools_json"


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(str(n) for n in json.loads(text))


def _token(row: Any) -> TokenRecord:
    return TokenRecord(row["name"], row["level"], row["created_at"], row["revoked_at"], row["expires_at"],
                       _names(row["environments_json"]), _names(row["tools_json"]))


def add_token(store: Store, name: str, sha256: str, level: str, created_at: float, expires_at: float | None,
              *, environments: Sequence[str] | None = None, tools: Sequence[str] | None = None) -> None:
    """Raises:
    ConflictError: a token of that name or hash exists (as the store reports a unique key taken).
    """
    store.execute(
        "INSERT INTO tokens (name, sha256, level, created_at, expires_at, environments_json, tools_json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (name, sha256, level, created_at, expires_at,
         None if environments is None else json.dumps(list(environments)),
         None if tools is None else json.dumps(list(tools))),
    )


def tokens(store: Store) -> list[TokenRecord]:
    """Every stored token, oldest first."""
    return [_token(r) for r in store.query(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_at")]


def token_named(store: Store, name: str) -> TokenRecord | None:
    row = store.query_one(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE name = ?", (name,))
    return None if row is None else _token(row)


def token_by_hash(store: Store, sha256: str) -> TokenRecord | None:
    row = store.query_one(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE sha256 = ?", (sha256,))
    return None if row is None else _token(row)


def revoke_token(store: Store, name: str, at: float) -> bool:
    """Revoke the live token `name`; False when there is no such live token."""
    changed = store.execute("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (at, name))
    return bool(changed)


def write_audit(store: Store, record: AuditRecord) -> None:
    """Store one record. A lone surrogate (valid in JSON, refused by SQLite) in a client-chosen text
    such as the tool name is kept as its escape ("\\udcff"): the record is never lost to it."""
    store.execute(
        "INSERT INTO audit (ts, transport, caller, level, tool, args_sha256, decision, reason, outcome,"
        " duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (record.ts, _storable(record.transport), _storable(record.caller), _storable(record.level),
         _storable(record.tool), record.args_sha256, _storable(record.decision), _storable(record.reason),
         _storable(record.outcome), record.duration_ms),
    )


def recent_audit(store: Store, limit: int = 50, *, tool: str | None = None,
                 since: float | None = None) -> list[AuditRecord]:
    """The newest `limit` records (of `tool`, from `since` on), oldest first."""
    sql = "SELECT * FROM audit WHERE 1=1"
    params: list[Any] = []
    if tool:
        sql += " AND tool = ?"
        params.append(tool)
    if since is not None:
        sql += " AND ts >= ?"
        params.append(since)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    rows = store.query(sql, params)
    return [
        AuditRecord(r["ts"], r["transport"], r["caller"], r["level"], r["tool"], r["args_sha256"],
                    r["decision"], r["reason"], r["outcome"], r["duration_ms"])
        for r in reversed(rows)
    ]


def _storable(text: str | None) -> str | None:
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
