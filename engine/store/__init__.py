"""State store: runs, jobs, logs index, metrics, deployments, rollback journals, audit."""

from engine.store.base import Params, Row, Store, Transaction
from engine.store.sqlite import SQLiteStore, open_store

__all__ = ["Params", "Row", "SQLiteStore", "Store", "Transaction", "open_store"]
