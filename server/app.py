"""Composition root: policy, settings, store and engine objects → one gated MCP server.

Nothing heavy is imported here: the pipeline manager (and through it docker, paramiko,
kubernetes) is built on the first call that needs it, so the server answers `initialize`
nearly as fast as a bare MCPServer does. What a start does do, before the first call is
answered, is `AppState.recover`: runs and deployments a killed server left `running` /
`in_progress` are closed and their orphaned jobs killed, so no tool or resource reports a
dead process's work as live.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from engine.errors import SpecError, SpecIssue
from engine.settings import Settings, get_settings
from engine.store import Store, open_store
from server.audit import AuditLog
from server.gate import CicdServer
from server.prompts import register_prompts
from server.resources import register_resources
from server.state import AppState
from server.tokens import TokenStore
from server.tools import compat, deploy, health, insights, rollback, runs, service, validate
from server.tools._registry import ToolSpec, available, build_tool
from server.trust import Level, ToolFacts, TrustPolicy, required_level

__all__ = ["all_specs", "build_server"]

INSTRUCTIONS = """\
cicd-mcp runs CI/CD pipelines and deployments on this machine, for real. Start a run with run_pipeline
(wait=false returns at once; then wait_for_run, which blocks up to 45 s per call); find runs with
list_runs; read logs with get_job_logs. Before a deploy or rollback, environment_status says what is
live. Every result stays within max_chars (default 8000 characters): a cut says what was cut and the
call that gets the rest. Whole runs and logs are resources (cicd://runs/{run_id}, read logs in windows:
cicd://runs/{run_id}/logs/{job}?offset=&limit=). Calls on protected environments ask the user to confirm."""


def all_specs() -> list[ToolSpec]:
    """Every tool the server knows, whether or not its engine is installed."""
    return [*runs.SPECS, *validate.SPECS, *health.SPECS, *insights.SPECS, *deploy.SPECS, *service.SPECS,
            *rollback.SPECS, *compat.SPECS]


_MANIFESTS = Path(__file__).resolve().parent.parent / "tool_manifests"


def _prebuilt(spec: ToolSpec) -> dict[str, Any] | None:
    """The tool's schemas from tool_manifests/ (generated from the models, kept current by a test),
    which spares the JSON-schema generation that is most of a start's own cost; None when there is no
    manifest or its fields are not the model's (then the schemas are generated)."""
    try:
        doc = json.loads((_MANIFESTS / f"{spec.name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    fields = {f.alias or name for name, f in spec.input_model.model_fields.items()}
    if not isinstance(doc, dict) or set(doc.get("inputSchema", {}).get("properties", {})) != fields:
        return None
    return {"inputSchema": doc["inputSchema"], "outputSchema": doc["outputSchema"]}


def _check_tool_names(policy: TrustPolicy, known: set[str]) -> None:
    """A misspelt tool name in the policy would leave the real tool at its default level.

    Raises:
        SpecError: the policy names a tool the server does not know.
    """
    unknown = sorted(set(policy.tools) - known)
    if unknown:
        raise SpecError([
            SpecIssue(f"no tool named {name!r}; known tools: {', '.join(sorted(known))}", file=policy.source,
                      field=f"tools.{name}")
            for name in unknown
        ])


class _Server(CicdServer):
    """The gated server whose `resources/list` also names the recent runs and live deployments."""

    async def _handle_list_resources(self, ctx: Any, params: Any) -> Any:
        from mcp.server.mcpserver import Context
        from mcp_types import ListResourcesResult

        from server.resources import listed_resources

        result = await super()._handle_list_resources(ctx, params)
        extra = await listed_resources(self, Context(request_context=ctx, mcp_server=self))
        return ListResourcesResult(resources=[*result.resources, *extra])


@asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[AppState]:
    state: AppState = app.state
    state.recover()
    if state.background is not None:
        # HTTP: the process-wide task group set up by server.serve outlives each session.
        yield state
        return
    # Runs started with wait=false outlive their tools/call: they run here, and are
    # cancelled (for real, process groups killed) when the server stops.
    async with anyio.create_task_group() as tg:
        state.background = tg
        try:
            yield state
        finally:
            state.background = None
            tg.cancel_scope.cancel()


def build_server(
    policy: TrustPolicy,
    *,
    settings: Settings | None = None,
    store: Store | None = None,
    transport: str = "stdio",
    trust_level: Level | None = None,
    environ: dict[str, str] | None = None,
) -> CicdServer:
    """The MCP server with every tool whose engine exists, gated by `policy`.

    Raises:
        SpecError: the policy names a tool the server does not know, or a policy token's environment
            variable is not set.
    """
    known = all_specs()
    _check_tool_names(policy, {spec.name for spec in known})
    specs = [spec for spec in known if available(spec)]
    settings = settings or get_settings()
    store = store or open_store(settings.workspace)
    state = AppState(
        settings=settings,
        store=store,
        policy=policy,
        policy_tokens=policy.env_token_hashes(environ),
        transport=transport,
        stdio_level=trust_level if trust_level is not None else policy.stdio.level,
        tokens=TokenStore(store),
        audit=AuditLog(store, settings.workspace / "audit.jsonl"),
    )
    tools = [
        build_tool(spec, required_level(policy, ToolFacts(spec.name, spec.default_level, spec.read_only,
                                                          spec.destructive)), prebuilt=_prebuilt(spec))
        for spec in specs
    ]
    from server.tools._tasks import TasksExtension

    tasks = TasksExtension()
    server = _Server(
        state,
        {spec.name: spec for spec in specs},
        tools,
        name="cicd-mcp",
        title="CI/CD automation",
        instructions=INSTRUCTIONS,
        version="0.1.0",
        lifespan=_lifespan,
        log_level="WARNING",
        extensions=[tasks],
    )
    tasks.server = server
    register_resources(server)
    register_prompts(server)
    return server
