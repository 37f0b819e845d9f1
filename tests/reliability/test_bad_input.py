"""Malformed and hostile pipeline and deployment files: each refused before anything runs,
with a message naming the file (and the line/field where there is one); none crashes or hangs.

The corpus is `tests/reliability/corpus/` (see its generate.py); a handful of files too large
to commit are made here. Every file is loaded as a user would run it, in a child process
under a time bound (`_load_worker`), and again through the MCP server's run_pipeline and
deploy tools in-process. Had any of them run, a `RAN` / `DEPLOYED` marker would exist.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import mcp
import pytest

from tests.reliability.conftest import REPO, MakeServer, count, text

CORPUS = Path(__file__).resolve().parent / "corpus"
MANIFEST: dict[str, str] = json.loads((CORPUS / "manifest.json").read_text())
TIME_BOUND = 240.0   # the whole corpus; a single file takes milliseconds
MAX_MESSAGE = 6000


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("corpus_generate", CORPUS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, str]:
    """Every corpus file (committed ones, and the big ones written now) → expected fragment."""
    out = {CORPUS / name: fragment for name, fragment in MANIFEST.items()}
    big = tmp_path_factory.mktemp("big")
    for kind, name, content, fragment in _generator().big_cases():
        (big / kind).mkdir(exist_ok=True)
        path = big / kind / name
        path.write_bytes(content)
        out[path] = fragment
    return out


def test_corpus_is_committed_and_large_enough() -> None:
    files = {str(p.relative_to(CORPUS)) for p in CORPUS.glob("*/*.yaml")}
    assert files == set(MANIFEST), "regenerate with tests/reliability/corpus/generate.py"
    pipelines = [f for f in files if f.startswith("pipelines/")]
    deployments = [f for f in files if f.startswith("deployments/")]
    assert len(files) >= 100 and len(pipelines) >= 60 and len(deployments) >= 30


def test_the_files_the_corpus_mutates_are_valid(tmp_path: Path) -> None:
    """Each case breaks one thing of a valid file, so its refusal is for that thing."""
    from engine.deploy.config import load_deployment_config
    from engine.spec.model import load_pipeline

    gen = _generator()
    (tmp_path / "p.yaml").write_text(gen.OK)
    (tmp_path / "d.yaml").write_text(gen.DEPLOY_ENV)
    assert load_pipeline(tmp_path / "p.yaml").name == "p"
    assert [e.name for e in load_deployment_config(tmp_path / "d.yaml").environments] == ["staging"]


def _markers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name in ("RAN", "DEPLOYED")]


def test_every_file_is_refused_in_a_child_process(corpus: dict[Path, str], tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "tests.reliability._load_worker", str(ws), *map(str, corpus)]
    try:
        done = subprocess.run(cmd, cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=TIME_BOUND)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        started = [line for line in out.splitlines() if line.startswith("start ")]
        pytest.fail(f"loading hung; the last file started: {started[-1] if started else '(none)'}")
    assert done.returncode == 0, f"the loader died: {done.stderr[-3000:]}"
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(records) == len(corpus), "a file killed the loading process: " + done.stdout[-500:]

    problems = []
    for rec in records:
        path = Path(rec["file"])
        fragment = corpus[path]
        message = rec.get("message", "")
        if rec["outcome"] != "refused":
            problems.append(f"{path.name}: {rec['outcome']} {rec.get('error')} {message[:300]}")
        elif fragment not in message:
            problems.append(f"{path.name}: message lacks {fragment!r}: {message[:300]}")
        elif path.name not in message:
            problems.append(f"{path.name}: message does not name the file: {message[:300]}")
        elif len(message) > MAX_MESSAGE:
            problems.append(f"{path.name}: message of {len(message)} characters (echoes the input?)")
        problems.extend(f"{path.name}: an issue without its file: {issue}" for issue in rec.get("issues", [])
                        if issue["file"] is None or path.name not in issue["file"])
    assert not problems, "\n".join(problems)

    # Refused before anything ran: no run, no deployment, no job workspace, no marker.
    from engine.store import open_store

    with open_store(ws) as store:
        assert count(store, "runs") == 0
        assert count(store, "deployments") == 0
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())
    assert _markers(tmp_path) == [] and _markers(CORPUS) == []


def test_positioned_problems_carry_line_and_field(corpus: dict[Path, str], tmp_path: Path) -> None:
    """Problems inside a parsed document name the line and the field, not just the file."""
    from engine.errors import SpecError
    from engine.spec.model import load_pipeline

    cases = ["unknown_job_field.yaml", "timeout_string.yaml", "cycle_two.yaml", "artifact_dotdot.yaml",
             "duplicate_key_job.yaml", "unknown_retry_field.yaml", "retry_bad_class.yaml"]
    for name in cases:
        with pytest.raises(SpecError) as caught:
            load_pipeline(CORPUS / "pipelines" / name)
        issue = caught.value.issues[0]
        assert issue.line is not None and issue.line > 1, (name, str(caught.value))
        assert issue.field, (name, str(caught.value))


@pytest.mark.anyio
async def test_every_file_is_refused_through_the_server(corpus: dict[Path, str], make_server: MakeServer,
                                                        tmp_path: Path) -> None:
    server = make_server()
    problems = []
    async with mcp.Client(server) as client:
        for path, fragment in corpus.items():
            if path.parent.name == "pipelines":
                result = await client.call_tool("run_pipeline", {"config_path": str(path)})
            else:
                result = await client.call_tool("deploy", {"config_path": str(path), "environment": "staging",
                                                           "version": "1.0"})
            message = text(result)
            tool = "run_pipeline" if path.parent.name == "pipelines" else "deploy"
            if not result.is_error:
                problems.append(f"{path.name}: accepted: {message[:200]}")
            elif message.strip() == f"Error executing tool {tool}":
                problems.append(f"{path.name}: crashed the tool (the SDK's generic message)")
            elif fragment not in message or path.name not in message:
                problems.append(f"{path.name}: unclear refusal: {message[:300]}")
        # The server is still up and answers.
        health = await client.call_tool("pipeline_health", {})
    assert not problems, "\n".join(problems)
    assert not health.is_error
    assert count(server, "runs") == 0 and count(server, "deployments") == 0
    assert _markers(server.state.settings.workspace) == [] and _markers(CORPUS) == []
    audited = server.state.audit.recent(10_000)
    assert len(audited) == len(corpus) + 1 and {r.outcome for r in audited[:-1]} == {"error"}
