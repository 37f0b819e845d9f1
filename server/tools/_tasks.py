"""MCP Tasks (the `io.modelcontextprotocol/tasks` extension) for run_pipeline, deploy and execute_rollback.

Theory of operation
-------------------
A client that declares the extension (or sends the 2025-11-25 `task` field of `tools/call`) gets,
for those three tools, a task at once instead of the tool's result: `{"resultType": "task",
"task": {...}}`. It then asks `tasks/get` (the state), `tasks/result` (waits for the end and
returns the tool's result, as the tool would have), `tasks/cancel` and `tasks/list`.

A task is a pointer to the engine's own record of the work, stored as a small JSON file under
`$PIPELINE_WORKSPACE/tasks/`, so a task id survives a server restart:
* run_pipeline -> the run id. The call is made with wait=false (gate and confirmation as usual):
  the run goes on in its own runner process, and its state is read from the store.
* deploy -> the deployment's name; execute_rollback -> the plan or deployment it executes. These
  run in the server's background task group through the same gated `tools/call` path; their
  result is written to the task file when they end. A server that stops while one runs leaves
  the task `failed` with what the store says (the deployment is closed by start-up recovery).
A call the gate would not simply allow (a refusal, or a human confirmation to ask) is answered as
an ordinary call: the question can only be asked within the request.

Tasks belong to the caller that created them (its trust principal); another caller is told the
task does not exist.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    CancelTaskRequestParams,
    GetTaskPayloadRequestParams,
    GetTaskRequestParams,
    PaginatedRequestParams,
    Result,
    Task,
    TextContent,
)

from server.trust import Allow

if TYPE_CHECKING:
    from server.gate import CicdServer

__all__ = ["TASKS", "TASK_TOOLS", "TaskResult", "TasksExtension", "TaskStore"]

TASKS = "io.modelcontextprotocol/tasks"
TASK_TOOLS = ("run_pipeline", "deploy", "execute_rollback")
POLL_MS = 1000
TTL_MS = 7 * 24 * 3600 * 1000   # how long a task record is promised to answer (never null: clients drop nulls)
_LISTED = 100
_TERMINAL = ("completed", "failed", "cancelled")


class TaskResult(Result):
    """What a task-augmented `tools/call` answers: the task, not yet the tool's result."""

    result_type: Literal["task"] = "task"
    task: Task


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class TaskStore:
    """Task records, one JSON file each (written whole, then renamed: a reader never sees half)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, task_id: str) -> Path:
        if not task_id.replace("-", "").isalnum():
            raise KeyError(task_id)
        return self.root / f"{task_id}.json"

    def save(self, record: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        record["updated_at"] = time.time()
        path = self._path(record["task_id"])
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        tmp.replace(path)

    def load(self, task_id: str) -> dict[str, Any]:
        """Raises: KeyError: no such task."""
        try:
            return dict(json.loads(self._path(task_id).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            raise KeyError(task_id) from None

    def newest(self, limit: int) -> list[dict[str, Any]]:
        paths = sorted(self.root.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[:limit]
        out = []
        for path in paths:
            try:
                out.append(dict(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError):
                continue
        return out


class _Detached(Context):
    """The context of a call that goes on after its request was answered: no one hears its progress."""

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        return None


def _not_found(task_id: str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=f"no task {task_id!r} (tasks/list shows yours)")


class TasksExtension(Extension):
    """Serves tasks/get, tasks/result, tasks/cancel, tasks/list and turns the three long tools'
    calls into tasks for clients that ask for them. `server` is set once the server is built."""

    identifier = TASKS

    def __init__(self) -> None:
        self.server: CicdServer | None = None
        self._scopes: dict[str, anyio.CancelScope] = {}

    # -- plumbing -------------------------------------------------------------------------------
    def _srv(self) -> CicdServer:
        assert self.server is not None, "TasksExtension.server is set by server.app.build_server"
        return self.server

    def _store(self) -> TaskStore:
        return TaskStore(self._srv().state.settings.workspace / "tasks")

    def _caller(self, ctx: Any) -> str:
        srv = self._srv()
        return srv.caller(Context(request_context=ctx, mcp_server=srv)).name

    async def _call(self, ctx: Any, name: str, arguments: dict[str, Any]) -> Any:
        """A gated `tools/call` within this request, answered as the server answers one (errors in the result)."""
        return await self._srv()._handle_call_tool(ctx, CallToolRequestParams(name=name, arguments=arguments))

    def _mine(self, ctx: Any, task_id: str) -> dict[str, Any]:
        try:
            record = self._store().load(task_id)
        except KeyError:
            raise _not_found(task_id) from None
        if record.get("caller") != self._caller(ctx):
            raise _not_found(task_id)
        return record

    def settings(self) -> dict[str, Any]:
        return {"tools": list(TASK_TOOLS)}

    def methods(self) -> list[MethodBinding]:
        return [
            MethodBinding("tasks/get", GetTaskRequestParams, self._get),
            MethodBinding("tasks/result", GetTaskPayloadRequestParams, self._result),
            MethodBinding("tasks/cancel", CancelTaskRequestParams, self._cancel),
            MethodBinding("tasks/list", PaginatedRequestParams, self._list),
        ]

    @staticmethod
    def wanted(params: CallToolRequestParams, ctx: Any) -> bool:
        if params.name not in TASK_TOOLS:
            return False
        if params.task is not None:
            return True
        capabilities = ctx.session.client_capabilities
        return bool(capabilities and capabilities.extensions and TASKS in capabilities.extensions)

    # -- tools/call ---------------------------------------------------------------------------------
    async def intercept_tool_call(self, params: CallToolRequestParams, ctx: Any, call_next: Any) -> Any:
        if not self.wanted(params, ctx):
            return await call_next(ctx)
        srv = self._srv()
        context = Context(request_context=ctx, mcp_server=srv)
        arguments = dict(params.arguments or {})
        caller = srv.caller(context)
        record: dict[str, Any] = {
            "task_id": f"t-{secrets.token_hex(8)}", "tool": params.name, "caller": caller.name,
            "created_at": time.time(), "status": "working", "ttl": (params.task.ttl if params.task else None) or TTL_MS,
        }
        if params.name == "run_pipeline":
            # The run is already independent of the call: start it with wait=false and point at it.
            result = await self._call(ctx, params.name, {**arguments, "wait": False})
            run_id = (result.structured_content or {}).get("run_id") if isinstance(result, CallToolResult) else None
            if not isinstance(result, CallToolResult) or result.is_error or not run_id:
                return result   # refused or invalid: answered as an ordinary call
            record |= {"kind": "run", "ref": run_id}
            self._store().save(record)
            return TaskResult(task=self._task(record))
        if not isinstance(srv.decision(caller, params.name, arguments), Allow):
            return await call_next(ctx)   # a refusal, or a question only this request can ask
        background = srv.state.background
        if background is None:
            return await call_next(ctx)
        record |= {"kind": "deployment" if params.name == "deploy" else "rollback",
                   "ref": arguments.get("name") or arguments.get("plan_id") or arguments.get("deployment_id")}
        self._store().save(record)
        scope = anyio.CancelScope()
        self._scopes[record["task_id"]] = scope
        background.start_soon(self._work, scope, record, params.name, arguments, _Detached(request_context=ctx,
                                                                                           mcp_server=srv))
        return TaskResult(task=self._task(record))

    async def _work(self, scope: anyio.CancelScope, record: dict[str, Any], name: str, arguments: dict[str, Any],
                    context: Context) -> None:
        store = self._store()
        from mcp.server.mcpserver.exceptions import ToolError

        try:
            with scope:
                try:
                    result = await self._srv().call_tool(name, arguments, context)
                except ToolError as exc:
                    result = CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
            if scope.cancelled_caught:
                record |= {"status": "cancelled", "message": "cancelled by tasks/cancel"}
            elif isinstance(result, CallToolResult):
                data = result.structured_content or {}
                record |= {"status": "failed" if result.is_error else "completed",
                           "result": result.model_dump(mode="json", by_alias=True, exclude_none=True),
                           "message": str(data.get("summary") or "")[:300] or None}
                record["ref"] = data.get("deployment_id") or data.get("execution_id") or record.get("ref")
        except Exception as exc:  # noqa: BLE001 - the task must end, and say why
            record |= {"status": "failed", "message": f"{type(exc).__name__}: {exc}"[:300]}
        finally:
            self._scopes.pop(record["task_id"], None)
            with anyio.CancelScope(shield=True):
                store.save(record)

    # -- state ------------------------------------------------------------------------------------
    def _refresh(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with its state read from the world (the run, or what a restart left)."""
        if record["status"] in _TERMINAL:
            return record
        if record.get("kind") == "run":
            from engine.errors import NotFoundError

            try:
                run = self._srv().state.manager.get_run(record["ref"])
            except NotFoundError:
                return record | {"status": "failed", "message": f"run {record['ref']} is gone from the store"}
            status = str(run.status)
            mapped = {"succeeded": "completed", "cancelled": "cancelled", "failed": "failed",
                      "interrupted": "failed"}.get(status, "working")
            return record | {"status": mapped, "message": f"run {run.run_id} {status}"}
        if record["task_id"] not in self._scopes:
            # Started by a server process that is gone: what it did is in the store, not in a result.
            return record | {"status": "failed",
                             "message": f"the server stopped while {record['tool']} ran; see environment_status "
                                        "and the deployment's history for what it left"}
        return record

    def _task(self, record: dict[str, Any]) -> Task:
        return Task(task_id=record["task_id"], status=record["status"], status_message=record.get("message"),
                    created_at=_iso(record["created_at"]), last_updated_at=_iso(record.get("updated_at") or
                                                                              record["created_at"]),
                    ttl=record.get("ttl") or TTL_MS, poll_interval=POLL_MS)

    async def _get(self, ctx: Any, params: GetTaskRequestParams) -> Any:
        from mcp_types import GetTaskResult

        record = await anyio.to_thread.run_sync(self._refresh, self._mine(ctx, params.task_id))
        return GetTaskResult(**self._task(record).model_dump())

    async def _result(self, ctx: Any, params: GetTaskPayloadRequestParams) -> Any:
        record = self._mine(ctx, params.task_id)
        while True:
            record = await anyio.to_thread.run_sync(self._refresh, self._mine(ctx, params.task_id))
            if record["status"] in _TERMINAL:
                break
            await anyio.sleep(POLL_MS / 1000)
        if record.get("kind") == "run":
            return await self._call(ctx, "get_run", {"run_id": record["ref"]})
        if "result" in record:
            return CallToolResult.model_validate(record["result"])
        return CallToolResult(content=[TextContent(type="text", text=record.get("message") or record["status"])],
                              is_error=True)

    async def _cancel(self, ctx: Any, params: CancelTaskRequestParams) -> Any:
        from mcp_types import CancelTaskResult

        record = self._mine(ctx, params.task_id)
        if record.get("kind") == "run" and record["status"] not in _TERMINAL:
            await self._call(ctx, "cancel_run", {"run_id": record["ref"]})
        elif (scope := self._scopes.get(record["task_id"])) is not None:
            scope.cancel()
        record = await anyio.to_thread.run_sync(self._refresh, self._mine(ctx, params.task_id))
        return CancelTaskResult(**self._task(record).model_dump())

    async def _list(self, ctx: Any, params: PaginatedRequestParams | None) -> Any:
        from mcp_types import ListTasksResult

        caller = self._caller(ctx)
        records = [r for r in self._store().newest(_LISTED * 4) if r.get("caller") == caller][:_LISTED]
        refreshed = [await anyio.to_thread.run_sync(self._refresh, r) for r in records]
        return ListTasksResult(tasks=[self._task(r) for r in refreshed])
