"""Resources: whole runs and whole logs, for what tool results only summarise; the pipeline and
deployment config languages as JSON Schemas.

Reading one passes the same trust gate as the tool that shows the same data (get_run,
get_job_logs), and is audited. `resources/list` names the recent runs and the live deployments
(bounded), for the callers who may read them, beside the two schemas.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp_types import Resource

from engine.errors import NotFoundError
from server.gate import CicdServer, state_of
from server.state import AppState
from server.tools._present import present_run

__all__ = ["LISTED_RUNS", "LOG_CAP_BYTES", "LOG_WINDOW_BYTES", "listed_resources", "register_resources"]

LOG_CAP_BYTES = 8 * 1024 * 1024        # kept for callers of the old name
LOG_WINDOW_BYTES = 256 * 1024          # one read of a log resource
LOG_LINE_CHARS = 8000
LISTED_RUNS = 20                       # resources/list names the newest runs, not the history
LISTED_DEPLOYMENTS = 20


async def _gate(ctx: Context, tool: str, arguments: dict[str, Any]) -> None:
    server = ctx.mcp_server
    assert isinstance(server, CicdServer)
    try:
        await server.gate_only(tool, arguments, ctx)
    except ToolError as exc:
        raise ResourceError(str(exc)) from exc


def _read_log(state: AppState, run_id: str, job: str, offset: int | None, limit: int | None) -> str:
    """A window of a job's log: `limit` lines from line `offset`, or the last lines without an
    offset; never more than LOG_WINDOW_BYTES, and the header says where the next window is."""
    manager = state.manager
    run = manager.get_run(run_id)
    if job not in run.jobs:
        raise ResourceNotFoundError(f"run {run_id} has no job {job!r}; jobs: {', '.join(run.jobs)}")
    count = max(1, min(limit or 500, 5000))
    base = f"cicd://runs/{run_id}/logs/{quote(job, safe='')}"
    if offset is None:
        piece = manager.read_log(run_id, job, tail=count, max_lines=count, max_bytes=LOG_WINDOW_BYTES,
                                 line_chars=LOG_LINE_CHARS)
        where = f"{piece.note}; from the start: {base}?offset=0&limit={count}"
    else:
        piece = manager.read_log(run_id, job, head=count, offset=offset, max_lines=count,
                                 max_bytes=LOG_WINDOW_BYTES, line_chars=LOG_LINE_CHARS)
        where = piece.note + (f"; next window: {base}?offset={piece.next_offset}&limit={count}"
                              if piece.next_offset is not None else "")
    return f"# {where}\n{piece.text}\n"


def _when(ts: float | None) -> str:
    from server.tools._present import iso

    return iso(ts) or "?"


def _recent_runs(state: AppState) -> list[Resource]:
    return [
        Resource(uri=f"cicd://runs/{run.run_id}", name=f"run {run.run_id}", mime_type="application/json",
                 description=f"{run.pipeline}: {run.status}, created {_when(run.created_at)}")
        for run in state.manager.list_runs(limit=LISTED_RUNS)
    ]


def _live_deployments(state: AppState) -> list[Resource]:
    from engine.deploy.history import DeploymentHistory

    history = DeploymentHistory(state.store)
    out: list[Resource] = []
    seen: set[tuple[str, str]] = set()
    for rec in history.recent(None, limit=200):
        key = (rec.environment, rec.service)
        if key in seen:
            continue
        seen.add(key)
        live = history.live_release(*key)
        if live is None:
            continue
        out.append(Resource(uri=f"cicd://deployments/{live.deployment_id}", name=f"deployment {live.deployment_id}",
                            mime_type="application/json",
                            description=f"live: {live.service} {live.version} in {live.environment} since "
                            f"{_when(live.verified_at)}"))
        if len(out) >= LISTED_DEPLOYMENTS:
            break
    return out


async def listed_resources(server: CicdServer, ctx: Context) -> list[Resource]:
    """The recent runs and live deployments the caller may read (as the gate would let it)."""
    allowed = set(server.callable_tools(server.caller(ctx)))
    state = state_of(ctx)
    out: list[Resource] = []
    if "get_run" in allowed:
        out += await anyio.to_thread.run_sync(_recent_runs, state)
        if "deploy" in server.specs:
            out += await anyio.to_thread.run_sync(_live_deployments, state)
    return out


def _schema(kind: str) -> str:
    if kind == "pipeline":
        from engine.spec.model import PipelineSpec

        schema = PipelineSpec.model_json_schema()
    else:
        from engine.deploy.config import DeploymentConfig

        schema = DeploymentConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=1)


def register_schema_resources(server: CicdServer) -> None:
    @server.resource("cicd://schemas/pipeline.json", name="pipeline_schema", title="Pipeline file schema",
                     mime_type="application/schema+json",
                     description="JSON Schema of a pipeline YAML file (what run_pipeline and validate_pipeline read).")
    def pipeline_schema() -> str:
        return _schema("pipeline")

    if "deploy" in server.specs:
        @server.resource("cicd://schemas/deployment.json", name="deployment_schema",
                         title="Deployment config schema", mime_type="application/schema+json",
                         description="JSON Schema of a deployment config YAML (environments, targets, health checks).")
        def deployment_schema() -> str:
            return _schema("deployment")


def register_resources(server: CicdServer) -> None:
    register_schema_resources(server)
    if "deploy" in server.specs:
        register_deployment_resource(server)
    if "analyze_performance" in server.specs:
        register_report_resource(server)
    if "get_run" not in server.specs:
        return   # no pipeline engine

    @server.resource("cicd://runs/{run_id}", name="run", title="A pipeline run", mime_type="application/json",
                     description="A run with every job and the failed jobs' log tails (JSON, as get_run returns).")
    async def run_resource(run_id: str, ctx: Context) -> str:
        await _gate(ctx, "get_run", {"run_id": run_id})
        state = state_of(ctx)
        try:
            run = await anyio.to_thread.run_sync(state.manager.get_run, run_id)
        except NotFoundError as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        out = await anyio.to_thread.run_sync(lambda: present_run(run, state.manager, cap=False))
        from server.tools._budget import rounded

        return json.dumps(rounded(out.model_dump(mode="json")), indent=2)

    @server.resource("cicd://runs/{run_id}/logs/{job}{?offset,limit}", name="job_log", title="A job's log",
                     mime_type="text/plain",
                     description="A job's log read in windows (secrets masked): `limit` lines (default 500) from "
                     "line `offset`, or the last lines without one; the first line says where the next window is. "
                     "The job name is URL-encoded.")
    async def log_resource(run_id: str, job: str, ctx: Context, offset: str | None = None,
                           limit: str | None = None) -> str:
        job = unquote(job)
        await _gate(ctx, "get_job_logs", {"run_id": run_id, "job": job})
        state = state_of(ctx)
        try:
            start = int(offset) if offset not in (None, "") else None
            count = int(limit) if limit not in (None, "") else None
        except ValueError:
            raise ResourceError(f"offset and limit are line numbers, got offset={offset!r} limit={limit!r}") from None
        try:
            return await anyio.to_thread.run_sync(_read_log, state, run_id, job, start, count)
        except NotFoundError as exc:
            raise ResourceNotFoundError(str(exc)) from exc


def register_report_resource(server: CicdServer) -> None:
    @server.resource("cicd://reports/{pipeline}", name="report", title="A pipeline's visual report",
                     mime_type="text/html",
                     description="HTML report of a pipeline: Gantt chart of its newest run, duration trend, "
                     "health and job table, computed from stored runs.")
    async def report_resource(pipeline: str, ctx: Context) -> str:
        await _gate(ctx, "analyze_performance", {"pipeline_name": pipeline})
        state = state_of(ctx)
        return await anyio.to_thread.run_sync(_report, state, pipeline)


def _report(state: AppState, pipeline: str) -> str:
    from engine.insights import render_report

    try:
        return render_report(state.store, pipeline)
    except NotFoundError as exc:
        raise ResourceNotFoundError(str(exc)) from exc


def register_deployment_resource(server: CicdServer) -> None:
    @server.resource("cicd://deployments/{deployment_id}", name="deployment", title="A deployment",
                     mime_type="application/json",
                     description="A deployment's record: status, versions, instances, steps and events (JSON).")
    async def deployment_resource(deployment_id: str, ctx: Context) -> str:
        await _gate(ctx, "get_run", {"deployment_id": deployment_id})
        state = state_of(ctx)
        return await anyio.to_thread.run_sync(_deployment_json, state, deployment_id)


def _deployment_json(state: AppState, deployment_id: str) -> str:
    import dataclasses

    from engine.deploy.history import DeploymentHistory

    history = DeploymentHistory(state.store)
    try:
        rec = history.get(deployment_id)
    except NotFoundError as exc:
        raise ResourceNotFoundError(str(exc)) from exc
    doc = dataclasses.asdict(rec)
    doc["status"] = str(rec.status)
    doc["steps"] = history.steps(deployment_id)
    doc["events"] = history.events(deployment_id)
    from server.tools._budget import rounded

    return json.dumps(rounded(json.loads(json.dumps(doc, default=str))), indent=2)
