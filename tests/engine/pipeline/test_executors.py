"""The sandbox, local and docker executors against the real thing: bubblewrap, processes, a Docker engine."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.cli import main as cli_main
from engine.pipeline.manager import PipelineManager
from engine.pipeline.states import JobStatus, RunStatus
from engine.store import open_store, runs
from tests.engine.pipeline.conftest import JOB_IMAGE

ROOT = Path(__file__).resolve().parents[3]


def pipeline(*jobs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": extra.pop("name", "x"), "source": extra.pop("source", None),
            "stages": [{"name": "s", "jobs": list(jobs)}], **extra}


def marker() -> str:
    """A `sleep` argument no other process has: survivors are found by it in the host's /proc."""
    return f"{random.randint(3000, 3999)}.{random.randint(100000, 999999)}"


def survivors(mark: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        except OSError:
            continue
        if mark.encode() in args and not zombie:
            found.append(int(entry.name))
    return found


def gone(mark: str, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while survivors(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not survivors(mark)


def stubborn_children(mark: str) -> str:
    """A job that leaves a setsid child ignoring SIGTERM, a double-forked child and a TERM-ignoring
    child in its group, then waits."""
    return (f"(setsid sh -c 'trap \"\" TERM; exec sleep {mark}' &) ; "
            f"(sh -c 'sleep {mark} &' &) ; "
            f"sh -c 'trap \"\" TERM; sleep {mark}' & "
            "echo children-started; sleep 3600")


@pytest.fixture
def sentinel() -> Iterator[Path]:
    """A file outside /tmp (a sandbox's /tmp is its own tmpfs, where a write would land unseen)."""
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="cicd-sentinel-", dir="/var/tmp"))
    path = directory / "sentinel.txt"
    path.write_text("original\n")
    yield path
    path.unlink(missing_ok=True)
    directory.rmdir()


# -- the sandbox --------------------------------------------------------------------------------

@pytest.mark.usefixtures("sandboxed")
def test_a_sandboxed_job_cannot_write_outside_its_workspace(tmp_path: Path, sentinel: Path) -> None:
    manager = PipelineManager(tmp_path / "ws", max_workers=2)
    run = manager.run_pipeline(pipeline(
        {"name": "outside", "commands": [f"echo changed > {sentinel}"]},
        {"name": "inside", "commands": ["echo ok > in-workspace.txt", "echo ok > $HOME/h.txt", "echo ok > /tmp/t.txt",
                                        "cat in-workspace.txt $HOME/h.txt /tmp/t.txt"]},
        {"name": "system", "commands": ["touch /usr/local/lib/cicd-sandbox-probe"]}))
    assert run.jobs["outside"].status == JobStatus.FAILED
    assert "Read-only file system" in manager.read_log(run.run_id, "outside").text
    assert sentinel.read_text() == "original\n"
    assert run.jobs["inside"].status == JobStatus.SUCCEEDED, manager.read_log(run.run_id, "inside").text
    assert run.jobs["system"].status == JobStatus.FAILED
    assert not Path("/usr/local/lib/cicd-sandbox-probe").exists()
    assert manager.get_run(run.run_id).context.get("warning") is None


@pytest.mark.slow
@pytest.mark.usefixtures("sandboxed")
def test_a_virtualenv_in_the_workspace_works_and_the_system_python_stays_read_only(tmp_path: Path) -> None:
    src = tmp_path / "project"
    src.mkdir()
    wheel = src / "probe_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:   # a wheel made by hand: nothing to build, nothing to download
        zf.writestr("probe_pkg/__init__.py", "VALUE = 42\n")
        zf.writestr("probe_pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: probe-pkg\nVersion: 1.0\n")
        zf.writestr("probe_pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                    "Tag: py3-none-any\n")
        zf.writestr("probe_pkg-1.0.dist-info/RECORD", "")
    (src / "pipeline.yaml").write_text(textwrap.dedent("""\
        name: venv
        stages:
          - name: s
            jobs:
              - name: venv
                commands:
                  - python3 -m venv .venv
                  - .venv/bin/pip install --no-index -q ./probe_pkg-1.0-py3-none-any.whl
                  - .venv/bin/python -c "import probe_pkg; print('imported', probe_pkg.VALUE)"
              - name: system
                commands: ["python3 -m pip install --no-index ./probe_pkg-1.0-py3-none-any.whl"]
        """))
    manager = PipelineManager(tmp_path / "ws", max_workers=2)
    run = manager.run_pipeline(src / "pipeline.yaml")
    assert run.jobs["venv"].status == JobStatus.SUCCEEDED, manager.read_log(run.run_id, "venv").text
    assert "imported 42" in manager.read_log(run.run_id, "venv").text
    assert run.jobs["system"].status == JobStatus.FAILED, manager.read_log(run.run_id, "system").text
    assert "Read-only file system" in manager.read_log(run.run_id, "system").text
    found = subprocess.run([sys.executable, "-c", "import probe_pkg"], capture_output=True, check=False)
    assert found.returncode != 0   # nothing reached the host's Python


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield server.getsockname()[1]
    stop.set()
    t.join()
    server.close()


@pytest.mark.usefixtures("sandboxed")
def test_network_false_cuts_the_network(tmp_path: Path, listener: int) -> None:
    connect = (f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {listener}), 3); "
               "print('reached', 'peer')\"")
    manager = PipelineManager(tmp_path / "ws", max_workers=2)
    run = manager.run_pipeline(pipeline({"name": "online", "commands": [connect]},
                                        {"name": "offline", "commands": [connect], "network": False}))
    assert run.jobs["online"].status == JobStatus.SUCCEEDED, manager.read_log(run.run_id, "online").text
    assert run.jobs["offline"].status == JobStatus.FAILED
    assert "reached peer" not in manager.read_log(run.run_id, "offline").text
    run = manager.run_pipeline(pipeline({"name": "off", "commands": [connect]}, name="y", network=False))
    assert run.jobs["off"].status == JobStatus.FAILED


@pytest.mark.parametrize("executor", ["sandbox", "local"])
def test_a_timeout_leaves_no_process_alive(tmp_path: Path, executor: str, request: pytest.FixtureRequest) -> None:
    if executor == "sandbox":
        request.getfixturevalue("sandboxed")
    mark = marker()
    manager = PipelineManager(tmp_path / "ws", max_workers=1)
    run = manager.run_pipeline(pipeline({"name": "stubborn", "runs_on": executor, "timeout": 2,
                                         "commands": [stubborn_children(mark)]}))
    assert run.jobs["stubborn"].status == JobStatus.TIMED_OUT
    assert "children-started" in manager.read_log(run.run_id, "stubborn").text
    assert gone(mark), f"left alive: {survivors(mark)}"


@pytest.mark.anyio
@pytest.mark.parametrize("executor", ["sandbox", "local"])
async def test_a_cancel_leaves_no_process_alive(tmp_path: Path, executor: str, request: pytest.FixtureRequest) -> None:
    if executor == "sandbox":
        request.getfixturevalue("sandboxed")
    mark = marker()
    manager = PipelineManager(tmp_path / "ws", max_workers=1)
    with anyio.move_on_after(2.5):
        await manager.arun_pipeline(pipeline({"name": "stubborn", "runs_on": executor,
                                              "commands": [stubborn_children(mark)]}), run_id="cancelled")
    assert manager.get_run("cancelled").jobs["stubborn"].status == JobStatus.CANCELLED
    assert gone(mark), f"left alive: {survivors(mark)}"


@pytest.mark.parametrize("executor", ["sandbox", "local"])
def test_a_killed_runner_leaves_nothing_and_recovery_uses_the_record(tmp_path: Path, executor: str,
                                                                     request: pytest.FixtureRequest) -> None:
    if executor == "sandbox":
        request.getfixturevalue("sandboxed")
    mark = marker()
    ws = tmp_path / "ws"
    spec = tmp_path / "p.yaml"
    spec.write_text(json.dumps(pipeline({"name": "long", "runs_on": executor, "commands": [stubborn_children(mark)]},
                                        name="crashy")))
    code = ("from engine.pipeline.manager import PipelineManager; "
            f"PipelineManager({str(ws)!r}).run_pipeline({str(spec)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 20
        record = None
        while time.monotonic() < deadline:
            rows = []
            if (ws / "state.db").exists():
                with open_store(ws) as store:
                    rows = [r for run_id in runs.recent_run_ids(store, 1)
                            for r in runs.job_recovery_records(store, run_id)]
            if rows and len(survivors(mark)) >= 3:
                record = rows[0]
                break
            time.sleep(0.1)
        assert record is not None, "the job never recorded its recovery record"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _job, kind, data = record
    assert kind == executor and isinstance(data["pgid"], int) and data["cookie"]
    manager = PipelineManager(ws)      # recovery runs at start-up
    (run,) = manager.list_runs()
    assert run.status == RunStatus.INTERRUPTED
    assert gone(mark), f"left alive: {survivors(mark)}"


@pytest.mark.usefixtures("sandboxed")
def test_a_sandbox_that_could_not_be_built_is_built_again_and_the_job_runs_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # bwrap fails its remount pass when another job's overlay workspace is mounted or unmounted while
    # it copies the mount tree (seen in CI); this bwrap fails its first two builds with that error.
    import shutil

    import engine.pipeline.executors.sandbox as sandbox

    failures, ran = tmp_path / "failures", tmp_path / "ran"
    failures.write_text("2")
    fake = tmp_path / "bwrap"
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        left=$(cat {failures})
        if [ "$1" = "--ro-bind" ] && [ "$left" -gt 0 ] && [ "$*" != "${{*%--chdir*}}" ]; then
            echo $((left - 1)) > {failures}
            echo "bwrap: Can't bind mount /oldroot/x on /newroot/x: Unable to apply mount flags: remount \
        \"/newroot/x/jobs/other/workspace\": Invalid argument" >&2
            exit 1
        fi
        exec {shutil.which("bwrap")} "$@"
        """))
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox, "BWRAP", str(fake))
    monkeypatch.setenv(sandbox.WRITABLE_ENV, str(tmp_path))
    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(pipeline({"name": "a", "commands": [f"echo once >> {ran}"]}, name="rebuilt"))
    assert run.status == RunStatus.SUCCEEDED, run.jobs["a"].reason
    assert ran.read_text() == "once\n" and failures.read_text().strip() == "0"
    log = manager.read_log(run.run_id, "a").text
    assert log.count("the sandbox could not be built") == 2 and log.count("attempt 1 of 1") == 1


def test_without_bubblewrap_jobs_run_locally_with_one_warning_on_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import engine.pipeline.executors.sandbox as sandbox

    monkeypatch.setattr(sandbox, "BWRAP", str(tmp_path / "no-such-bwrap"))
    spec = tmp_path / "p.yaml"
    spec.write_text(json.dumps(pipeline({"name": "a", "commands": ["echo ran"]}, {"name": "b", "commands": ["true"]},
                                        name="fallback")))
    assert cli_main(["--workspace", str(tmp_path / "ws"), "run", str(spec)]) == 0
    out = capsys.readouterr().out
    assert out.count("warning: jobs run without a sandbox") == 1 and "is not installed" in out
    (run,) = PipelineManager(tmp_path / "ws").list_runs()
    assert cli_main(["--workspace", str(tmp_path / "ws"), "show", run.run_id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "jobs run without a sandbox" in shown["context"]["warning"]


# -- workspaces ---------------------------------------------------------------------------------

def test_a_pipeline_inside_the_state_directory_does_not_copy_its_runs_into_jobs(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "file.txt").write_text("source\n")
    (ws / "p.yaml").write_text(textwrap.dedent("""\
        name: inside
        source: .
        stages:
          - name: s
            jobs:
              - name: first
                commands: ["cat file.txt", "test ! -e runs", "test ! -e state.db", "echo changed > file.txt"]
              - name: second
                commands: ["cat file.txt", "test ! -e runs"]
        """))
    manager = PipelineManager(ws, max_workers=1)
    for _ in range(2):
        run = manager.run_pipeline(ws / "p.yaml")
        assert run.status == RunStatus.SUCCEEDED, manager.read_log(run.run_id, "first").text
    assert (ws / "file.txt").read_text() == "source\n"


def test_git_is_hidden_unless_a_job_asks_for_it(tmp_path: Path) -> None:
    src = tmp_path / "repo"
    src.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    (src / "a.txt").write_text("a\n")
    for args in (["init", "-q"], ["add", "a.txt"], ["commit", "-qm", "first"], ["tag", "v1.2.3"]):
        subprocess.run(["git", *args], cwd=src, env=env, check=True)
    (src / "p.yaml").write_text(textwrap.dedent("""\
        name: git
        stages:
          - name: s
            jobs:
              - name: plain
                commands: ["test ! -e .git", "cat a.txt"]
              - name: describe
                git: true
                commands: ["git config --global --add safe.directory '*'", "git describe --tags"]
        """))
    manager = PipelineManager(tmp_path / "ws", max_workers=2)
    run = manager.run_pipeline(src / "p.yaml")
    assert run.jobs["plain"].status == JobStatus.SUCCEEDED, manager.read_log(run.run_id, "plain").text
    assert run.jobs["describe"].status == JobStatus.SUCCEEDED, manager.read_log(run.run_id, "describe").text
    assert "v1.2.3" in manager.read_log(run.run_id, "describe").text


# -- docker -------------------------------------------------------------------------------------

@pytest.fixture
def docker_manager(job_docker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineManager:
    monkeypatch.setenv("DOCKER_HOST", job_docker)
    return PipelineManager(tmp_path / "ws", max_workers=2)


def _labelled(base_url: str, run: str | None = None) -> list[str]:
    import docker

    labels = ["io.cicd-mcp.executor=docker", *([f"io.cicd-mcp.run={run}"] if run else [])]
    client = docker.DockerClient(base_url=base_url, timeout=30)
    try:
        return [c.name for c in client.containers.list(all=True, filters={"label": labels})]
    finally:
        client.close()


@pytest.mark.docker
def test_an_image_job_runs_in_a_container_with_its_workspace_and_services(
        docker_manager: PipelineManager, job_docker: str) -> None:
    run = docker_manager.run_pipeline(pipeline(
        {"name": "in-image", "image": JOB_IMAGE, "variables": {"GREETING": "a; b"},
         "commands": ["echo \"greeting=${GREETING}\"", "test ! -e /usr/bin/python3", "echo built > out.txt"],
         "artifacts": ["out.txt"]},
        {"name": "with-service", "image": JOB_IMAGE, "services": [{"image": JOB_IMAGE, "alias": "web"}],
         "commands": ["for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://web:8080/ && exit 0; sleep 0.3; done; "
                      "exit 1"]},
        {"name": "offline", "image": JOB_IMAGE, "network": False, "commands": ["ip link | grep -c eth0 || true"]}))
    log = docker_manager.read_log(run.run_id, "in-image").text
    assert run.jobs["in-image"].status == JobStatus.SUCCEEDED, log
    assert "greeting=a; b" in log
    assert [a.path for a in run.jobs["in-image"].artifacts] == ["out.txt"]
    assert Path(run.jobs["in-image"].artifacts[0].stored_path).read_text() == "built\n"
    svc_log = docker_manager.read_log(run.run_id, "with-service").text
    assert run.jobs["with-service"].status == JobStatus.SUCCEEDED, svc_log
    assert "hello from the service" in svc_log
    assert run.jobs["offline"].status == JobStatus.SUCCEEDED
    assert _labelled(job_docker, run.run_id) == []   # containers (services too) are removed with their job


@pytest.mark.docker
def test_a_missing_image_fails_as_infrastructure_naming_it_and_is_not_pulled(
        docker_manager: PipelineManager, job_docker: str) -> None:
    import docker

    run = docker_manager.run_pipeline(pipeline(
        {"name": "missing", "image": "registry.example/nope:1", "commands": ["true"],
         "retry": {"max": 1, "backoff": 0, "when": ["infrastructure"]}}))
    res = run.jobs["missing"]
    assert res.status == JobStatus.FAILED and res.attempts == 2
    assert "'registry.example/nope:1' is not on the Docker engine" in (res.reason or "")
    rows = docker_manager.store.query("SELECT failure_class FROM attempts WHERE run_id = ?", (run.run_id,))
    assert [r["failure_class"] for r in rows] == ["infrastructure", "infrastructure"]
    client = docker.DockerClient(base_url=job_docker, timeout=30)
    try:
        assert not [i for i in client.images.list() if "registry.example/nope:1" in i.tags]
    finally:
        client.close()


@pytest.mark.docker
def test_a_docker_job_timeout_leaves_no_process_and_no_container(docker_manager: PipelineManager,
                                                                  job_docker: str) -> None:
    mark = marker()
    run = docker_manager.run_pipeline(pipeline({"name": "stubborn", "image": JOB_IMAGE, "timeout": 3,
                                                "commands": [stubborn_children(mark)]}))
    assert run.jobs["stubborn"].status == JobStatus.TIMED_OUT
    assert gone(mark, within=10), f"left alive: {survivors(mark)}"
    assert _labelled(job_docker, run.run_id) == []


class _Proxy:
    """A unix-socket proxy to the Docker engine that can be cut: the engine 'goes away' for its clients."""

    def __init__(self, target: str, path: Path) -> None:
        self.target = target.removeprefix("unix://")
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(16)
        self.url = f"unix://{path}"
        self.conns: list[socket.socket] = []
        self.cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.cut:
                client.close()
                continue
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def kill(self) -> None:
        self.cut = True
        self.server.close()
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.kill()
        for s in self.conns:
            s.close()


@pytest.mark.docker
def test_the_docker_engine_going_away_fails_the_job_as_infrastructure_and_the_run_goes_on(
        job_docker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    sock_dir = Path(tempfile.mkdtemp(prefix="dxp-", dir="/tmp"))
    proxy = _Proxy(job_docker, sock_dir / "p.sock")
    monkeypatch.setenv("DOCKER_HOST", proxy.url)
    manager = PipelineManager(tmp_path / "ws", max_workers=2)

    def cut_when_started(event: Any) -> None:
        if event.kind == "job_started" and event.job == "in-docker":
            timer = threading.Timer(1.5, proxy.kill)
            timer.daemon = True
            timer.start()

    try:
        run = manager.run_pipeline(pipeline(
            {"name": "in-docker", "image": JOB_IMAGE, "commands": ["echo started; sleep 30"]},
            {"name": "independent", "runs_on": "local", "commands": ["sleep 2.5", "echo fine"]}),
            on_event=cut_when_started)
    finally:
        time.sleep(0.5)
        proxy.close()
    res = run.jobs["in-docker"]
    assert res.status == JobStatus.FAILED
    rows = manager.store.query("SELECT failure_class, reason FROM attempts WHERE run_id = ? AND job = ?",
                               (run.run_id, "in-docker"))
    assert rows[0]["failure_class"] == "infrastructure", rows
    assert "Docker engine" in rows[0]["reason"]
    assert run.jobs["independent"].status == JobStatus.SUCCEEDED


@pytest.mark.docker
def test_recovery_removes_the_containers_a_killed_runner_left(job_docker: str, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    spec = tmp_path / "p.yaml"
    spec.write_text(json.dumps(pipeline({"name": "long", "image": JOB_IMAGE, "commands": ["sleep 300"],
                                         "services": [{"image": JOB_IMAGE, "alias": "web"}]}, name="crashy-docker")))
    code = ("from engine.pipeline.manager import PipelineManager; "
            f"PipelineManager({str(ws)!r}).run_pipeline({str(spec)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_HOST": job_docker})
    try:
        deadline = time.monotonic() + 180   # a runner that imports the engine and starts two containers
        record = None
        while time.monotonic() < deadline and record is None and proc.poll() is None:
            if (ws / "state.db").exists():
                with open_store(ws) as store:
                    rows = [r for run_id in runs.recent_run_ids(store, 1)
                            for r in runs.job_recovery_records(store, run_id)]
                record = rows[0] if rows else None
            time.sleep(0.2)
        assert record is not None, f"the job never recorded its recovery record (runner exit: {proc.poll()})"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _job, kind, data = record
    assert kind == "docker" and len(data["containers"]) == 2 and data["network"] and data["base_url"] == job_docker
    assert len(_labelled(job_docker, data["run"])) == 2   # the service and the job outlived their runner
    (run,) = PipelineManager(ws).list_runs()     # recovery runs at start-up, with the engine from the record
    assert run.status == RunStatus.INTERRUPTED
    assert _labelled(job_docker, data["run"]) == []


def test_matrix_jobs_get_the_source_although_their_names_hold_commas(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "file.txt").write_text("source\n")
    (src / "p.yaml").write_text(textwrap.dedent("""\
        name: matrix-src
        stages:
          - name: s
            jobs:
              - name: m
                matrix: {a: [1, 2], b: [x]}
                commands: ["cat file.txt", "echo changed > file.txt"]
        """))
    manager = PipelineManager(tmp_path / "ws", max_workers=2)
    run = manager.run_pipeline(src / "p.yaml")
    assert run.status == RunStatus.SUCCEEDED, {n: j.reason for n, j in run.jobs.items()}
    assert (src / "file.txt").read_text() == "source\n"
