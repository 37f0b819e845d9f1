"""The `cicd-mcp` command line, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, ws: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIPELINE_WORKSPACE": str(ws)}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_run_the_example_pipeline_then_list_and_read_logs(tmp_path: Path) -> None:
    out = cli("run", "examples/pipeline.yaml", ws=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "status succeeded" in out.stdout
    for job in ("wheel", "lint", "unit-tests", "install-wheel"):
        assert job in out.stdout
    assert "dist/greet-1.0.0-py3-none-any.whl" in out.stdout
    run_id = out.stdout.split("\nrun ")[1].split()[0]
    runs = cli("runs", ws=tmp_path)
    assert run_id in runs.stdout and "succeeded" in runs.stdout
    logs = cli("logs", run_id, "install-wheel", "--tail", "5", ws=tmp_path)
    assert logs.returncode == 0
    assert "Hello, cicd-mcp!" in cli("logs", run_id, "install-wheel", ws=tmp_path).stdout
    grep = cli("logs", run_id, "unit-tests", "--grep", "ok$", ws=tmp_path)
    assert "test_default" in grep.stdout


def test_failed_run_exits_non_zero_and_shows_the_failing_tail(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: bad\nsource: null\nstages:\n  - name: s\n    jobs:\n"
                 "      - {name: boom, commands: ['echo about-to-fail', 'exit 4']}\n")
    out = cli("run", str(p), ws=tmp_path / "ws")
    assert out.returncode == 1
    assert "about-to-fail" in out.stdout and "FAIL" in out.stdout


def test_invalid_pipeline_exits_2_with_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: bad\nstages:\n  - name: s\n    jobs:\n      - {name: a, commands: [x], depends_on: [ghost]}\n")
    out = cli("run", str(p), ws=tmp_path / "ws")
    assert out.returncode == 2
    assert f"{p}:5:" in out.stderr and "'ghost' names no job or stage" in out.stderr


def test_variables_from_the_command_line(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: v\nsource: null\nstages:\n  - name: s\n    jobs:\n"
                 "      - {name: a, commands: ['echo got=${WHO}']}\n")
    out = cli("run", str(p), "--var", "WHO=cli-user", ws=tmp_path / "ws")
    assert out.returncode == 0
    run_id = out.stdout.split("\nrun ")[1].split()[0]
    assert "got=cli-user" in cli("logs", run_id, "a", ws=tmp_path / "ws").stdout


def test_runs_has_a_header_row_and_quiet_gives_only_ids(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: listed\nsource: null\nstages:\n  - name: s\n    jobs:\n      - {name: a, commands: ['true']}\n")
    assert cli("runs", ws=tmp_path / "ws").stdout == "no runs yet\n"
    ids = []
    for _ in range(2):
        out = cli("run", str(p), ws=tmp_path / "ws")
        ids.append(out.stdout.split("\nrun ")[1].split()[0])
    table = cli("runs", ws=tmp_path / "ws").stdout.splitlines()
    assert table[0].split() == ["RUN", "ID", "STARTED", "PIPELINE", "STATUS", "DURATION", "REASON"]
    assert [line.split()[0] for line in table[1:]] == ids[::-1]
    assert table[1].index("listed") == table[0].index("PIPELINE")
    quiet = cli("runs", "-q", "--limit", "1", ws=tmp_path / "ws")
    assert quiet.stdout == f"{ids[1]}\n"


def test_report_of_an_unknown_pipeline_fails_and_writes_nothing(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "engine.cli", "report", "nosuch", "--out", str(tmp_path / "r.html")],
                         cwd=ROOT, env={**os.environ, "PIPELINE_WORKSPACE": str(tmp_path / "ws")},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "no pipeline 'nosuch'" in out.stderr and "report written" not in out.stdout
    assert not (tmp_path / "r.html").exists()
