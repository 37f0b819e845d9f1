"""The Store protocol itself, the same on every dialect: `?` placeholders, rows as plain mappings,
transactions, streaming reads, conflicts. Each test runs against SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from engine.errors import ConflictError
from engine.store import Store
from engine.store import runs as runs_repo


def _pipeline(store: Store, name: str) -> None:
    runs_repo.save_pipeline(store, name, source_path=None, spec_json="{}", updated_at=1.0)


def test_rows_are_plain_mappings_read_by_name(store: Store) -> None:
    _pipeline(store, "p")
    row = store.query_one("SELECT name, spec_json, updated_at FROM pipelines WHERE name = ?", ("p",))
    assert row is not None
    assert dict(row) == {"name": "p", "spec_json": "{}", "updated_at": 1.0}
    assert store.query_one("SELECT name FROM pipelines WHERE name = ?", ("nope",)) is None


def test_a_question_mark_or_percent_sign_inside_quotes_is_text_not_a_placeholder(store: Store) -> None:
    _pipeline(store, "50% done?")
    rows = store.query("SELECT name, '?' AS q FROM pipelines WHERE name LIKE '%done?' AND name <> ?", ("x",))
    assert rows == [{"name": "50% done?", "q": "?"}]


def test_a_sum_of_integers_is_an_int_and_an_average_a_float(store: Store) -> None:
    store.executemany("INSERT INTO pipelines (name, spec_json, updated_at) VALUES (?, '{}', ?)",
                      [("a", 1), ("b", 2)])
    row = store.query_one("SELECT SUM(LENGTH(name)) AS n, AVG(updated_at) AS mean, COUNT(*) AS c FROM pipelines")
    assert row is not None
    assert row["n"] == 2 and isinstance(row["n"], int)
    assert row["mean"] == 1.5 and row["c"] == 2


def test_execute_and_executemany_count_the_rows_they_change(store: Store) -> None:
    assert store.executemany("INSERT INTO pipelines (name, spec_json, updated_at) VALUES (?, '{}', 1)",
                             [("a",), ("b",), ("c",)]) == 3
    assert store.execute("UPDATE pipelines SET updated_at = 2 WHERE name IN (?, ?)", ("a", "b")) == 2
    assert store.execute("DELETE FROM pipelines WHERE name = ?", ("zzz",)) == 0


def test_a_transaction_commits_when_its_block_ends_and_keeps_nothing_when_it_raises(store: Store) -> None:
    with store.transaction() as tx:
        tx.execute("INSERT INTO pipelines (name, spec_json, updated_at) VALUES (?, '{}', 1)", ("kept",))
        assert tx.query_one("SELECT name FROM pipelines WHERE name = ?", ("kept",)) is not None
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.execute("INSERT INTO pipelines (name, spec_json, updated_at) VALUES (?, '{}', 1)", ("dropped",))
        raise RuntimeError("the block failed")
    assert [r["name"] for r in store.query("SELECT name FROM pipelines ORDER BY name")] == ["kept"]


def test_a_refused_write_is_a_conflict_and_keeps_nothing_of_its_transaction(store: Store) -> None:
    _pipeline(store, "p")
    with pytest.raises(ConflictError, match="conflicts with what is stored"), store.transaction() as tx:
        tx.execute("INSERT INTO pipelines (name, spec_json, updated_at) VALUES (?, '{}', 1)", ("q",))
        tx.execute("INSERT INTO pipelines (name, spec_json, updated_at) VALUES (?, '{}', 1)", ("p",))
    assert store.query_one("SELECT name FROM pipelines WHERE name = ?", ("q",)) is None
    with pytest.raises(ConflictError, match="pipelines.name"):
        store.execute("INSERT INTO pipelines (name, spec_json, updated_at) VALUES (?, '{}', 1)", ("p",))


def test_iterate_streams_every_row_in_order_and_may_stop_early(store: Store) -> None:
    store.executemany("INSERT INTO pipelines (name, spec_json, updated_at) VALUES (?, '{}', ?)",
                      [(f"p{i:04d}", i) for i in range(2500)])
    names = [r["name"] for r in store.iterate("SELECT name FROM pipelines ORDER BY name")]
    assert names == [f"p{i:04d}" for i in range(2500)]
    first = next(iter(store.iterate("SELECT name FROM pipelines ORDER BY name DESC")))
    assert first["name"] == "p2499"
    # the store is still usable after an abandoned iteration
    assert store.query_one("SELECT COUNT(*) AS n FROM pipelines") == {"n": 2500}


def test_insert_returning_gives_the_new_id(store: Store) -> None:
    with store.transaction() as tx:
        a = tx.query("INSERT INTO metrics (ts, name, value, unit) VALUES (?, ?, ?, ?) RETURNING id",
                     (1.0, "m", 1.0, "s"))
        b = tx.query("INSERT INTO metrics (ts, name, value, unit) VALUES (?, ?, ?, ?) RETURNING id",
                     (1.0, "m", 2.0, "s"))
    assert b[0]["id"] > a[0]["id"]


def test_a_bool_parameter_is_stored_as_a_flag(store: Store) -> None:
    runs_repo.insert_run(store, "r1", pipeline="p", status="queued", created_at=1.0, variables={}, context={},
                         spec_path=None, spec_json="{}", max_workers=1)
    store.execute("UPDATE runs SET cancel_requested = ? WHERE run_id = ?", (True, "r1"))
    assert runs_repo.cancel_requested(store, "r1") is True
