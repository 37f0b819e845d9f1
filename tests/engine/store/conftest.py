"""A real PostgreSQL server for the store tests, started once per session, and the `store`
fixture every repository test runs against twice: SQLite and PostgreSQL.

The server runs from Debian's postgresql package on a temp data dir and a loopback port
(18900-18949). Each PostgreSQL test gets a database of its own, cloned from a migrated
template (a few milliseconds). Missing binaries skip the PostgreSQL cases on a developer
machine and fail them under CI (`CI` set), which installs them (scripts/test.sh).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _load_services() -> ModuleType:
    # scripts/ is not a package; load the starter by path (as tests/engine/deploy does).
    name = "cicd_test_services"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "services.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


services = _load_services()
_TEMPLATE = "cicd_template"
_numbers = itertools.count(1)


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it: see scripts/test.sh)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A PostgreSQL 15 server of our own (durability relaxed: test data is thrown away)."""
    root = Path(tempfile.mkdtemp(prefix="cicd-pg-", dir="/tmp"))
    try:
        port = services.PortPool(18900, 18949).take()
        server = services.start_postgres(root, port, settings={"fsync": "off", "full_page_writes": "off",
                                                               "max_connections": "300"})
    except services.ServiceUnavailable as exc:
        shutil.rmtree(root, ignore_errors=True)
        unavailable(str(exc))
    try:
        import psycopg

        from engine.store.postgres import PostgresStore

        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {_TEMPLATE}")
        PostgresStore(server.url_for(_TEMPLATE)).close()  # migrated once; each test clones it
        yield server
    finally:
        server.stop()


def new_database(server: Any) -> str:
    """A fresh migrated database on `server`; returns its URL."""
    import psycopg

    name = f"t{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {_TEMPLATE}")
    return str(server.url_for(name))


@pytest.fixture
def postgres_url(postgres_server: Any) -> str:
    """The URL of a database of this test's own, already migrated."""
    return new_database(postgres_server)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An empty, migrated store of each dialect."""
    from engine.store import open_store

    if request.param == "sqlite":
        s = open_store(tmp_path, url="")
    else:
        s = open_store(tmp_path, url=request.getfixturevalue("postgres_url"))
    try:
        yield s
    finally:
        s.close()
