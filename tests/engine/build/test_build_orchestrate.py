"""Real builds of the tiny fixture projects: the artifacts exist, hash right and run.

Each test copies a fixture under tmp_path first, because builds write into the project
(node_modules, target/, dist/).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import anyio
import pytest

from engine.build import (
    BuildResult,
    BuildStatus,
    aorchestrate_build_pipeline,
    orchestrate_build_pipeline,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "projects"
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def _copy(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(FIXTURES / name, dest)
    return dest


def _check_artifacts(result: BuildResult) -> None:
    assert result.status == BuildStatus.SUCCEEDED, result.reason or result.log_tail
    assert result.artifacts
    for artifact in result.artifacts:
        data = Path(artifact.path).read_bytes()
        assert artifact.size == len(data)
        assert artifact.sha256 == hashlib.sha256(data).hexdigest()
    lines = Path(result.log_path).read_text().splitlines()
    assert lines and all(STAMPED.match(line) for line in lines)
    assert all(command.exit_code == 0 for command in result.commands)
    assert len([line for line in lines if line[25:27] == "$ "]) == len(result.commands)


def test_python_wheel_installs_in_a_fresh_venv(tmp_path: Path) -> None:
    project = _copy("python", tmp_path)
    result = orchestrate_build_pipeline(project, "python", tmp_path / "out")
    _check_artifacts(result)
    kinds = {a.kind: Path(a.path).name for a in result.artifacts}
    assert kinds == {"wheel": "hello_py-0.1.0-py3-none-any.whl", "sdist": "hello_py-0.1.0.tar.gz"}
    with tarfile.open(tmp_path / "out" / kinds["sdist"]) as sdist:
        assert "hello_py-0.1.0/src/hello_py/__init__.py" in sdist.getnames()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    wheel = str(tmp_path / "out" / kinds["wheel"])
    subprocess.run([py, "-m", "pip", "install", "--no-index", "--quiet", wheel], check=True)
    probe = subprocess.run([py, "-c", "import hello_py; print(hello_py.__version__, hello_py.greet('ci'))"],
                           capture_output=True, text=True, check=True, cwd=tmp_path)
    assert probe.stdout.strip() == "0.1.0 hello, ci"
    script = subprocess.run([str(venv / "bin" / "hello-py")], capture_output=True, text=True, check=True)
    assert script.stdout.strip() == "hello-py 0.1.0"


def test_javascript_installs_from_lockfile_builds_and_packs(tmp_path: Path) -> None:
    project = _copy("javascript", tmp_path)
    result = orchestrate_build_pipeline(project, "auto", tmp_path / "out")
    _check_artifacts(result)
    assert result.language == "javascript"
    assert [c.argv[:2] for c in result.commands] == [["npm", "ci"], ["npm", "run"], ["npm", "pack"]]
    [artifact] = result.artifacts
    assert (artifact.kind, Path(artifact.path).name) == ("npm-package", "hello-js-0.1.0.tgz")
    with tarfile.open(artifact.path) as tgz:
        # Extraction filters came with Python 3.11.4 (Debian 12's python3 is 3.11.2); this archive is our own.
        tgz.extractall(tmp_path / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    # The packed package holds the build script's output and loads in node.
    script = "const m = require('./package'); console.log(m.version, m.greet('ci'))"
    out = subprocess.run(["node", "-e", script], cwd=tmp_path / "unpacked", capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "0.1.0 hello, ci"
    assert "built hello-js 0.1.0" in Path(result.log_path).read_text()


def test_go_binary_prints_its_version(tmp_path: Path) -> None:
    project = _copy("go", tmp_path)
    result = orchestrate_build_pipeline(project, "go", tmp_path / "out")
    _check_artifacts(result)
    [artifact] = result.artifacts
    assert artifact.kind == "binary"
    out = subprocess.run([artifact.path, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "hello-go 0.1.0"


def test_rust_binary_is_copied_out_and_prints_its_version(tmp_path: Path) -> None:
    project = _copy("rust", tmp_path)
    result = orchestrate_build_pipeline(project, "rust", tmp_path / "out")
    _check_artifacts(result)
    assert result.commands[0].argv == ["cargo", "build", "--release", "--locked"]
    [artifact] = result.artifacts
    assert artifact.path == str(tmp_path / "out" / "hello-rs")
    out = subprocess.run([artifact.path, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "hello-rs 0.1.0"


def test_only_this_builds_files_are_artifacts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old-release.tgz").write_text("from an earlier build")
    result = orchestrate_build_pipeline(_copy("javascript", tmp_path), "javascript", out)
    assert [Path(a.path).name for a in result.artifacts] == ["hello-js-0.1.0.tgz"]


def test_compile_error_fails_with_the_command_and_the_compiler_output(tmp_path: Path) -> None:
    project = _copy("rust", tmp_path)
    (project / "src" / "main.rs").write_text("fn main() { let x: u32 = \"no\"; }\n")
    result = orchestrate_build_pipeline(project, "rust", tmp_path / "out")
    assert result.status == BuildStatus.FAILED
    assert result.reason == "`cargo build --release --locked` exited with 101"
    assert "mismatched types" in Path(result.log_path).read_text()
    assert "mismatched types" in result.log_tail or "error" in result.log_tail
    assert result.artifacts == []
    assert len(result.commands) == 1


def test_preflight_error_stops_before_any_command(tmp_path: Path) -> None:
    project = _copy("javascript", tmp_path)
    (project / "package-lock.json").unlink()
    result = orchestrate_build_pipeline(project, "javascript", tmp_path / "out")
    assert result.status == BuildStatus.FAILED
    assert result.commands == []
    assert [f.code for f in result.findings] == ["no-lockfile"]
    assert result.reason is not None and "no package-lock.json" in result.reason
    assert not (project / "node_modules").exists()


def _hanging_project(tmp_path: Path) -> Path:
    """A JS project whose build prints `ready`, records its pid, then waits for a `go-on` file."""
    project = _copy("javascript", tmp_path)
    (project / "hang.js").write_text(
        "const fs = require('fs');\n"
        "fs.writeFileSync('build.pid', String(process.pid));\n"
        "console.log('ready');\n"
        "const t = setInterval(() => {\n"
        "  if (fs.existsSync('go-on')) { console.log('done'); clearInterval(t); }\n"
        "}, 20);\n"
    )
    package = json.loads((project / "package.json").read_text())
    package["scripts"]["build"] = "node hang.js && node build.js"
    (project / "package.json").write_text(json.dumps(package))
    return project


def _wait_for(predicate: object, what: str) -> None:
    # A liveness bound, not a speed assertion: it only stops a hung test.
    deadline = time.monotonic() + 60
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"


def test_output_reaches_the_log_while_the_command_runs(tmp_path: Path) -> None:
    project = _hanging_project(tmp_path)
    log = tmp_path / "build.log"
    results: list[BuildResult] = []
    worker = threading.Thread(target=lambda: results.append(
        orchestrate_build_pipeline(project, "javascript", tmp_path / "out", log_path=log)))
    worker.start()
    # The build cannot finish until the test has seen `ready` in the log: a buffered log deadlocks here.
    _wait_for(lambda: log.exists() and re.search(r"Z ready$", log.read_text(), re.MULTILINE),
              "`ready` in the log")
    assert worker.is_alive()
    (project / "go-on").touch()
    worker.join(120)
    [result] = results
    assert result.status == BuildStatus.SUCCEEDED, result.reason
    text = log.read_text()
    assert text.index(" ready\n") < text.index(" done\n")


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    project = _hanging_project(tmp_path)
    out = tmp_path / "out"
    result = orchestrate_build_pipeline(project, "javascript", out, timeout=8)
    assert result.status == BuildStatus.TIMED_OUT, result.reason
    assert result.reason is not None and result.reason.startswith("timed out after 8s during `npm run build`")
    assert result.commands[-1].exit_code is None
    pid = int((project / "build.pid").read_text())
    assert not _alive(pid)
    assert "process group killed" in Path(result.log_path).read_text()


@pytest.mark.anyio
async def test_cancelling_the_async_build_kills_its_processes(tmp_path: Path) -> None:
    project = _hanging_project(tmp_path)
    pidfile = project / "build.pid"
    with anyio.CancelScope() as scope:
        async def cancel_when_started() -> None:
            while not pidfile.exists():
                await anyio.sleep(0.05)
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_when_started)
            await aorchestrate_build_pipeline(project, "javascript", tmp_path / "out")
            pytest.fail("the build finished although its script waits forever")
    assert scope.cancelled_caught
    assert not _alive(int(pidfile.read_text()))
    log = tmp_path / "out" / "logs" / "build-javascript.log"
    assert "cancelled during `npm run build`" in log.read_text()
