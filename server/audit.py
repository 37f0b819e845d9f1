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
    """sha256 of the canonical JSON of a call's arguments (the arguments themselves are not kept)."""
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
        self._store.execute(
            "INSERT INTO audit (ts, transport, caller, level, tool, args_sha256, decision, reason, outcome,"
            " duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.ts, record.transport, record.caller, record.level, record.tool, record.args_sha256,
             record.decision, record.reason, record.outcome, record.duration_ms),
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


def now() -> float:
    return time.time()
