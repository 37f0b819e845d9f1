"""The composition root: what gets registered, and what a start does not load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mcp
import pytest

from server.app import all_specs
from server.tools._registry import ToolSpec, available
from server.trust import Level
from tests.server.conftest import REPO, MakeServer, policy_yaml
from tests.server.test_serve import server_env


def test_heavy_sdks_are_not_loaded_at_start(workspace: Path) -> None:
    code = (
        "import sys, json\n"
        "from server.app import build_server\n"
        "from server.trust import load_policy\n"
        "build_server(load_policy('trust_policy.yaml'))\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=server_env(workspace),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout))
    assert not loaded & {"docker", "paramiko", "kubernetes"}, loaded & {"docker", "paramiko", "kubernetes"}


def test_a_tool_is_registered_only_when_its_engine_exists() -> None:
    present = ToolSpec(name="x", fn=lambda: None, input_model=object, title="", description="",  # type: ignore[arg-type]
                       annotations=None, default_level=Level.TRUSTED,  # type: ignore[arg-type]
                       requires=("engine.pipeline.manager",))
    absent = ToolSpec(name="y", fn=lambda: None, input_model=object, title="", description="",  # type: ignore[arg-type]
                      annotations=None, default_level=Level.TRUSTED,  # type: ignore[arg-type]
                      requires=("engine.rollback.no_such_module",))
    assert available(present) and not available(absent)
    assert {s.name for s in all_specs()} >= {"run_pipeline", "pipeline_health", "call_module_function"}


@pytest.mark.anyio
async def test_registered_tools_match_available_engines(make_server: MakeServer) -> None:
    server = make_server(policy_yaml(compatibility="true"))
    plain = make_server()
    async with mcp.Client(server) as client, mcp.Client(plain) as plain_client:
        names = {t.name for t in (await client.list_tools()).tools}
        plain_names = {t.name for t in (await plain_client.list_tools()).tools}
    expected = {s.name for s in all_specs() if available(s)}
    assert names == expected
    # The compatibility tool is listed only when the policy offers it.
    assert plain_names == expected - {"call_module_function"}
