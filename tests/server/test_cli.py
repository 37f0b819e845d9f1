"""`cicd-mcp`: the engine's commands and the server's in one parser, the SDK loaded only when needed."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from engine.store import open_store
from engine.store.access import AuditRecord
from server.audit import AuditLog
from server.cli import add_commands, build_parser
from tests.server.conftest import REPO, policy_yaml
from tests.server.test_serve import server_env

ENGINE_COMMANDS = {"run", "runs", "show", "logs", "cancel", "report", "export"}
SERVER_COMMANDS = {"serve", "audit", "token", "manifests"}


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [action.dest for action in sub._get_subactions()]


def test_one_parser_has_every_command_once() -> None:
    parser = build_parser()
    names = _commands(parser)
    assert set(names) >= ENGINE_COMMANDS | SERVER_COMMANDS
    assert len(names) == len(set(names)), names
    # Whoever adds the server's commands first (the engine's parser, or server.cli), a second
    # call adds nothing.
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    add_commands(sub)
    assert _commands(parser) == names


def test_server_commands_join_a_parser_that_lacks_them() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="a command of the parser it joins")
    add_commands(sub)
    add_commands(sub)
    assert _commands(parser) == ["run", "serve", "audit", "token", "manifests"]


def test_engine_commands_do_not_load_the_sdk(workspace: Path, tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("name: quiet\nsource: null\nstages:\n  - name: s\n    jobs:\n"
                        "      - {name: a, commands: ['echo hi']}\n")
    code = (
        "import json, sys\n"
        "from server.cli import main\n"
        f"code = main(['run', '-q', {str(pipeline)!r}])\n"
        "print(json.dumps([code, sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=server_env(workspace), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    code, loaded = json.loads(out.stdout.splitlines()[-1])
    assert code == 0
    assert "mcp" not in loaded and "server" in loaded


def test_no_command_prints_the_usage_instead_of_serving(workspace: Path) -> None:
    # A stdio server would wait on the open stdin until the timeout; the usage ends at once.
    proc = subprocess.Popen([sys.executable, "-m", "server"], cwd=REPO, env=server_env(workspace),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
        out, err = proc.communicate()
    assert code == 2, err
    assert err.startswith("usage: cicd-mcp") and "serve" in err and "run the MCP server" in err
    assert out == ""


def test_serve_options_without_serve_are_refused(workspace: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "server", "--policy", str(tmp_path / "none.yaml")], cwd=REPO,
                         env=server_env(workspace), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "usage: cicd-mcp" in out.stderr
    assert "cannot read the trust policy" not in out.stderr


def test_version(workspace: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "server", "--version"], cwd=REPO, env=server_env(workspace),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"cicd-mcp (\d+\.\d+\.\d+\S*|unknown \(not installed\))\n", out.stdout), out.stdout


def test_serve_help_describes_the_command_and_its_transports(workspace: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "server", "serve", "--help"], cwd=REPO, env=server_env(workspace),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "Serve the engine's tools" in text and "trust gate" in text
    assert "--transport {stdio,sse,http} stdio (default" in text and "streamable HTTP at /mcp" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_serve_says_where_it_listens_which_policy_and_the_anonymous_level(workspace: Path,
                                                                                tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml(http="{anonymous_level: verified, tokens: []}"))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", str(port), "--policy", str(policy)],
        cwd=tmp_path, env=server_env(workspace), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first, second = proc.stderr.readline(), proc.stderr.readline()
        assert f"serving MCP over streamable HTTP at http://127.0.0.1:{port}/mcp" in first, first + second
        assert f"trust policy {policy}" in second
        assert "callers without a bearer token are verified" in second
        # What it announced is true: the address answers MCP.
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = httpx.post(f"http://127.0.0.1:{port}/mcp", json={}, timeout=5,
                                   headers={"Accept": "application/json, text/event-stream"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "the server never listened"
                time.sleep(0.1)
        assert reply.status_code in (400, 406), reply.text
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_stdio_serve_names_the_policy_and_the_client_level_on_stderr(workspace: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml())
    out = subprocess.run([sys.executable, "-m", "server", "serve", "--policy", str(policy)], cwd=tmp_path,
                         env=server_env(workspace), input="", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""  # stdout belongs to the protocol
    assert f"trust policy {policy}" in out.stderr and "the stdio client is trusted" in out.stderr


def test_a_relative_policy_that_is_not_there_says_where_it_looked(workspace: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "server", "serve", "--policy", "./trust_policy.yaml"], cwd=tmp_path,
                         env=server_env(workspace), input="", capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert f"no such file in {tmp_path}" in out.stderr and '--policy "$PWD/./trust_policy.yaml"' in out.stderr


def test_without_policy_outside_the_checkout_the_packaged_policy_is_in_force(workspace: Path,
                                                                             tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "server", "serve"], cwd=tmp_path, env=server_env(workspace),
                         input="", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # Installed: the copy packaged as server/default_trust_policy.yaml; from a checkout on
    # PYTHONPATH: the checkout's own.
    named = re.search(r"trust policy (/.+?)(?:;| \(the policy packaged)", out.stderr)
    assert named is not None, out.stderr
    assert Path(named.group(1)).name in ("default_trust_policy.yaml", "trust_policy.yaml")
    assert Path(named.group(1)).is_file() and not Path(named.group(1)).is_relative_to(tmp_path)


def test_manifests_outside_the_checkout_creates_nothing(workspace: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "server", "manifests"], cwd=tmp_path, env=server_env(workspace),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "there is no ./tool_manifests/" in out.stderr and "--out DIR" in out.stderr
    assert list(tmp_path.iterdir()) == [workspace]
    named = subprocess.run([sys.executable, "-m", "server", "manifests", "--out", "m"], cwd=tmp_path,
                           env=server_env(workspace), capture_output=True, text=True, timeout=120)
    assert named.returncode == 0, named.stderr
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(p.name for p in (REPO / "tool_manifests")
                                                                        .iterdir())


def test_a_reader_that_stops_reading_ends_the_command_without_a_traceback(workspace: Path) -> None:
    store = open_store(workspace)
    log = AuditLog(store)
    for i in range(3000):  # far more than a pipe buffer holds, so writes go on after `head` has gone
        log.write(AuditRecord(ts=1.0 + i, transport="stdio", caller="stdio", level="trusted", tool=f"tool{i}",
                              args_sha256="0" * 64, decision="allowed", reason=None, outcome="ok", duration_ms=1.0))
    store.close()
    out = subprocess.run(f"{shlex.quote(sys.executable)} -m server audit --json --limit 3000 | head -1; "
                         "echo status=${PIPESTATUS[0]} >&2",
                         shell=True, executable="/bin/bash", cwd=REPO, env=server_env(workspace),
                         capture_output=True, text=True, timeout=120)
    assert len(out.stdout.splitlines()) == 1 and json.loads(out.stdout)["tool"].startswith("tool")
    assert "Traceback" not in out.stderr and "BrokenPipeError" not in out.stderr, out.stderr
    assert out.stderr.strip() == "status=141"


def test_server_commands_do_not_load_the_engine_commands(workspace: Path) -> None:
    # `serve` starts with every MCP client: the engine's command modules (and through them the
    # insights and interop packages) are not its cost.
    code = (
        "import json, sys\n"
        "from server.cli import main\n"
        "code = main(['--workspace', sys.argv[1], 'token', 'list'])\n"
        "print(json.dumps([code, sorted(m for m in sys.modules if m.startswith('engine.'))]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(workspace)], cwd=REPO, env=server_env(workspace),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    code, loaded = json.loads(out.stdout.splitlines()[-1])
    assert code == 0
    assert not [m for m in loaded if m.startswith(("engine.insights", "engine.interop"))], loaded
