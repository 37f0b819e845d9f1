"""SQLite store: stdlib sqlite3, WAL, one connection per thread, migrations by name.

Writers take the lock up front (`BEGIN IMMEDIATE`) and wait for it (busy timeout);
a writer that still finds the database locked retries with backoff, so concurrent
runs, the server and the CLI never show "database is locked" to a user. The threads of
one store (a runner's event loop and its executors' threads) first queue on a lock of
the store's own: SQLite's busy handler polls, sleeping a millisecond and more each time,
where a thread waiting on a lock is woken the moment the writer before it commits. sqlite3's
errors are translated here and nowhere else: a constraint (or a trigger's RAISE(ABORT))
that refuses a write is a `ConflictError`, any other failure a `StoreError`.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TypeVar

from engine.errors import ConflictError, StoreError
from engine.store.base import Params, Row

__all__ = ["SQLiteStore"]

_BUSY_TIMEOUT_MS = 30_000
_LOCK_RETRIES = 8
_T = TypeVar("_T")


def _migrations() -> list[tuple[int, str, str]]:
    """(number, file name, script) of every SQLite migration, in order. The name recorded as
    applied is the bare file name (as before the migrations moved under a dialect folder)."""
    found = []
    for entry in resources.files("engine.store").joinpath("migrations", "sqlite").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _translate(exc: sqlite3.Error, doing: str) -> Exception:
    if isinstance(exc, sqlite3.IntegrityError):
        return ConflictError(f"the state store refused the write, it conflicts with what is stored: {exc}")
    return StoreError(f"{doing} failed: {exc}")


def _rows(cur: sqlite3.Cursor) -> list[Row]:
    if cur.description is None:
        return []
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _one(cur: sqlite3.Cursor) -> Row | None:
    row = cur.fetchone()
    if row is None or cur.description is None:
        return None
    return dict(zip([d[0] for d in cur.description], row, strict=True))


class _Transaction:
    """The reads and writes of one open transaction (`SQLiteStore.transaction`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return fn(self._conn)
        except sqlite3.Error as exc:
            raise _translate(exc, "store statement") from exc

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        return self._run(lambda c: _rows(c.execute(sql, params)))

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        return self._run(lambda c: _one(c.execute(sql, params)))

    def iterate(self, sql: str, params: Params = ()) -> Iterator[Row]:
        try:
            cur = self._conn.execute(sql, params)
            cols = [d[0] for d in cur.description or ()]
            for r in cur:
                yield dict(zip(cols, r, strict=True))
        except sqlite3.Error as exc:
            raise _translate(exc, "store query") from exc

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._run(lambda c: c.execute(sql, params).rowcount)

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        return self._run(lambda c: c.executemany(sql, rows).rowcount)


class SQLiteStore:
    """The embedded default store. Safe to share between threads and processes."""

    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        # Reentrant: a thread that writes inside its own transaction gets SQLite's error, as before, not a deadlock.
        self._write_lock = threading.RLock()
        self._migrate()

    # -- connections -------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
                )
                conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the state store {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------------------
    def query(self, sql: str, params: Params = ()) -> list[Row]:
        return self._retry(lambda c: _rows(c.execute(sql, params)))

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        return self._retry(lambda c: _one(c.execute(sql, params)))

    def iterate(self, sql: str, params: Params = ()) -> Iterator[Row]:
        try:
            cur = self._conn().execute(sql, params)
            cols = [d[0] for d in cur.description or ()]
            for r in cur:
                yield dict(zip(cols, r, strict=True))
        except sqlite3.Error as exc:
            raise _translate(exc, "store query") from exc

    # -- writes ------------------------------------------------------------------------------
    def execute(self, sql: str, params: Params = ()) -> int:
        return self._write(lambda c: c.execute(sql, params).rowcount)

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        held = list(rows)  # a retry after "locked" must see them again
        return self._write(lambda c: c.executemany(sql, held).rowcount)

    def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """`fn` in a write transaction of its own, retried while the database is locked."""

        def run(conn: sqlite3.Connection) -> _T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return result

        with self._write_lock:
            return self._retry(run)

    @contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        conn = self._conn()
        with self._write_lock:
            for attempt in range(_LOCK_RETRIES):
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as exc:
                    if not _is_locked(exc) or attempt == _LOCK_RETRIES - 1:
                        raise StoreError(f"store transaction failed: {exc}") from exc
                    time.sleep(0.05 * 2**attempt)
            try:
                yield _Transaction(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK")
                    raise _translate(exc, "store commit") from exc

    def _retry(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._conn()
        for attempt in range(_LOCK_RETRIES):
            try:
                return fn(conn)
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc) or attempt == _LOCK_RETRIES - 1:
                    raise StoreError(f"store operation failed: {exc}") from exc
                time.sleep(0.05 * 2**attempt)
            except sqlite3.Error as exc:
                raise _translate(exc, "store operation") from exc
        raise AssertionError("unreachable")

    # -- schema ------------------------------------------------------------------------------
    def _migrate(self) -> None:
        # Applied migrations are recorded by name, not as one high-water number: areas of the
        # engine add their migrations independently, and one numbered below another that is
        # already applied must still run.
        conn = self._conn()
        try:
            conn.execute("BEGIN EXCLUSIVE")
            fresh = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone() is None
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL)")
            if fresh:
                _adopt_earlier_migrations(conn)
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
            for number, name, sql in _migrations():
                if name in done:
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
                conn.execute(f"PRAGMA user_version = {max(number, conn.execute('PRAGMA user_version').fetchone()[0])}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"cannot migrate the state store {self.path}: {exc}") from exc


def _adopt_earlier_migrations(conn: sqlite3.Connection) -> None:
    """A store from before migrations were recorded by name: a migration counts as applied
    when every table it creates is there (numbers alone could hide one that was skipped)."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for _number, name, sql in _migrations():
        created = re.findall(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", sql, flags=re.IGNORECASE)
        if created and all(t in tables for t in created):
            conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                         (name, time.time()))


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (sqlite3.complete_statement knows where they end)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            stmt = buf.strip()
            if stmt and not all(part.strip().startswith("--") for part in stmt.splitlines() if part.strip()):
                out.append(stmt)
            buf = ""
    if buf.strip() and not buf.strip().startswith("--"):
        out.append(buf.strip())
    return out
