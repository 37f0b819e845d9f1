"""The audit log: one record per trust decision, kept by `engine.store.access` (table `audit`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from engine.store import Store, access
from engine.store.access import AuditRecord

__all__ = ["AuditLog", "AuditRecord", "args_digest"]


def args_digest(arguments: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a call's arguments (the arguments themselves are not kept).

    Any JSON string can be digested, a lone surrogate ("\\udcff") included: 'surrogatepass' encodes it
    to bytes valid UTF-8 never produces, so every other string keeps the digest it always had.
    """
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class AuditLog:
    def __init__(self, store: Store) -> None:
        self._store = store

    def write(self, record: AuditRecord) -> None:
        access.write_audit(self._store, record)

    def recent(self, limit: int = 50, *, tool: str | None = None, since: float | None = None) -> list[AuditRecord]:
        return access.recent_audit(self._store, limit, tool=tool, since=since)
