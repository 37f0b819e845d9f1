"""The Store protocol: what the engine needs from its state store, in any SQL dialect.

SQLite (`engine.store.sqlite.SQLiteStore`) is the embedded default; a PostgreSQL store
implements the same calls. SQL lives only in the repository modules of this package (one
per area: runs, deployments, rollbacks, insights, access), always parameterised with `?`
placeholders (a store whose driver wants another style translates them). Where a query
must differ by dialect, the repository branches on `store.dialect`.

Rows are plain mappings read by column name (never by position: drivers disagree on
that). A store translates its driver's errors once, where they enter: a constraint that
refuses a write (unique key, a trigger's abort) becomes `ConflictError`, anything else
`StoreError`. Each dialect keeps its migrations under `migrations/<dialect>/`, applied in
order of their number and recorded by file name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["Params", "Row", "Store", "Transaction"]

Row = Mapping[str, Any]
"""One result row: column name -> value."""

Params = Sequence[Any]
"""Values for the `?` placeholders of one statement, in order."""


class Transaction(Protocol):
    """The reads and writes of one transaction (see `Store.transaction`)."""

    def query(self, sql: str, params: Params = ()) -> list[Row]: ...

    def query_one(self, sql: str, params: Params = ()) -> Row | None: ...

    def iterate(self, sql: str, params: Params = ()) -> Iterator[Row]: ...

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        """Run one statement per parameter row; returns the number of rows changed."""
        ...


class Store(Protocol):
    dialect: str
    """The SQL dialect repositories write for: "sqlite" or "postgresql"."""

    def query(self, sql: str, params: Params = ()) -> list[Row]: ...

    def query_one(self, sql: str, params: Params = ()) -> Row | None: ...

    def iterate(self, sql: str, params: Params = ()) -> Iterator[Row]:
        """The rows one at a time, for results too big to hold."""
        ...

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write in its own transaction; returns the number of rows it changed.

        Raises:
            ConflictError: a constraint refused the write.
            StoreError: the store failed.
        """
        ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        """Run one statement per parameter row, all in one transaction; returns the rows changed.

        Raises:
            ConflictError: a constraint refused a write (none of them is kept).
            StoreError: the store failed.
        """
        ...

    def transaction(self) -> AbstractContextManager[Transaction]:
        """A write transaction: committed when the block ends, rolled back if it raises.

        Raises:
            ConflictError: a constraint refused a write (nothing of the block is kept).
            StoreError: the store failed.
        """
        ...

    def close(self) -> None: ...
