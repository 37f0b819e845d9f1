"""The SQLite store: migrations by name, old stores adopted, concurrent writers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from engine.store.sqlite import SQLiteStore, _migrations, _statements


def test_a_new_store_has_every_migration(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    applied = {r["name"] for r in store.query("SELECT name FROM schema_migrations")}
    assert applied == {name for _, name, _ in _migrations()}
    assert store.query_one("SELECT COUNT(*) AS n FROM runs")["n"] == 0


def test_an_old_store_numbered_past_a_missing_migration_gets_it(tmp_path: Path) -> None:
    # A store from before migrations were recorded by name: 0001 applied, user_version already
    # past 0002 (another area's later migration had been applied first), 0002's tables missing.
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    first = _migrations()[0]
    for statement in _statements(first[2]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()
    store = SQLiteStore(path)  # must neither fail on 0001's tables nor skip 0002
    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "deployments" in tables and "runs" in tables
    assert len(store.query("SELECT name FROM schema_migrations")) == len(_migrations())


def test_concurrent_writers_never_see_database_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SQLiteStore(path).close()
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        store = SQLiteStore(path)  # its own connections, as another process would have
        try:
            for j in range(100):
                store.execute(
                    "INSERT INTO metrics (ts, name, value, unit) VALUES (?, ?, ?, ?)", (j, f"w{i}", j, "count"))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert SQLiteStore(path).query_one("SELECT COUNT(*) AS n FROM metrics")["n"] == 800
