"""call_module_function answers with the original design's contract: `status` is success or not,
`deployment_id` is what handle_rollback takes (real deployments of the local target)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp
import pytest

from server.tools.compat import original_status
from tests.engine.deploy.helpers import make_release, served_version
from tests.server.conftest import MakeServer
from tests.server.test_gate import elicit_answer, text
from tests.server.tools.conftest import PORTS


async def compat(client: mcp.Client, function: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool("call_module_function", {
        "module": "ci_cd_automation", "function": function, "arguments": arguments})
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


@pytest.mark.parametrize(
    ("ours", "original"),
    [("succeeded", "success"), ("success", "success"), ("completed", "success"), ("ok", "success"),
     ("failed", "failure"), ("failure", "failure"), ("rolled_back", "failure"), ("rollback_failed", "failure"),
     ("cancelled", "failure"), ("interrupted", "failure"), ("unknown_pipeline", "failure"),
     ("running", "running"), ("queued", "running"), (None, "failure")],
)
def test_our_statuses_map_onto_the_original_contract(ours: str | None, original: str) -> None:
    assert original_status(ours) == original


@pytest.mark.anyio
async def test_the_original_agent_loop_deploys_sees_a_failure_and_rolls_back(
    make_server: MakeServer, deploy_config: Path, tmp_path: Path
) -> None:
    server = make_server()
    async with mcp.Client(server, elicitation_callback=elicit_answer("accept")) as client:
        loaded = await compat(client, "manage_deployments", {"config_path": str(deploy_config)})
        assert loaded["status"] == "success" and loaded["deployment_id"] is None
        assert loaded["result"]["environments"] == ["production"]
        good = await compat(client, "manage_deployments", {
            "config_path": str(deploy_config), "version": "1", "environment": "production",
            "artifacts": [str(make_release(tmp_path / "a", "1"))]})
        assert good["status"] == "success" and good["result"]["status"] == "success"
        assert good["deployment_id"] == good["result"]["deployment_id"]
        # Version 2 answers /health with 500: rolled back by the deploy itself, a failure to the original.
        bad = await compat(client, "manage_deployments", {
            "config_path": str(deploy_config), "version": "2", "environment": "production",
            "rollback_on_failure": False, "artifacts": [str(make_release(tmp_path / "a", "2", health_status=500))]})
        assert bad["status"] == "failure" and bad["result"]["status"] == "failure"
        report = await compat(client, "manage_deployments", {"config_path": str(deploy_config)})
        assert report["status"] == "failure" and report["deployment_id"] == bad["deployment_id"]
        # The original's agent code: if result["status"] != "success": handle_rollback(result["deployment_id"], ...)
        rolled = await compat(client, "handle_rollback", {
            "deployment_id": report["deployment_id"], "strategy": "immediate", "reason": "health checks failed"})
        refused = await client.call_tool("call_module_function", {
            "module": "ci_cd_automation", "function": "handle_rollback",
            "arguments": {"deployment_id": bad["deployment_id"], "strategy": "blue_green", "reason": "x"}})
    assert rolled["status"] == "success" and rolled["result"]["status"] == "completed"
    assert rolled["tool"] == "execute_rollback" and rolled["deployment_id"] == bad["deployment_id"]
    assert all(served_version(p) == "1" for p in PORTS)
    # blue_green switches a router back: this environment has none, and the answer says so.
    assert refused.is_error and "router" in text(refused)


@pytest.mark.anyio
async def test_run_pipeline_status_is_the_original_one(make_server: MakeServer, tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text("stages:\n  - name: s\n    jobs: [{name: a, commands: ['true']}]\n")
    (tmp_path / "bad.yaml").write_text("stages:\n  - name: s\n    jobs: [{name: a, commands: ['false']}]\n")
    server = make_server()
    async with mcp.Client(server) as client:
        ok = await compat(client, "run_pipeline", {"config_path": str(tmp_path / "ok.yaml")})
        bad = await compat(client, "run_pipeline", {"config_path": str(tmp_path / "bad.yaml")})
    assert (ok["status"], ok["result"]["status"], ok["result"]["pipeline"]) == ("success", "succeeded", "ok")
    assert (bad["status"], bad["result"]["status"]) == ("failure", "failed")
    assert ok["run_id"] == ok["result"]["run_id"]
