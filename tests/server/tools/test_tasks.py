"""MCP Tasks through the official client's extension mechanism: run_pipeline, deploy and
execute_rollback answer a task at once, the client waits with tasks/get and tasks/result, and a
task id still answers after the server is rebuilt on the same workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp_types import (
    CallToolResult,
    GetTaskPayloadRequest,
    GetTaskPayloadRequestParams,
    GetTaskRequest,
    GetTaskRequestParams,
    GetTaskResult,
    ListTasksRequest,
    ListTasksResult,
)

from server.tools._tasks import TASKS, TaskResult
from tests.engine.deploy.helpers import make_release, served_version
from tests.server.conftest import MakeServer, policy_yaml
from tests.server.test_gate import text
from tests.server.tools.conftest import PORTS


async def _get(session: Any, task_id: str) -> GetTaskResult:
    result: GetTaskResult = await session.send_request(
        GetTaskRequest(params=GetTaskRequestParams(task_id=task_id)), GetTaskResult)
    return result


async def _resolve(claimed: TaskResult, ctx: ClaimContext) -> CallToolResult:
    seen = [claimed.task.status]
    while seen[-1] == "working":
        await anyio.sleep(0.1)
        seen.append((await _get(ctx.session, claimed.task.task_id)).status)
    result: CallToolResult = await ctx.session.send_request(
        GetTaskPayloadRequest(params=GetTaskPayloadRequestParams(task_id=claimed.task.task_id)), CallToolResult)
    return result


class Tasks(ClientExtension):
    identifier = TASKS

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=TaskResult, resolve=_resolve)]


@pytest.mark.anyio
async def test_a_run_as_a_task_is_waited_for_and_its_id_outlives_the_server(
        make_server: MakeServer, pipelines: dict[str, Path]) -> None:
    async with mcp.Client(make_server(), extensions=[Tasks()]) as client:
        assert TASKS in (client.server_capabilities.extensions or {})
        raw = await client.session.call_tool("run_pipeline", {"config_path": str(pipelines["ok"])},
                                             allow_claimed=True)
        assert isinstance(raw, TaskResult) and raw.task.status == "working" and raw.task.poll_interval
        done = await client.call_tool("run_pipeline", {"config_path": str(pipelines["fail"])})   # resolved
        first = await _resolve(raw, ClaimContext(session=client.session, tool_name="run_pipeline",
                                                 read_timeout_seconds=None))
    assert first.structured_content and first.structured_content["status"] == "succeeded"
    assert done.structured_content and done.structured_content["status"] == "failed", text(done)
    # A new server on the same workspace (what a restart is) knows the task, as its creator's.
    async with mcp.Client(make_server(), extensions=[Tasks()]) as client:
        again = await _get(client.session, raw.task.task_id)
        listed: ListTasksResult = await client.session.send_request(ListTasksRequest(), ListTasksResult)
        with pytest.raises(mcp.MCPError, match="no task"):
            await _get(client.session, "t-0000000000000000")
    assert again.status == "completed" and first.structured_content["run_id"] in (again.status_message or "")
    assert raw.task.task_id in [t.task_id for t in listed.tasks] and len(listed.tasks) == 2
    statuses = {t.task_id: t.status for t in listed.tasks}
    assert sorted(statuses.values()) == ["completed", "failed"]


@pytest.mark.anyio
async def test_deploy_and_rollback_as_tasks_and_a_client_without_the_extension_gets_plain_results(
        make_server: MakeServer, deploy_config: Path, tmp_path: Path) -> None:
    server = make_server(policy_yaml(confirm="{environments: []}"))
    args = {"environment": "production", "config_path": str(deploy_config)}
    async with mcp.Client(server, extensions=[Tasks()]) as client:
        one = await client.call_tool("deploy", {**args, "version": "1",
                                                "artifacts": [str(make_release(tmp_path / "a", "1"))]})
        raw = await client.session.call_tool("deploy", {**args, "version": "2",
                                                        "artifacts": [str(make_release(tmp_path / "a", "2"))]},
                                             allow_claimed=True)
        assert isinstance(raw, TaskResult)
        two = await _resolve(raw, ClaimContext(session=client.session, tool_name="deploy", read_timeout_seconds=None))
        assert two.structured_content is not None
        back = await client.call_tool("execute_rollback", {"deployment_id": two.structured_content["deployment_id"]})
    assert one.structured_content and one.structured_content["status"] == "success", text(one)
    assert two.structured_content["status"] == "success" and two.structured_content["version"] == "2"
    assert back.structured_content and back.structured_content["status"] == "completed", text(back)
    assert all(served_version(p) == "1" for p in PORTS)
    async with mcp.Client(server) as plain:
        result = await plain.call_tool("list_runs", {})
        assert not result.is_error


@pytest.mark.anyio
async def test_cancelling_a_run_task_cancels_the_run(make_server: MakeServer, pipelines: dict[str, Path]) -> None:
    from mcp_types import CancelTaskRequest, CancelTaskRequestParams, CancelTaskResult

    async with mcp.Client(make_server(), extensions=[Tasks()]) as client:
        raw = await client.session.call_tool("run_pipeline", {"config_path": str(pipelines["slow"])},
                                             allow_claimed=True)
        assert isinstance(raw, TaskResult)
        cancelled: CancelTaskResult = await client.session.send_request(
            CancelTaskRequest(params=CancelTaskRequestParams(task_id=raw.task.task_id)), CancelTaskResult)
        final = await _resolve(raw, ClaimContext(session=client.session, tool_name="run_pipeline",
                                                 read_timeout_seconds=None))
        state = await _get(client.session, raw.task.task_id)
    assert cancelled.task_id == raw.task.task_id
    assert final.structured_content and final.structured_content["status"] == "cancelled"
    assert state.status == "cancelled"
