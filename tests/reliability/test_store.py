"""The store under concurrent writers and a crash: several runs at once in threads and in
separate processes, the server and the CLI together, never surface "database is locked"; a
writer killed mid-transaction leaves a consistent database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest

from engine.pipeline.manager import PipelineManager
from engine.store import open_store
from tests.reliability.conftest import REPO, MakeServer, server_env, text

PIPELINE = {
    "name": "busy", "source": None,
    "stages": [
        {"name": "a", "jobs": [{"name": f"j{i}", "commands": [f"for n in 1 2 3 4 5; do echo {i}-$n; done"]}
                               for i in range(3)]},
        {"name": "b", "jobs": [{"name": "last", "commands": ["echo done"], "retry": 1}]},
    ],
}

WORKER = """
import json, sys
from engine.pipeline.manager import PipelineManager
from engine.insights import PipelineMonitor
ws, n, pipeline = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
manager = PipelineManager(ws)
for i in range(n):
    run = manager.run_pipeline({**pipeline, "name": f"{pipeline['name']}"})
    PipelineMonitor(store=manager.store).monitor_pipeline_health(None)
    print(run.run_id, run.status.value, flush=True)
"""


def _locked(text: str) -> bool:
    return "database is locked" in text.lower() or "database is busy" in text.lower()


def test_runs_in_threads(workspace: Path) -> None:
    errors: list[BaseException] = []
    results: list[Any] = []

    def work() -> None:
        try:
            manager = PipelineManager(workspace)
            for _ in range(3):
                results.append(manager.run_pipeline(PIPELINE))
                manager.list_runs(limit=100)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, [repr(e) for e in errors]
    assert len(results) == 24 and {str(r.status) for r in results} == {"succeeded"}
    with open_store(workspace) as store:
        assert store.query_one("SELECT COUNT(*) AS n FROM runs WHERE status = 'succeeded'")["n"] == 24
        assert store.query_one("SELECT COUNT(*) AS n FROM jobs")["n"] == 24 * 4
        assert store.query_one("PRAGMA integrity_check")["integrity_check"] == "ok"


@pytest.mark.anyio
async def test_processes_server_and_cli_together(workspace: Path, make_server: MakeServer) -> None:
    """4 runner processes, the server (in this process) running pipelines and reading health,
    and the CLI creating tokens and reading the audit log, all on one state.db at once."""
    env = server_env(workspace)
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(workspace), "4", json.dumps(PIPELINE)], cwd=REPO,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(4)]
    cli_out: list[str] = []

    def cli_loop() -> None:
        for i in range(8):
            for args in (["token", "create", "--level", "verified", "--name", f"t{i}"], ["audit", "--limit", "5"]):
                done = subprocess.run([sys.executable, "-m", "server", *args], cwd=REPO, env=env,
                                      capture_output=True, text=True, timeout=120)
                cli_out.append(f"{args[0]} exit {done.returncode}: {done.stdout[-200:]} {done.stderr[-500:]}")

    cli = threading.Thread(target=cli_loop)
    cli.start()
    server = make_server()
    server_results = []
    async with mcp.Client(server) as client:
        for _ in range(4):
            async with anyio.create_task_group() as tg:
                async def health() -> None:
                    server_results.append(await client.call_tool("pipeline_health", {}))
                for _ in range(3):
                    tg.start_soon(health)
                server_results.append(await client.call_tool("run_pipeline", {"config_path": _pipeline_file(
                    workspace)}))
    await anyio.to_thread.run_sync(cli.join, 300)
    outputs = []
    for w in workers:
        out, err = w.communicate(timeout=300)
        outputs.append((w.returncode, out, err))
    for code, out, err in outputs:
        assert code == 0 and not _locked(err), err[-2000:]
        assert [line.split()[1] for line in out.splitlines()] == ["succeeded"] * 4
    for line in cli_out:
        assert " exit 0:" in line and not _locked(line), line
    for result in server_results:
        assert not result.is_error and not _locked(text(result)), text(result)[:500]
    with open_store(workspace) as store:
        assert store.query_one("SELECT COUNT(*) AS n FROM runs WHERE status = 'succeeded'")["n"] == 4 * 4 + 4
        assert store.query_one("SELECT COUNT(*) AS n FROM tokens")["n"] == 8
        assert store.query_one("PRAGMA integrity_check")["integrity_check"] == "ok"


def _pipeline_file(workspace: Path) -> str:
    path = workspace.parent / "busy.yaml"
    if not path.exists():
        path.write_text(json.dumps(PIPELINE))   # JSON is YAML
    return str(path)


KILLED_WRITER = """
import sys, time
from engine.store import open_store
store = open_store(sys.argv[1])
i = 0
while True:
    with store.transaction() as conn:
        for k in range(50):
            conn.execute("INSERT INTO metrics (name, value, unit, ts) VALUES (?, ?, ?, ?)",
                         ("crash.test", i, "count", time.time()))
    i += 1
    print(i, flush=True)
"""


def test_writer_killed_mid_transaction_leaves_a_consistent_store(workspace: Path) -> None:
    open_store(workspace).close()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(workspace)], cwd=REPO,
                            env=server_env(workspace), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    committed = 0
    try:
        while committed < 40:
            committed = int(proc.stdout.readline())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    with open_store(workspace) as store:
        assert store.query_one("PRAGMA integrity_check")["integrity_check"] == "ok"
        rows = store.query_one("SELECT COUNT(*) AS n FROM metrics WHERE name = 'crash.test'")["n"]
        # Whole transactions only: every one reported committed, and none half-written.
        assert rows % 50 == 0 and rows >= committed * 50
        # And the store takes writes again at once.
        assert str(PipelineManager(workspace, store=store).run_pipeline(PIPELINE).status) == "succeeded"
