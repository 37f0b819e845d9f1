"""Statement builders the repositories share (column names are the caller's, never user input)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.store.base import Store

__all__ = ["insert"]


def insert(store: Store, table: str, values: Mapping[str, Any]) -> int:
    """Insert one row given as column -> value; returns the rows written."""
    cols = list(values)
    return store.execute(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        [values[c] for c in cols],
    )
