"""A runner that dies mid-run: the next start marks the run interrupted and cleans up after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from engine.pipeline.manager import PipelineManager
from engine.pipeline.states import JobStatus, RunStatus
from engine.store import open_store


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_killed_runner_leaves_an_interrupted_run_and_no_orphans(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    pidfile = tmp_path / "job.pid"
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(textwrap.dedent(f"""\
        name: crashy
        source: null
        stages:
          - name: s
            jobs:
              - name: first
                commands: ["echo first-done > out.txt"]
                artifacts: [out.txt]
              - name: long
                depends_on: [first]
                runs_on: local   # a host pid in the pid file (test_executors.py has the sandbox's case)
                commands: ["sleep 120 & echo $! > {pidfile}; wait"]
        """))
    code = ("from engine.pipeline.manager import PipelineManager; "
            f"PipelineManager({str(ws)!r}).run_pipeline({str(pipeline)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3])
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
        orphan = int(pidfile.read_text())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert alive(orphan), "the job's process should still be running after the runner died"
    store = open_store(ws)
    assert store.query_one("SELECT status FROM runs")["status"] == "running"

    manager = PipelineManager(ws)  # a new start recovers
    run = manager.list_runs()[0]
    assert run.status == RunStatus.INTERRUPTED
    assert "interrupted" in (run.reason or "")
    wait_for(lambda: not alive(orphan), timeout=5)
    full = manager.get_run(run.run_id)
    assert full.jobs["first"].status == JobStatus.SUCCEEDED
    assert full.jobs["long"].status == JobStatus.CANCELLED
    assert "first-done" in Path(full.jobs["first"].artifacts[0].stored_path).read_text()
    assert "echo first-done" in manager.read_log(run.run_id, "first").text
    # and it can be run again
    pidfile.unlink()
    again = manager.run_pipeline(
        {"name": "crashy", "source": None,
         "stages": [{"name": "s", "jobs": [{"name": "first", "commands": ["true"]}]}]})
    assert again.status == RunStatus.SUCCEEDED


def test_a_live_runner_in_another_process_is_left_alone(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    gate = tmp_path / "gate"
    code = (f"from engine.pipeline.manager import PipelineManager; PipelineManager({str(ws)!r}).run_pipeline("
            f"{{'name': 'slow', 'source': None, 'stages': [{{'name': 's', 'jobs': [{{'name': 'a', "
            f"'commands': ['while [ ! -e {gate} ]; do sleep 0.05; done']}}]}}]}})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3])
    try:
        wait_for(lambda: (ws / "state.db").exists() and
                 open_store(ws).query_one("SELECT status FROM jobs WHERE name = 'a'") is not None and
                 open_store(ws).query_one("SELECT status FROM jobs WHERE name = 'a'")["status"] == "running")
        manager = PipelineManager(ws)
        assert manager.list_runs()[0].status == RunStatus.RUNNING
        # cancel across processes through the store
        assert manager.cancel_run(manager.list_runs()[0].run_id)
        proc.wait(timeout=20)
        assert manager.list_runs()[0].status == RunStatus.CANCELLED
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
