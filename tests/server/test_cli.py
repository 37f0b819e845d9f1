"""`cicd-mcp`: the engine's commands and the server's in one parser, the SDK loaded only when needed."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from server.cli import add_commands, build_parser
from tests.server.conftest import REPO
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


def test_no_command_serves_on_stdio(workspace: Path, tmp_path: Path) -> None:
    # An unreadable policy stops `serve` before any transport: proof that serve was chosen.
    out = subprocess.run([sys.executable, "-m", "server", "--policy", str(tmp_path / "none.yaml")], cwd=REPO,
                         env=server_env(workspace), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "cannot read the trust policy" in out.stderr


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
