"""The audit log: one record per trust decision, written to two sinks.

- the state store's `audit` table (`engine.store.access`), which `cicd-mcp audit` reads and filters;
- an append-only JSONL file (`<workspace>/audit.jsonl`) whose lines form a hash chain: each line
  carries the previous line's hash and its own, sha256 over the previous hash and the record's
  canonical JSON. `cicd-mcp audit verify` (`verify_chain`) walks it and names the first line that
  was edited, deleted, reordered or cut, so the file is evidence even when the database is not.

Appends take an exclusive `flock` on the file and read the last hash back from it, so several
server processes sharing a workspace extend one chain.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.store import Store, access
from engine.store.access import AuditRecord

__all__ = ["AuditLog", "AuditRecord", "ChainReport", "GENESIS", "args_digest", "verify_against_table", "verify_chain"]

GENESIS = "0" * 64
"""The `prev` of the first line of a chain."""


def args_digest(arguments: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a call's arguments (the arguments themselves are not kept).

    Any JSON string can be digested, a lone surrogate ("\\udcff") included: 'surrogatepass' encodes it
    to bytes valid UTF-8 never produces, so every other string keeps the digest it always had.
    """
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _canonical(record: dict[str, Any]) -> bytes:
    # ensure_ascii: a lone surrogate in a client-chosen text is written as its escape, never lost.
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _link(prev: str, record: dict[str, Any]) -> str:
    return hashlib.sha256(prev.encode("ascii") + b"\n" + _canonical(record)).hexdigest()


def _last_hash(fd: int) -> str:
    """The `hash` of the file's last complete line (GENESIS for an empty file)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return GENESIS
    window = 4096
    while True:
        start = max(0, size - window)
        data = os.pread(fd, size - start, start)
        lines = data.rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or start == 0:
            try:
                return str(json.loads(lines[-1])["hash"])
            except (ValueError, KeyError, TypeError):
                # A broken tail: chain on from it anyway (verify reports it); never lose the new record.
                return hashlib.sha256(lines[-1]).hexdigest()
        window *= 4


class AuditLog:
    def __init__(self, store: Store, jsonl: Path | None = None) -> None:
        self._store = store
        self._jsonl = jsonl
        self._lock = threading.Lock()

    @property
    def jsonl(self) -> Path | None:
        return self._jsonl

    def write(self, record: AuditRecord) -> None:
        access.write_audit(self._store, record)
        if self._jsonl is not None:
            self._append(asdict(record))

    def _append(self, record: dict[str, Any]) -> None:
        assert self._jsonl is not None
        with self._lock:
            fd = os.open(self._jsonl, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                rfd = os.open(self._jsonl, os.O_RDONLY)
                try:
                    prev = _last_hash(rfd)
                finally:
                    os.close(rfd)
                line = {**record, "prev": prev, "hash": _link(prev, record)}
                os.write(fd, _canonical(line) + b"\n")
            finally:
                os.close(fd)   # closing releases the flock

    def recent(self, limit: int = 50, *, tool: str | None = None, since: float | None = None) -> list[AuditRecord]:
        return access.recent_audit(self._store, limit, tool=tool, since=since)


@dataclass(frozen=True)
class ChainReport:
    records: int
    problem: str | None = None   # None: the chain is intact
    line: int | None = None      # 1-based line of the first problem


def verify_chain(path: Path) -> ChainReport:
    """Walk the JSONL chain at `path`: every line's `prev` must be the line before's `hash`, and its
    `hash` must match its content.

    Raises:
        OSError: the file cannot be read.
    """
    prev = GENESIS
    count = 0
    with path.open("rb") as f:
        # Shared lock: a server appending meanwhile finishes its line first (no half line read as "cut").
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                return ChainReport(count, "the last line is cut short (no newline): the file was truncated", number)
            try:
                line = json.loads(raw)
                stated_prev, stated_hash = line.pop("prev"), line.pop("hash")
            except (ValueError, KeyError, TypeError, AttributeError):
                return ChainReport(count, "not a chain record (unreadable JSON or no prev/hash)", number)
            if stated_prev != prev:
                return ChainReport(count, "its prev does not match the line before: a line was deleted, inserted "
                                          "or moved before it", number)
            if _link(prev, line) != stated_hash:
                return ChainReport(count, "its content does not match its hash: the line was edited", number)
            prev = stated_hash
            count += 1
    return ChainReport(count)


_COMPARED = ("ts", "transport", "caller", "level", "tool", "args_sha256", "decision", "reason", "outcome")


def verify_against_table(store: Store, path: Path) -> ChainReport:
    """`verify_chain`, then the table against the chain: from the chain's first record on, the table must
    hold the same records in the same order (a row edited or deleted in the database shows here, and so
    does a line deleted from the end of the file, which the chain alone cannot tell).

    Raises:
        OSError: the file cannot be read.
    """
    report = verify_chain(path)
    if report.problem is not None or report.records == 0:
        return report
    with path.open("rb") as f:
        chained = [json.loads(raw) for raw in f]
    rows = access.recent_audit(store, report.records + 100_000, since=chained[0]["ts"])
    for number, (line, row) in enumerate(zip(chained, rows, strict=False), start=1):
        stored = json.loads(_canonical(asdict(row)))
        if any(line.get(k) != stored.get(k) for k in _COMPARED):
            return ChainReport(report.records, "the audit table's record differs from this line: a row was "
                                               "edited or deleted in the database", number)
    if len(rows) != len(chained):
        more = "table" if len(rows) > len(chained) else "file"
        return ChainReport(report.records, f"the audit table has {len(rows)} records since the chain began and "
                                           f"the file {len(chained)}: the {more} has records the other lacks "
                                           "(lines cut from the end of the file, or rows added to the table)",
                           min(len(rows), len(chained)) + 1)
    return report
