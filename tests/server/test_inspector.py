"""The MCP Inspector CLI (a client we did not write) against the stdio server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from engine.store import open_store
from tests.server.conftest import REPO
from tests.server.test_serve import server_env

INSPECTOR = "@modelcontextprotocol/inspector@0.15.0"


def inspector(workspace: Path, policy: Path, *method: str) -> dict[str, object]:
    npx = shutil.which("npx")
    if npx is None:
        if os.environ.get("CI"):
            pytest.fail("npx is required in CI (the Inspector test may not be skipped there)")
        pytest.skip("npx is not installed")
    env = server_env(workspace)
    cmd = [npx, "-y", INSPECTOR, "--cli",
           "-e", f"PIPELINE_WORKSPACE={workspace}", "-e", f"PYTHONPATH={REPO}",
           "python3", "-m", "server", "serve", "--policy", str(policy), *method]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    # npm may print warnings first; the Inspector's JSON is the rest.
    return json.loads(out.stdout[out.stdout.index("{"):])  # type: ignore[no-any-return]


def test_inspector_lists_tools_and_calls_pipeline_health(workspace: Path) -> None:
    store = open_store(workspace)
    now = time.time()
    for i, status in enumerate(["failed", "succeeded", "succeeded", "succeeded"]):
        store.execute("INSERT INTO runs (run_id, pipeline, status, created_at, finished_at, duration) "
                      "VALUES (?,?,?,?,?,?)", (f"r{i}", "web", status, now - i, now - i + 1, 1.0))
    store.close()
    policy = REPO / "trust_policy.yaml"

    listed = inspector(workspace, policy, "--method", "tools/list")
    tools = {t["name"]: t for t in listed["tools"]}  # type: ignore[attr-defined]
    assert {"run_pipeline", "pipeline_health", "get_run", "get_job_logs", "cancel_run"} <= set(tools)
    assert tools["pipeline_health"]["annotations"]["readOnlyHint"] is True
    assert "outputSchema" in tools["run_pipeline"] and "inputSchema" in tools["run_pipeline"]

    called = inspector(workspace, policy, "--method", "tools/call", "--tool-name", "pipeline_health",
                       "--tool-arg", "pipeline_name=web")
    assert called["isError"] is False
    (health,) = called["structuredContent"]["pipelines"]  # type: ignore[index]
    assert health["pipeline"] == "web" and health["status"] == "degraded"
    assert health["runs"] == 4 and health["success_rate"] == 0.75 and health["last_status"] == "failed"
