"""The audit log: one row per trust decision, in the state store's `audit` table."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from engine.store import Store

__all__ = ["AuditLog", "AuditRecord", "args_digest"]


def args_digest(arguments: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a call's arguments (the arguments themselves are not kept).

    Any JSON string can be digested, a lone surrogate ("\\udcff") included: 'surrogatepass' encodes it
    to bytes valid UTF-8 never produces, so every other string keeps the digest it always had.
    """
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


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


class AuditLog:
    def __init__(self, store: Store) -> None:
        self._store = store

    def write(self, record: AuditRecord) -> None:
        """Store one record. A lone surrogate (valid in JSON, refused by SQLite) in a client-chosen text
        such as the tool name is kept as its escape ("\\udcff"): the record is never lost to it."""
        self._store.execute(
            "INSERT INTO audit (ts, transport, caller, level, tool, args_sha256, decision, reason, outcome,"
            " duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.ts, _storable(record.transport), _storable(record.caller), _storable(record.level),
             _storable(record.tool), record.args_sha256, _storable(record.decision), _storable(record.reason),
             _storable(record.outcome), record.duration_ms),
        )

    def recent(self, limit: int = 50, *, tool: str | None = None, since: float | None = None) -> list[AuditRecord]:
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
        rows = self._store.query(sql, params)
        return [
            AuditRecord(r["ts"], r["transport"], r["caller"], r["level"], r["tool"], r["args_sha256"],
                        r["decision"], r["reason"], r["outcome"], r["duration_ms"])
            for r in reversed(rows)
        ]


def _storable(text: str | None) -> str | None:
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def now() -> float:
    return time.time()
