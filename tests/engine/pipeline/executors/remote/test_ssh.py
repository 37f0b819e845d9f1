"""The ssh executor: its pool file and host choice (pure), and jobs on real sshd hosts (marker `ssh`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.errors import InputError, SpecError
from engine.pipeline.executors import make_executor
from engine.pipeline.executors.ssh import SSHExecutor, load_pools, pick_host
from engine.pipeline.manager import PipelineManager
from engine.pipeline.states import JobStatus, RunStatus
from engine.spec.model import load_pipeline
from tests.engine.pipeline.executors.remote.conftest import kill_host, pools_yaml, processes_with, revive_host

ROOT = Path(__file__).resolve().parents[5]


# -- pure -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("running", "usable", "expected"), [
    ({}, ["a", "b", "c"], "a"),
    ({"a": 1}, ["a", "b", "c"], "b"),
    ({"a": 1, "b": 1, "c": 1}, ["a", "b", "c"], "c"),     # c has the lowest share of its capacity
    ({"a": 2, "b": 1, "c": 3}, ["a", "b", "c"], "b"),
    ({"a": 2, "b": 2, "c": 4}, ["a", "b", "c"], None),     # all full
    ({}, ["c"], "c"),                                       # only c is healthy
])
def test_pick_host_takes_the_least_busy_host_with_a_free_slot(
        running: dict[str, int], usable: list[str], expected: str | None) -> None:
    assert pick_host({"a": 2, "b": 2, "c": 4}, running, usable) == expected


def test_a_bad_pool_file_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text("pools:\n  default:\n    max_jobs: 0\n    hosts: [a.example]\n    colour: blue\n")
    with pytest.raises(SpecError) as err:
        load_pools(path)
    text = str(err.value)
    assert f"{path}:3:15: pools.default.max_jobs:" in text
    assert f"{path}:5" in text and "colour" in text


def test_a_missing_pool_file_or_pool_is_refused_before_anything_runs(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPELINE_SSH_POOLS", raising=False)
    with pytest.raises(InputError, match="PIPELINE_SSH_POOLS"):
        make_executor("ssh")
    path = tmp_path / "pools.yaml"
    path.write_text("pools:\n  default:\n    hosts: [a.example, 'b.example:2222']\n")
    monkeypatch.setenv("PIPELINE_SSH_POOLS", str(path))
    assert make_executor("ssh").name == "ssh"
    with pytest.raises(InputError, match="no ssh pool 'gpu'.*pools: default"):
        make_executor("ssh:gpu")


@pytest.mark.parametrize(("runs_on", "ok"), [
    ("ssh", True), ("ssh:gpu-1", True), ("kubernetes", True), ("ssh:", False), ("ssh:a b", False),
    ("sshx", False), ("kubernetes:x", False),
])
def test_runs_on_accepts_the_remote_kinds(runs_on: str, ok: bool) -> None:
    text = f"name: p\nsource: null\nstages:\n  - name: s\n    jobs:\n      - name: j\n        runs_on: '{runs_on}'\n" \
           "        commands: ['true']\n"
    if ok:
        assert load_pipeline(text).jobs["j"].runs_on == runs_on
    else:
        with pytest.raises(SpecError, match="runs_on"):
            load_pipeline(text)


# -- on real hosts -------------------------------------------------------------------------------------
def _pool_file(tmp_path: Path, hosts: list[Any], **kw: Any) -> Path:
    path = tmp_path / "pools.yaml"
    path.write_text(pools_yaml(hosts, **kw))
    return path


def _log(ws: Path, run_id: str, job: str) -> str:
    return (ws / "runs" / run_id / "logs" / f"{job}.log").read_text()


@pytest.mark.ssh
def test_a_job_runs_on_a_pool_host_streams_its_output_and_returns_its_artifacts(
        tmp_path: Path, pool_hosts: list[Any]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "input.txt").write_text("from the source tree\n")
    pools = _pool_file(tmp_path, pool_hosts[:1])
    ex = SSHExecutor(pools_file=pools, state_dir=tmp_path / "state")
    mgr = PipelineManager(workspace_dir=tmp_path / "ws", executor=ex)
    spec = {
        "name": "remote", "source": str(src),
        "stages": [{"name": "s", "jobs": [{
            "name": "build", "variables": {"GREETING": "hello there"},
            "commands": ["cat input.txt", "echo \"$GREETING from $(hostname)\"",
                         "mkdir -p dist/sub && echo wheel > dist/a.whl && echo deep > dist/sub/b.txt",
                         "echo \"$CICD_WORKSPACE\" > where.txt",
                         "echo \"leader=$$ group=$(ps -o pgid= $$ | tr -d ' ')\""],
            "artifacts": ["dist/", "where.txt"],
        }]}],
    }
    run = anyio.run(lambda: mgr.arun_pipeline(spec, run_id="ssh-basic"))
    job = run.jobs["build"]
    log = _log(tmp_path / "ws", "ssh-basic", "build")
    assert run.status == RunStatus.SUCCEEDED, (job.reason, log)
    assert "running on h0" in log
    assert "from the source tree" in log and "hello there from" in log
    # The job's shell leads its own process group (killed whole on timeout or cancel).
    found = re.search(r"leader=(\d+) group=(\d+)", log)
    assert found is not None and found.group(1) == found.group(2), log
    arts = {a.path: a for a in job.artifacts}
    assert set(arts) == {"dist/a.whl", "dist/sub/b.txt", "where.txt"}
    for a in arts.values():
        assert hashlib.sha256(Path(a.stored_path).read_bytes()).hexdigest() == a.sha256
    remote_ws = Path(arts["where.txt"].stored_path).read_text().strip()
    assert remote_ws.startswith(str(pool_hosts[0].root / "jobs")), remote_ws
    assert "3 artifact file(s) brought back from h0, sha256 checked" in log
    # Nothing is left on the host: no job directory, no process.
    assert list((pool_hosts[0].root / "jobs").iterdir()) == []


@pytest.mark.ssh
def test_jobs_spread_over_the_least_busy_hosts_within_max_jobs(tmp_path: Path, pool_hosts: list[Any]) -> None:
    pools = _pool_file(tmp_path, pool_hosts, max_jobs=1)
    spans = tmp_path / "spans"
    spans.mkdir()
    ex = SSHExecutor(pools_file=pools, state_dir=tmp_path / "state")
    mgr = PipelineManager(workspace_dir=tmp_path / "ws", executor=ex, max_workers=8)
    jobs = [{"name": f"j{i}", "commands": [
        f"echo \"$HOME $(date +%s.%N) start\" >> {spans}/j{i}; sleep 0.5; "
        f"echo \"$HOME $(date +%s.%N) end\" >> {spans}/j{i}"]}
        for i in range(6)]
    run = anyio.run(lambda: mgr.arun_pipeline({"name": "spread", "source": None,
                                               "stages": [{"name": "s", "jobs": jobs}]}, run_id="ssh-spread"))
    assert run.status == RunStatus.SUCCEEDED, {n: j.reason for n, j in run.jobs.items()}
    per_host: dict[str, list[tuple[float, float]]] = {}
    for f in spans.iterdir():
        (home, t0, _), (_, t1, _) = (line.split() for line in f.read_text().splitlines())
        per_host.setdefault(home, []).append((float(t0), float(t1)))
    assert sorted(len(v) for v in per_host.values()) == [2, 2, 2]   # least busy first: every host, evenly
    for intervals in per_host.values():
        (a0, a1), (b0, b1) = sorted(intervals)
        assert a1 <= b0, "a host ran two jobs at once with max_jobs 1"


@pytest.mark.ssh
def test_a_timeout_kills_the_remote_process_group_whole(tmp_path: Path, pool_hosts: list[Any]) -> None:
    pools = _pool_file(tmp_path, pool_hosts[1:2])
    ex = SSHExecutor(pools_file=pools, state_dir=tmp_path / "state")
    mgr = PipelineManager(workspace_dir=tmp_path / "ws", executor=ex)
    spec = {"name": "slow", "source": None, "stages": [{"name": "s", "jobs": [{
        "name": "hang", "timeout": 1.5, "commands": ["(sleep 300 &) ; sleep 300 & echo started; wait"]}]}]}
    run = anyio.run(lambda: mgr.arun_pipeline(spec, run_id="ssh-timeout"))
    assert run.jobs["hang"].status == JobStatus.TIMED_OUT
    log = _log(tmp_path / "ws", "ssh-timeout", "hang")
    token = _token_of(log)
    assert "started" in log
    assert processes_with(f"CICD_SSH_JOB={token}") == []     # the detached grandchild too
    assert list((pool_hosts[1].root / "jobs").iterdir()) == []


def _token_of(log: str) -> str:
    # "running on hN (<work_dir>/<run>-<job>-<token>)"
    return log.split("running on ")[1].split(")")[0].rsplit("-", 1)[1]


@pytest.mark.ssh
def test_an_unknown_host_key_is_refused_and_fails_the_job_as_infrastructure(
        tmp_path: Path, pool_hosts: list[Any]) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    pools = tmp_path / "pools.yaml"
    pools.write_text(pools_yaml(pool_hosts[:1]).replace(str(pool_hosts[0].known_hosts), str(empty)))
    ex = SSHExecutor(pools_file=pools, state_dir=tmp_path / "state")
    mgr = PipelineManager(workspace_dir=tmp_path / "ws", executor=ex)
    run = anyio.run(lambda: mgr.arun_pipeline({"name": "p", "source": None, "stages": [{"name": "s", "jobs": [
        {"name": "j", "commands": ["true"]}]}]}, run_id="ssh-hostkey"))
    job = run.jobs["j"]
    assert job.status == JobStatus.FAILED
    assert "host key is not in" in (job.reason or "") and "ssh-keyscan" in (job.reason or "")
    attempts = mgr.store.query("SELECT failure_class FROM attempts WHERE run_id = 'ssh-hostkey'")
    assert [a["failure_class"] for a in attempts] == ["infrastructure"]


@pytest.mark.ssh
def test_a_host_killed_mid_job_fails_the_attempt_which_is_retried_elsewhere_and_its_group_dies_on_return(
        tmp_path: Path, pool_hosts: list[Any]) -> None:
    victim, spare = pool_hosts[2], pool_hosts[1]
    (victim.root / "home" / "slow").write_text("this host hangs the job\n")
    try:
        pools = _pool_file(tmp_path, [victim, spare], max_jobs=1)
        ex = SSHExecutor(pools_file=pools, state_dir=tmp_path / "state")
        mgr = PipelineManager(workspace_dir=tmp_path / "ws", executor=ex)
        spec = {"name": "faulty", "source": None, "stages": [{"name": "s", "jobs": [{
            "name": "j", "retry": {"max": 1, "when": ["infrastructure"], "backoff": 0.1},
            "commands": ["echo \"started on $HOME\"", "if [ -f \"$HOME/slow\" ]; then sleep 300; fi",
                         "echo finished"]}]}]}
        log_path = tmp_path / "ws" / "runs" / "ssh-fault" / "logs" / "j.log"

        async def scenario() -> Any:
            async with anyio.create_task_group() as tg:
                box: dict[str, Any] = {}

                async def go() -> None:
                    box["run"] = await mgr.arun_pipeline(spec, run_id="ssh-fault")

                tg.start_soon(go)
                deadline = time.monotonic() + 20
                while not (log_path.exists() and f"started on {victim.root}" in log_path.read_text()):
                    assert time.monotonic() < deadline, "the job never started on the victim"
                    await anyio.sleep(0.05)
                box["token"] = _token_of(log_path.read_text())
                kill_host(victim)
            return box

        box = anyio.run(scenario)
        run = box["run"]
        log = log_path.read_text()
        assert run.status == RunStatus.SUCCEEDED, log
        attempts = mgr.store.query("SELECT attempt, status, failure_class, reason FROM attempts "
                                   "WHERE run_id = 'ssh-fault' ORDER BY attempt")
        assert [(a["status"], a["failure_class"]) for a in attempts] == [("failed", "infrastructure"),
                                                                         ("succeeded", None)]
        assert "connection dropped" in attempts[0]["reason"]
        assert f"started on {spare.root}" in log and "finished" in log
        # The first attempt's group still runs on the dead host, waiting for it to come back.
        marker = f"CICD_SSH_JOB={box['token']}"
        assert processes_with(marker) != []
        leftovers = (tmp_path / "state" / "ssh-leftovers.jsonl").read_text()
        assert leftovers.count(json.dumps({"token": box["token"]})[1:-1]) == 1
        revive_host(victim)
        # A new runner process (a new executor with the same state) kills it when the host answers.
        later = SSHExecutor(pools_file=pools, state_dir=tmp_path / "state")
        assert anyio.run(later.reap) == 1
        deadline = time.monotonic() + 5
        while processes_with(marker):
            assert time.monotonic() < deadline, "the dead host's process group survived its return"
            time.sleep(0.05)
        assert box["token"] not in (tmp_path / "state" / "ssh-leftovers.jsonl").read_text()
    finally:
        (victim.root / "home" / "slow").unlink(missing_ok=True)
        if not Path(f"/proc/{victim.pid}").exists():
            revive_host(victim)


@pytest.mark.ssh
def test_a_dead_runners_remote_job_is_killed_by_the_next_start(tmp_path: Path, pool_hosts: list[Any]) -> None:
    pools = _pool_file(tmp_path, pool_hosts[:1])
    ws = tmp_path / "ws"
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(textwrap.dedent("""\
        name: crashy
        source: null
        stages:
          - name: s
            jobs:
              - name: long
                runs_on: ssh
                commands: ["echo begun", "sleep 300"]
        """))
    env = {**os.environ, "PIPELINE_SSH_POOLS": str(pools), "PYTHONPATH": str(ROOT)}
    code = ("from engine.pipeline.manager import PipelineManager; "
            f"PipelineManager({str(ws)!r}).run_pipeline({str(pipeline)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        logs = ws / "runs"
        while not any("begun" in p.read_text() for p in logs.glob("*/logs/long.log")):
            assert time.monotonic() < deadline and proc.poll() is None, "the job never started"
            time.sleep(0.05)
        log = next(logs.glob("*/logs/long.log")).read_text()
        marker = f"CICD_SSH_JOB={_token_of(log)}"
        time.sleep(0.3)  # the recovery record is written once the group id is known
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert processes_with(marker) != []
    os.environ["PIPELINE_SSH_POOLS"] = str(pools)
    try:
        PipelineManager(workspace_dir=ws)      # its start recovers the interrupted run
    finally:
        del os.environ["PIPELINE_SSH_POOLS"]
    assert processes_with(marker) == []
    assert list((pool_hosts[0].root / "jobs").iterdir()) == []


@pytest.mark.ssh
def test_a_host_that_refuses_fails_the_attempt_and_stays_out_of_the_pool(tmp_path: Path, pool_hosts: list[Any]) -> None:
    with socket.socket() as s:      # a port nothing listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    good = pool_hosts[0]
    pools = tmp_path / "pools.yaml"
    pools.write_text(pools_yaml([good], max_jobs=1).replace(
        "    hosts:\n", f"    hosts:\n      - host: 127.0.0.1\n        port: {closed}\n        name: gone\n", 1)
        .replace("unhealthy_for: 1", "unhealthy_for: 60"))
    ex = SSHExecutor(pools_file=pools, state_dir=tmp_path / "state")
    mgr = PipelineManager(workspace_dir=tmp_path / "ws", executor=ex)
    retry = {"max": 1, "when": ["infrastructure"], "backoff": 0.1}
    spec = {"name": "p", "source": None, "stages": [
        {"name": "a", "jobs": [{"name": "first", "retry": retry, "commands": ["echo one"]}]},
        {"name": "b", "jobs": [{"name": "second", "depends_on": ["first"], "commands": ["echo two"]}]}]}
    run = anyio.run(lambda: mgr.arun_pipeline(spec, run_id="ssh-refused"))
    assert run.status == RunStatus.SUCCEEDED
    attempts = mgr.store.query("SELECT job, attempt, failure_class, reason FROM attempts "
                               "WHERE run_id = 'ssh-refused' ORDER BY job, attempt")
    assert [(a["job"], a["failure_class"]) for a in attempts] == [("first", "infrastructure"), ("first", None),
                                                                 ("second", None)]
    assert "ssh gone" in attempts[0]["reason"] and "out of the pool for 60s" in attempts[0]["reason"]
    for job in ("first", "second"):   # both ran on the good host; `second` did not try `gone` again
        assert _log(tmp_path / "ws", "ssh-refused", job).count("running on h0") == 1
