"""Composition root: policy, settings, store and engine objects → one gated MCP server.

Nothing heavy is imported here: the pipeline manager (and through it docker, paramiko,
kubernetes) is built on the first call that needs it, so the server answers `initialize`
nearly as fast as a bare MCPServer does. What a start does do, before the first call is
answered, is `AppState.recover`: runs and deployments a killed server left `running` /
`in_progress` are closed and their orphaned jobs killed, so no tool or resource reports a
dead process's work as live.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from engine.settings import Settings, get_settings
from engine.store import SQLiteStore, open_store
from server.audit import AuditLog
from server.gate import CicdServer
from server.tokens import TokenStore
from server.trust import Level, PolicyToken, ToolFacts, TrustPolicy, default_policy_path, required_level

if TYPE_CHECKING:
    from engine.pipeline.manager import PipelineManager
    from server.tools._registry import ToolSpec

__all__ = ["AppState", "build_server", "default_policy_path"]

INSTRUCTIONS = """\
cicd-mcp runs CI/CD pipelines for you on this machine: run_pipeline starts a pipeline from a YAML
file or by name and reports per-job results with the failed jobs' log tails; get_run, get_job_logs
and pipeline_health read what happened; cancel_run stops a run. Whole logs are resources
(cicd://runs/{run_id}/logs/{job}). Every call passes a trust gate: a refusal says which trust level
is needed and how to get it. Calls on protected environments ask the user to confirm."""


@dataclass
class AppState:
    """What every tool call needs; built once per server."""

    settings: Settings
    store: SQLiteStore
    policy: TrustPolicy
    policy_tokens: dict[str, PolicyToken]
    transport: str                   # stdio | sse | http | memory
    stdio_level: Level
    tokens: TokenStore
    audit: AuditLog
    specs: dict[str, ToolSpec] = field(default_factory=dict)
    background: TaskGroup | None = None
    _manager: PipelineManager | None = None
    _recovered: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def recover(self) -> None:
        """Once per server, at start-up: mark runs whose runner process is gone `interrupted` (killing
        the job process groups they left) and close deployments whose deploying process is gone
        (failure / rollback_failed). A process that still runs keeps its work: only the dead is closed.
        """
        with self._lock:
            if self._recovered:
                return
            self._recovered = True
        from engine.deploy.history import DeploymentHistory
        from engine.pipeline.manager import recover_interrupted

        recover_interrupted(self.store)
        DeploymentHistory(self.store).recover_interrupted()

    @property
    def manager(self) -> PipelineManager:
        """The pipeline engine, built on first use."""
        with self._lock:
            if self._manager is None:
                from engine.pipeline.manager import PipelineManager

                self._manager = PipelineManager(workspace_dir=self.settings.workspace, settings=self.settings,
                                                store=self.store)
            return self._manager


# Tools whose engine has not landed yet; the policy may already name them.
PLANNED_TOOLS: frozenset[str] = frozenset()


def _check_tool_names(policy: TrustPolicy, known: set[str]) -> None:
    """A misspelt tool name in the policy would leave the real tool at its default level.

    Raises:
        SpecError: the policy names a tool the server does not know.
    """
    from engine.errors import SpecError, SpecIssue

    unknown = sorted(set(policy.tools) - known)
    if unknown:
        raise SpecError([
            SpecIssue(f"no tool named {name!r}; known tools: {', '.join(sorted(known))}", file=policy.source,
                      field=f"tools.{name}")
            for name in unknown
        ])


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
    store: SQLiteStore | None = None,
    transport: str = "stdio",
    trust_level: Level | None = None,
    environ: dict[str, str] | None = None,
) -> CicdServer:
    """The MCP server with every tool whose engine exists, gated by `policy`.

    Raises:
        SpecError: a policy token's environment variable is not set.
    """
    from server.prompts import register_prompts
    from server.resources import register_resources
    from server.tools import all_specs
    from server.tools._registry import available, register

    _check_tool_names(policy, {spec.name for spec in all_specs()} | PLANNED_TOOLS)
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
        audit=AuditLog(store),
    )
    server = CicdServer(
        state,
        name="cicd-mcp",
        title="CI/CD automation",
        instructions=INSTRUCTIONS,
        version="0.1.0",
        lifespan=_lifespan,
        log_level="WARNING",
    )
    for spec in all_specs():
        if not available(spec):
            continue
        level = required_level(policy, ToolFacts(spec.name, spec.default_level, spec.read_only, spec.destructive))
        register(server, spec, level)
        state.specs[spec.name] = spec
    register_resources(server)
    register_prompts(server)
    return server
