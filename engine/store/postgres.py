"""PostgreSQL store: a team's shared state, selected by `PIPELINE_STORE_URL=postgresql://...`.

psycopg 3 with a connection pool (psycopg_pool): each statement borrows a connection in
autocommit mode (one round trip), `transaction()` holds one for its block. Repositories
write `?` placeholders; they are translated to psycopg's `%s` once per statement text.
Rows come back as dicts; `numeric` (what SUM over integers gives) comes back as int or
float as SQLite would give it, and a bool parameter is sent as 0/1 (the schema keeps
SQLite's integer flags).

Errors are translated here and nowhere else. A constraint that refuses a write, or a
trigger that raises with a constraint SQLSTATE (class 23), is a `ConflictError`; losing
the server (refused, reset, shut down) is retried with backoff for `retry_for` seconds
(a write whose connection broke after the server committed it may so be applied twice:
the engine's writes are upserts or guarded updates, metrics and audit rows excepted);
anything else is a `StoreError`. Messages name the URL with its password masked.

Change notifications (`notify`, `listen`) use LISTEN/NOTIFY on a connection of their own;
see `engine.store.notify`.
"""

from __future__ import annotations

import functools
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg import sql as pgsql
from psycopg.adapt import Loader
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from engine.errors import ConflictError, StoreError
from engine.store.base import Params, Row

__all__ = ["PostgresStore", "mask_url"]

_T = TypeVar("_T")
_MIGRATION_LOCK = 0x63696364  # any constant: one migrator at a time across processes
_CONNECT_TIMEOUT = 5  # seconds, per connection attempt
_BACKOFF_MAX = 2.0


def mask_url(url: str) -> str:
    """The URL with its password (in the authority or a `password=` parameter) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = userinfo.split(":", 1)[0] + ":***@" + host
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@functools.lru_cache(maxsize=1024)
def _translate_sql(sql: str) -> str:
    """`?` placeholders to `%s`, and a literal `%` to `%%`, outside quoted text."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


def _params(params: Params) -> list[Any]:
    return [int(p) if isinstance(p, bool) else p for p in params]


class _NumericLoader(Loader):
    """numeric as SQLite would return it: an int when integral text, else a float."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        if text.lstrip("-").isdigit():
            return int(text)
        return float(text)


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_loader("numeric", _NumericLoader)


def _conflict_message(exc: psycopg.errors.IntegrityError) -> str:
    diag = exc.diag
    what = diag.message_primary or str(exc)
    where = ""
    detail = diag.message_detail or ""
    cols = re.match(r"Key \(([^)]*)\)", detail)
    if diag.table_name and cols:
        where = " (" + ", ".join(f"{diag.table_name}.{c.strip()}" for c in cols.group(1).split(",")) + ")"
    elif diag.table_name and diag.column_name:
        where = f" ({diag.table_name}.{diag.column_name})"
    return f"the state store refused the write, it conflicts with what is stored: {what}{where}"


def _lost(exc: BaseException) -> bool:
    """The server could not be reached or went away: worth another try on a fresh connection."""
    return isinstance(exc, (psycopg.OperationalError, PoolTimeout)) and not isinstance(
        exc, psycopg.errors.QueryCanceled)


class _Transaction:
    """The reads and writes of one open transaction (`PostgresStore.transaction`)."""

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any]) -> None:
        self._store = store
        self._conn = conn

    def _run(self, fn: Callable[[psycopg.Cursor[Any]], _T]) -> _T:
        try:
            with self._conn.cursor() as cur:
                return fn(cur)
        except psycopg.Error as exc:
            raise self._store._translate(exc, "store statement") from exc

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        return self._run(lambda c: c.execute(_translate_sql(sql), _params(params)).fetchall())

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        return self._run(lambda c: c.execute(_translate_sql(sql), _params(params)).fetchone())

    def iterate(self, sql: str, params: Params = ()) -> Iterator[Row]:
        yield from self.query(sql, params)

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._run(lambda c: c.execute(_translate_sql(sql), _params(params)).rowcount)

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        held = [_params(r) for r in rows]
        if not held:
            return 0

        def run(cur: psycopg.Cursor[Any]) -> int:
            cur.executemany(_translate_sql(sql), held)
            return cur.rowcount

        return self._run(run)


class PostgresStore:
    """A store in a PostgreSQL database, shared by every server and runner that names it.

    Raises (constructor):
        StoreError: the database cannot be reached within `connect_timeout` seconds, or
            its migration failed (the message names the URL, password masked).
    """

    dialect = "postgresql"

    def __init__(
        self, url: str, *, pool_size: int = 8, connect_timeout: float = 10.0, retry_for: float = 30.0,
        migrate: bool = True,
    ) -> None:
        self.url = url
        self.masked_url = mask_url(url)
        self.retry_for = retry_for
        try:  # one plain connection first: its error says why (refused, auth, no such database)
            psycopg.Connection.connect(url, connect_timeout=max(1, round(connect_timeout))).close()
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the state store {self.masked_url}: {self._why(exc)}") from exc
        self._pool = ConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), open=False, timeout=_CONNECT_TIMEOUT,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": _CONNECT_TIMEOUT},
            configure=_configure, name="cicd-store", reconnect_timeout=0,
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            self._pool.close()
            raise StoreError(f"cannot connect to the state store {self.masked_url}: {self._why(exc)}") from exc
        self._closed = False
        if migrate:
            try:
                self._migrate()
            except BaseException:
                self.close()
                raise

    # -- errors ------------------------------------------------------------------------------
    def _why(self, exc: BaseException) -> str:
        text = str(exc).strip() or type(exc).__name__
        if isinstance(exc, PoolTimeout):
            text = f"no connection within the timeout ({text})"
        return text.replace(self.url, self.masked_url)

    def _translate(self, exc: BaseException, doing: str) -> Exception:
        if isinstance(exc, psycopg.errors.IntegrityError):
            return ConflictError(_conflict_message(exc))
        if _lost(exc):
            return StoreError(f"the state store {self.masked_url} is unreachable: {self._why(exc)}")
        return StoreError(f"{doing} failed on {self.masked_url}: {self._why(exc)}")

    # -- connections -------------------------------------------------------------------------
    def _retry(self, fn: Callable[[psycopg.Connection[Any]], _T], doing: str) -> _T:
        """`fn` on a pooled connection; a lost server is retried with backoff for `retry_for` s."""
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while True:
            try:
                with self._pool.connection() as conn:
                    return fn(conn)
            except (psycopg.Error, PoolTimeout) as exc:
                if not _lost(exc) or time.monotonic() + delay > deadline:
                    raise self._translate(exc, doing) from exc
            time.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)

    def close(self) -> None:
        if not getattr(self, "_closed", True):
            self._closed = True
            self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------------------
    def query(self, sql: str, params: Params = ()) -> list[Row]:
        q, p = _translate_sql(sql), _params(params)
        return self._retry(lambda c: c.execute(q, p).fetchall(), "store query")

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        q, p = _translate_sql(sql), _params(params)
        return self._retry(lambda c: c.execute(q, p).fetchone(), "store query")

    def iterate(self, sql: str, params: Params = ()) -> Iterator[Row]:
        """Rows through a server-side cursor, a batch at a time (the result is never held whole)."""
        q, p = _translate_sql(sql), _params(params)
        try:
            with self._pool.connection() as conn, conn.transaction():
                with conn.cursor(name="cicd_" + secrets.token_hex(6)) as cur:
                    cur.itersize = 1000
                    cur.execute(q, p)
                    yield from cur
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._translate(exc, "store query") from exc

    # -- writes ------------------------------------------------------------------------------
    def execute(self, sql: str, params: Params = ()) -> int:
        q, p = _translate_sql(sql), _params(params)
        return self._retry(lambda c: c.execute(q, p).rowcount, "store write")

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        held = list(rows)  # a retry must see them again
        with self.transaction() as tx:
            return tx.executemany(sql, held)

    @contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while True:  # only taking the connection and BEGIN are retried: the block runs once
            try:
                cm = self._pool.connection()
                conn = cm.__enter__()
            except (psycopg.Error, PoolTimeout) as exc:
                if not _lost(exc) or time.monotonic() + delay > deadline:
                    raise self._translate(exc, "store transaction") from exc
                time.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            break
        try:
            try:
                with conn.transaction():
                    yield _Transaction(self, conn)
            except psycopg.Error as exc:
                raise self._translate(exc, "store transaction") from exc
        except BaseException as exc:
            cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            cm.__exit__(None, None, None)

    # -- change notifications ----------------------------------------------------------------
    def notify(self, channel: str, payload: str = "") -> None:
        """Send `payload` to every listener of `channel` (delivered at commit)."""
        self.execute("SELECT pg_notify(?, ?)", (channel, payload))

    def listen(self, channels: Sequence[str]) -> _Listener:
        """A subscription to `channels` on a connection of its own (see engine.store.notify).

        Raises:
            StoreError: the database cannot be reached.
        """
        return _Listener(self, channels)

    # -- schema ------------------------------------------------------------------------------
    def _migrate(self) -> None:
        # Recorded by name as in SQLite; several servers starting at once take turns through
        # an advisory lock, and each migration commits with its record or not at all.
        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                             "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION)")
                done = {r["name"] for r in conn.execute("SELECT name FROM schema_migrations").fetchall()}
                for _number, name, script in _migrations():
                    if name in done:
                        continue
                    conn.execute(script.encode())  # a script: several statements, no parameters
                    conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (%s, %s)",
                                 (name, time.time()))

        try:
            self._retry(run, "migration")
        except StoreError as exc:
            raise StoreError(f"cannot migrate the state store {self.masked_url}: {exc}") from exc


def _migrations() -> list[tuple[int, str, str]]:
    """(number, file name, script) of every PostgreSQL migration, in order."""
    found = []
    for entry in resources.files("engine.store").joinpath("migrations", "postgresql").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class _Listener:
    """LISTEN on a dedicated autocommit connection; `wait` returns what arrived."""

    def __init__(self, store: PostgresStore, channels: Sequence[str]) -> None:
        self._store = store
        self._lock = threading.Lock()
        try:
            self._conn = psycopg.Connection.connect(store.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT)
            for channel in channels:
                self._conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(channel)))
        except psycopg.Error as exc:
            raise store._translate(exc, "listen") from exc

    def wait(self, timeout: float) -> list[tuple[str, str]]:
        """(channel, payload) of the notifications that arrive within `timeout` seconds: returns
        as soon as one arrives, with any others already queued behind it; [] when none did.

        Raises:
            StoreError: the connection was lost.
        """
        got: list[tuple[str, str]] = []
        with self._lock:
            try:
                got.extend((n.channel, n.payload) for n in self._conn.notifies(timeout=max(0.0, timeout), stop_after=1))
                if got:  # drain what is already here without waiting again
                    got.extend((n.channel, n.payload) for n in self._conn.notifies(timeout=0, stop_after=None))
            except psycopg.Error as exc:
                raise self._store._translate(exc, "listen") from exc
        return got

    def close(self) -> None:
        self._conn.close()
