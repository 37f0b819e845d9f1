"""State store: runs, jobs, logs index, metrics, deployments, rollback journals, audit.

`open_store` gives the store the settings name: SQLite in the workspace by default, a shared
PostgreSQL database with PIPELINE_STORE_URL (`engine.store.postgres`, needs psycopg).
"""

from engine.store._open import open_store
from engine.store.base import Params, Row, Store, Transaction
from engine.store.sqlite import SQLiteStore

__all__ = ["Params", "Row", "SQLiteStore", "Store", "Transaction", "open_store"]
