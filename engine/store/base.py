"""The Store protocol: what the engine needs from its state store.

SQLite (`engine.store.sqlite.SQLiteStore`) is the embedded default. Every area of
the engine (pipelines, deployments, rollback, audit) keeps its tables in a numbered
migration under `engine/store/migrations/` and talks to the store through these
few calls; SQL is always parameterised.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["Row", "Store"]

Row = sqlite3.Row


class Store(Protocol):
    path: str

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]: ...

    def query_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None: ...

    def iterate(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Iterator[Row]: ...

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one write in its own transaction; returns the row count (or lastrowid for inserts)."""
        ...

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error)."""
        ...

    def close(self) -> None: ...
