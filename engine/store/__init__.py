"""State store: runs, jobs, logs index, metrics, deployments, rollback journals, audit."""

from engine.store.base import Row, Store
from engine.store.sqlite import SQLiteStore, open_store

__all__ = ["Row", "SQLiteStore", "Store", "open_store"]
