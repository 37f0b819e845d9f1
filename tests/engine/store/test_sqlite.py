"""The SQLite store: migrations by name, old stores adopted, concurrent writers, plain rows, errors
translated once (a refused write is a ConflictError)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from engine.errors import ConflictError, StoreError
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


def test_a_store_from_before_the_dialect_folders_opens_without_rerunning_migrations(tmp_path: Path) -> None:
    # The dump was taken from a store made when migrations lay directly under migrations/:
    # the names it recorded are bare file names, and its tables (CREATE TABLE without IF NOT
    # EXISTS) would refuse a second run of any migration.
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.executescript((Path(__file__).parent / "data" / "store_before_dialects.sql").read_text())
    conn.execute("PRAGMA user_version = 7")
    before = dict(conn.execute("SELECT name, applied_at FROM schema_migrations").fetchall())
    conn.close()
    assert "0001_pipelines.sql" in before
    store = SQLiteStore(path)
    after = {r["name"]: r["applied_at"] for r in store.query("SELECT name, applied_at FROM schema_migrations")}
    assert {name: after[name] for name in before} == before  # none applied again
    assert set(after) == {name for _, name, _ in _migrations()}
    assert store.query_one("SELECT spec_json FROM deploy_environments WHERE name = 'kept'") == {"spec_json": "{}"}


def test_rows_are_plain_mappings_read_by_name(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    assert store.dialect == "sqlite"
    store.executemany("INSERT INTO metrics (ts, name, value, unit) VALUES (?, ?, ?, ?)",
                      [(1.0, "a", 1.5, "s"), (2.0, "b", 2.5, "s")])
    rows = store.query("SELECT name, value FROM metrics ORDER BY ts")
    assert rows == [{"name": "a", "value": 1.5}, {"name": "b", "value": 2.5}]
    assert [dict(r) for r in store.iterate("SELECT name FROM metrics ORDER BY ts")] == [{"name": "a"}, {"name": "b"}]
    assert store.query_one("SELECT name FROM metrics WHERE name = 'none'") is None
    assert store.execute("UPDATE metrics SET unit = 'ms'") == 2


def test_a_refused_write_is_a_conflict_and_keeps_nothing_of_its_transaction(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    env = "INSERT INTO deploy_environments (name, spec_json, updated_at) VALUES (?, '{}', 0)"
    store.execute(env, ("prod",))
    with pytest.raises(ConflictError, match="UNIQUE constraint failed: deploy_environments.name"):
        store.execute(env, ("prod",))
    with pytest.raises(ConflictError), store.transaction() as tx:
        assert tx.execute(env, ("staging",)) == 1
        assert tx.query_one("SELECT COUNT(*) AS n FROM deploy_environments") == {"n": 2}
        tx.executemany(env, [("qa",), ("prod",)])
    assert [r["name"] for r in store.query("SELECT name FROM deploy_environments")] == ["prod"]
    with pytest.raises(StoreError, match="no such table"):
        store.query("SELECT * FROM nowhere")


def test_a_transaction_commits_when_its_block_ends(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    with store.transaction() as tx:
        tx.executemany("INSERT INTO metrics (ts, name, value, unit) VALUES (?, ?, ?, ?)",
                       [(float(i), "m", float(i), "count") for i in range(3)])
        assert [r["value"] for r in tx.query("SELECT value FROM metrics ORDER BY ts")] == [0.0, 1.0, 2.0]
        assert [r["value"] for r in tx.iterate("SELECT value FROM metrics ORDER BY ts DESC")] == [2.0, 1.0, 0.0]
    assert SQLiteStore(tmp_path / "state.db").query_one("SELECT COUNT(*) AS n FROM metrics") == {"n": 3}


def test_every_migration_lives_under_its_dialect() -> None:
    # The SQLite store reads migrations/sqlite/ only: a script left directly under migrations/
    # would never be applied.
    root = Path(__file__).resolve().parents[3] / "engine" / "store" / "migrations"
    assert sorted(p.name for p in root.glob("*.sql")) == []
    assert {p.name for p in (root / "sqlite").glob("*.sql")} == {name for _, name, _ in _migrations()}
