"""The PostgreSQL store against a real server: its migrations mirror SQLite's, an unreachable
database is named with its password masked, a lost one is retried and then reported, a run
that loses it fails as infrastructure without leaving a job running, and change
notifications reach another connection."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

psycopg = pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg (pip install '.[postgres]')")

from engine.errors import StoreError  # noqa: E402
from engine.events import Event  # noqa: E402
from engine.pipeline.manager import PipelineManager, recover_interrupted  # noqa: E402
from engine.store import notify, open_store  # noqa: E402
from engine.store import runs as runs_repo  # noqa: E402
from engine.store.postgres import PostgresStore, _migrations, mask_url  # noqa: E402
from engine.store.sqlite import _migrations as sqlite_migrations  # noqa: E402
from tests._services import ROOT  # noqa: E402
from tests.engine.store._postgres import start_server  # noqa: E402

pytestmark = pytest.mark.postgres


def test_every_sqlite_migration_has_its_postgresql_twin() -> None:
    assert [name for _, name, _ in _migrations()] == [name for _, name, _ in sqlite_migrations()]


def test_a_new_database_records_every_migration_by_name(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as store:
        applied = {r["name"] for r in store.query("SELECT name FROM schema_migrations")}
    assert applied == {name for _, name, _ in _migrations()}
    with PostgresStore(postgres_url) as again:  # a second opening applies nothing twice
        assert len(again.query("SELECT name FROM schema_migrations")) == len(applied)


def test_servers_starting_at_once_migrate_a_fresh_database_once(postgres_server: Any) -> None:
    import psycopg

    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE fresh_for_racers")
    url = postgres_server.url_for("fresh_for_racers")
    code = "import sys; from engine.store.postgres import PostgresStore; PostgresStore(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}) for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with PostgresStore(url) as store:
        assert len(store.query("SELECT name FROM schema_migrations")) == len(_migrations())


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://ci:s3cret@db.example:5432/cicd", "postgresql://ci:***@db.example:5432/cicd"),
    ("postgresql://ci@db/cicd?password=s3cret&sslmode=require", "postgresql://ci@db/cicd?password=***&sslmode=require"),
    ("postgresql://db/cicd", "postgresql://db/cicd"),
])
def test_the_password_of_a_url_is_masked(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_an_unreachable_database_is_named_with_its_password_masked(tmp_path: Path) -> None:
    url = "postgresql://ci:s3cret@127.0.0.1:1/cicd"
    with pytest.raises(StoreError) as caught:
        open_store(tmp_path, url=url)
    assert "postgresql://ci:***@127.0.0.1:1/cicd" in str(caught.value) and "s3cret" not in str(caught.value)
    assert "refused" in str(caught.value)


def test_the_server_exits_at_start_naming_the_unreachable_database(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PIPELINE_WORKSPACE": str(tmp_path),
           "PIPELINE_STORE_URL": "postgresql://ci:s3cret@127.0.0.1:1/cicd"}
    done = subprocess.run([sys.executable, "-m", "server", "serve", "--transport", "http", "--port", "18949"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "postgresql://ci:***@127.0.0.1:1/cicd" in done.stderr and "s3cret" not in done.stderr


def test_a_change_wakes_a_subscriber_on_another_connection(postgres_url: str, tmp_path: Path) -> None:
    store = open_store(tmp_path, url=postgres_url)
    writer = open_store(tmp_path, url=postgres_url)
    try:
        with notify.subscribe(store, "runs", "deployments", "tokens") as sub:
            assert sub.exact
            assert sub.wait(0.05) == []
            threading.Timer(0.3, lambda: runs_repo.insert_run(
                writer, "r-1", pipeline="p", status="queued", created_at=1.0, variables={}, context={},
                spec_path=None, spec_json="{}", max_workers=1)).start()
            started = time.monotonic()
            got = sub.wait(10.0)
            assert got == [notify.Notice("runs", "r-1")]
            assert time.monotonic() - started < 5.0
            notify.notify(writer, "tokens", "revoked:ci")
            assert sub.wait(10.0) == [notify.Notice("tokens", "revoked:ci")]
    finally:
        store.close()
        writer.close()


def test_one_hub_wakes_the_waiters_of_a_changed_run_and_survives_losing_its_listener(
        postgres_url: str, tmp_path: Path) -> None:
    store = open_store(tmp_path, url=postgres_url)
    writer = open_store(tmp_path, url=postgres_url)

    def insert(run_id: str) -> None:
        runs_repo.insert_run(writer, run_id, pipeline="p", status="queued", created_at=1.0, variables={},
                             context={}, spec_path=None, spec_json="{}", max_workers=1)

    async def until(predicate: Any) -> None:
        with anyio.fail_after(20):
            while not predicate():
                await anyio.sleep(0.02)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            hub = notify.Hub(store, "runs", tg)
            assert hub.exact
            armed, other = hub.arm("h-1"), hub.arm("h-other")
            await until(lambda: hub.listening)
            assert hub.arm("h-1") is armed            # waiters of one run share its event
            await anyio.to_thread.run_sync(insert, "h-1")
            assert await hub.wait(armed, 30.0)       # woken by the change, not by the timeout
            assert not other.is_set()                # another run's waiter sleeps on
            # The listening connection dies: its waiters are woken to look again, and it comes back.
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
            await until(lambda: other.is_set())
            await until(lambda: hub.listening)
            again = hub.arm("h-2")
            await anyio.to_thread.run_sync(insert, "h-2")
            assert await hub.wait(again, 30.0)
            tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    finally:
        store.close()
        writer.close()


def test_a_hub_without_notifications_is_a_bounded_sleep(tmp_path: Path) -> None:
    store = open_store(tmp_path, url="")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            hub = notify.Hub(store, "runs", tg)
            armed = hub.arm("r-1")
            assert not hub.exact and not hub.listening
            assert await hub.wait(armed, 30.0, poll=0.05) is False

    anyio.run(main)


def test_sqlite_subscribers_poll(tmp_path: Path) -> None:
    store = open_store(tmp_path, url="")
    with notify.subscribe(store, "runs") as sub:
        started = time.monotonic()
        assert sub.wait(30.0) == [] and not sub.exact
        assert time.monotonic() - started <= notify.POLL_INTERVAL + 0.5


# -- a database lost mid-run --------------------------------------------------------------------

LONG_JOB = {"name": "lost", "source": None, "stages": [{"name": "s", "jobs": [
    {"name": "long", "commands": ["sleep 30.17"]}, {"name": "after", "depends_on": ["long"], "commands": ["true"]}]}]}


@pytest.fixture
def own_server() -> Iterator[Any]:
    """A server of this test's own: it is stopped mid-run."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_a_run_that_loses_the_database_fails_as_infrastructure_and_leaves_no_job_running(
    own_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPELINE_LEASE_SECONDS", "3")
    url = own_server.url
    events: list[Event] = []
    halted_at: list[float] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if event.kind == "job_started" and event.job == "long":
            own_server.halt()
            halted_at.append(time.monotonic())

    manager = PipelineManager(tmp_path / "ws", store=open_store(tmp_path, url=url))
    run = manager.run_pipeline(LONG_JOB, on_event=on_event)
    gave_up = time.monotonic() - halted_at[0]
    own_server.start()
    assert run.status.value == "failed"
    assert run.reason is not None and run.reason.startswith("infrastructure: ") and "***" not in url
    assert own_server.password not in run.reason
    assert run.jobs["long"].status.value == "failed" and run.jobs["after"].status.value != "running"
    assert 2.5 <= gave_up < 20, gave_up  # retried for the lease, then gave up
    # The job's processes are gone with the run, and the record ends either way: the runner's
    # last write landed, or the expired lease lets the next start mark the run.
    with open_store(tmp_path, url=url) as store:
        recover_interrupted(store)
        row = runs_repo.get_run(store, run.run_id)
        assert row is not None and row["status"] in ("failed", "interrupted")
        assert [j["name"] for j in runs_repo.run_jobs(store, run.run_id) if j["status"] == "running"] == []
    assert subprocess.run(["pgrep", "-f", "sleep 30.17"], capture_output=True).returncode != 0


@pytest.mark.slow
def test_a_short_outage_is_ridden_out(own_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_LEASE_SECONDS", "20")
    url = own_server.url
    short = {"name": "blip", "source": None, "stages": [{"name": "s", "jobs": [
        {"name": "one", "commands": ["sleep 2"]}, {"name": "two", "depends_on": ["one"], "commands": ["true"]}]}]}

    def on_event(event: Event) -> None:
        if event.kind == "job_started" and event.job == "one":
            own_server.halt()
            threading.Timer(1.0, own_server.start).start()

    manager = PipelineManager(tmp_path / "ws", store=open_store(tmp_path, url=url))
    run = manager.run_pipeline(short, on_event=on_event)
    assert run.status.value == "succeeded", run.reason
    with open_store(tmp_path, url=url) as store:
        row = runs_repo.get_run(store, run.run_id)
        assert row is not None and row["status"] == "succeeded"
        assert {j["status"] for j in runs_repo.run_jobs(store, run.run_id)} == {"succeeded"}


def test_jobs_of_one_run_written_at_once_keep_the_run_totals_exact(postgres_url: str, tmp_path: Path) -> None:
    # A runner writes from its event loop and from executor threads, through a pool: two
    # transactions may touch jobs of the same run at the same moment.
    store = open_store(tmp_path, url=postgres_url)
    names = [f"j{n}" for n in range(12)]
    runs_repo.insert_run(store, "r1", pipeline="p", status="queued", created_at=1.0, variables={}, context={},
                         spec_path=None, spec_json="{}", max_workers=4)
    runs_repo.start_run(store, "r1", pipeline="p", status="running", started_at=1.0, owner=(1, "h", None),
                        jobs=[runs_repo.NewJob(name=n, stage="s", base_name=n, matrix={}, needs=[], status="pending",
                                               allow_failure=False, log_path="", executor="local") for n in names])
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            for step in range(5):
                runs_repo.update_job(store, "r1", name, status="running", started_at=10.0 + step,
                                     cpu_user=float(step), cpu_system=1.0, peak_rss_kb=1024 * (step + 1))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    totals = store.query_one("SELECT started_at, cpu_seconds, peak_rss_mb FROM insights_run_totals WHERE run_id = 'r1'")
    assert totals == {"started_at": 14.0, "cpu_seconds": 12 * 5.0, "peak_rss_mb": 5.0}
    store.close()
