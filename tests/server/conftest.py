"""Fixtures for the MCP server tests: a workspace, a policy, a server, real pipeline files."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.settings import Settings, get_settings
from server.app import build_server
from server.gate import CicdServer
from server.trust import Level, TrustPolicy, parse_policy

REPO = Path(__file__).resolve().parents[2]

OK_PIPELINE = """\
name: ok-pipe
stages:
  - name: build
    jobs:
      - name: compile
        commands:
          - echo compiling
          - echo "built with $GREETING"
  - name: test
    jobs:
      - name: unit
        commands:
          - for i in 1 2 3 4 5; do echo "test line $i"; done
"""

FAIL_PIPELINE = """\
name: fail-pipe
stages:
  - name: test
    jobs:
      - name: broken
        commands:
          - for i in $(seq 1 50); do echo "noise $i"; done
          - 'echo "AssertionError: expected 2, got 3"'
          - exit 3
      - name: fine
        commands:
          - echo ok
"""

# The job's process is real and long-lived so that cancellation has something to kill.
SLOW_PIPELINE = """\
name: slow-pipe
stages:
  - name: wait
    jobs:
      - name: first
        commands:
          - echo started
      - name: long
        commands:
          - echo "long job running"
          - sleep 300
"""


def policy_yaml(**overrides: Any) -> str:
    base = {
        "stdio": "{level: trusted}",
        "read_only": "false",
        "confirm": "{environments: [production]}",
        "http": "{anonymous_level: untrusted, tokens: []}",
    }
    base.update(overrides)
    return "version: 1\n" + "".join(f"{k}: {v}\n" for k, v in base.items())


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def settings(workspace: Path) -> Settings:
    return get_settings(PIPELINE_WORKSPACE=workspace)


@pytest.fixture
def pipelines(tmp_path: Path) -> dict[str, Path]:
    # Not beside the workspace: a pipeline's source dir is the directory of its file.
    folder = tmp_path / "pipelines"
    folder.mkdir()
    out = {}
    for name, text in (("ok", OK_PIPELINE), ("fail", FAIL_PIPELINE), ("slow", SLOW_PIPELINE)):
        path = folder / f"{name}.yaml"
        path.write_text(textwrap.dedent(text))
        out[name] = path
    return out


MakeServer = Callable[..., CicdServer]


@pytest.fixture
def make_server(settings: Settings) -> MakeServer:
    made: list[CicdServer] = []

    def make(
        policy: TrustPolicy | str | None = None, *, transport: str = "memory", trust_level: Level | None = None,
        environ: dict[str, str] | None = None,
    ) -> CicdServer:
        if policy is None:
            policy = policy_yaml()
        if isinstance(policy, str):
            policy = parse_policy(policy, "test-policy.yaml")
        server = build_server(policy, settings=settings, transport=transport, trust_level=trust_level,
                              environ=environ)
        made.append(server)
        return server

    yield make  # type: ignore[misc]
    for s in made:
        _stop_leftover_runs(s)
        s.state.store.close()


def _stop_leftover_runs(server: CicdServer) -> None:
    """Runs go on in runner processes of their own, after the test too: stop what a test left."""
    import time

    from engine.store import runs

    left = [row["run_id"] for row in runs.unfinished_runs(server.state.store)]
    for run_id in left:
        server.state.manager.cancel_run(run_id, "the test ended")
    deadline = time.monotonic() + 15
    while left and time.monotonic() < deadline:
        left = [r for r in left if (row := runs.get_run(server.state.store, r)) is not None
                and row["status"] in ("queued", "running")]
        time.sleep(0.05)


def audit_rows(server: CicdServer) -> list[Any]:
    return server.state.audit.recent(1000)
