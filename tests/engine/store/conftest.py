"""A real PostgreSQL server for the store tests, started once per session, and the `store`
fixture every repository test runs against twice: SQLite and PostgreSQL.

The server runs from Debian's postgresql package on a temp data dir and a loopback port
(see `_postgres`). Each PostgreSQL test gets a database of its own, cloned from a migrated
template (a few milliseconds). Missing binaries skip the PostgreSQL cases on a developer
machine and fail them under CI (`CI` set), which installs them (scripts/test.sh).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.store._postgres import new_database, postgres_session


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A PostgreSQL 15 server of our own (durability relaxed: test data is thrown away)."""
    with postgres_session() as server:
        yield server


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
