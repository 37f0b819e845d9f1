"""Starting the tests' PostgreSQL server (once per session) and handing out fresh databases.

Ports 18900-18949 on 127.0.0.1. Each database is cloned from a template that was migrated
once, so a test pays milliseconds, not a migration.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests._services import load_services, unavailable

TEMPLATE = "cicd_template"
_numbers = itertools.count(1)


def start_server(settings: dict[str, str] | None = None) -> Any:
    """A new server on a free port of the range (the caller stops it); skips when PostgreSQL is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install '.[postgres]'; scripts/test.sh installs it)")
    services = load_services()
    root = Path(tempfile.mkdtemp(prefix="cicd-pg-", dir="/tmp"))
    try:
        port = services.PortPool(18900, 18949).take()
        return services.start_postgres(root, port, settings={
            "fsync": "off", "full_page_writes": "off", "max_connections": "300", **(settings or {})})
    except services.ServiceUnavailable as exc:
        shutil.rmtree(root, ignore_errors=True)
        unavailable(str(exc))
        raise


@contextlib.contextmanager
def postgres_session() -> Iterator[Any]:
    """A server with a migrated template database, stopped at the end."""
    import psycopg

    from engine.store.postgres import PostgresStore

    server = start_server()
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        PostgresStore(server.url_for(TEMPLATE)).close()
        yield server
    finally:
        server.stop()


def new_database(server: Any) -> str:
    """A fresh migrated database on `server`; returns its URL."""
    import psycopg

    name = f"t{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    return str(server.url_for(name))
