"""Run any test suite with its stores on PostgreSQL:

    python3 -m pytest -p tests.engine.store.pg_plugin tests/engine/pipeline

Starts one PostgreSQL server for the session and gives every test a fresh database through
PIPELINE_STORE_URL, so each `open_store` (and every server or CLI process a test starts)
uses it; stores a test builds by hand (`SQLiteStore(...)`) stay SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.engine.store._postgres import new_database, postgres_session


@pytest.fixture(scope="session")
def _plugin_postgres() -> Iterator[Any]:
    with postgres_session() as server:
        yield server


@pytest.fixture(autouse=True)
def _store_on_postgres(_plugin_postgres: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_STORE_URL", new_database(_plugin_postgres))
