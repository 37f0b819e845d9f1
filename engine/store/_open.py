"""Opening the store that settings name: the one place the engine, the server and the CLI get it."""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import InputError
from engine.store.base import Store

__all__ = ["open_store"]


def open_store(workspace: str | os.PathLike[str], *, url: str | None = None) -> Store:
    """The state store: the PostgreSQL database `url` names (default: PIPELINE_STORE_URL),
    else the workspace's SQLite file <workspace>/state.db.

    Raises:
        InputError: the URL is not a postgresql:// one, or psycopg is not installed.
        StoreError: the database cannot be reached or migrated (the URL's password masked).
    """
    from engine.settings import get_settings

    settings = get_settings(PIPELINE_WORKSPACE=workspace)
    url = settings.PIPELINE_STORE_URL if url is None else url
    if not url:
        from engine.store.sqlite import SQLiteStore

        return SQLiteStore(Path(workspace) / "state.db")
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("postgresql", "postgres"):
        raise InputError(f"PIPELINE_STORE_URL must be a postgresql:// URL, not {scheme}://...")
    try:
        from engine.store.postgres import PostgresStore
    except ImportError as exc:
        raise InputError("PIPELINE_STORE_URL names a PostgreSQL database but psycopg is not installed: "
                         "pip install 'cicd-mcp[postgres]'") from exc
    # A write retries a lost database for as long as a runner's lease lasts (see engine.pipeline).
    return PostgresStore(url, retry_for=settings.PIPELINE_LEASE_SECONDS)
