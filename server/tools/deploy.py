"""deploy: a thin call into engine.deploy's orchestrator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations

from server.gate import Confirmed, state_of
from server.models import DeployInput, DeployOutput, InstanceOut
from server.tools._errors import tool_errors
from server.tools._paths import confined_artifacts, confined_config_path
from server.tools._registry import ToolSpec
from server.tools.runs import clip
from server.trust import Level

if TYPE_CHECKING:
    from engine.deploy.orchestrator import DeploymentResult
    from engine.events import Event
    from server.app import AppState

__all__ = ["SPECS", "deployment_environment", "present_deployment"]

LOG_LINES = 30


def deployment_uri(deployment_id: str) -> str:
    return f"cicd://deployments/{deployment_id}"


def present_deployment(result: DeploymentResult) -> DeployOutput:
    logs = [clip(line, 500) or "" for line in result.logs]
    tail = logs[-LOG_LINES:]
    cut = len(logs) - len(tail)
    note = (f"last {len(tail)} of {len(logs)} log lines; the whole record is the resource"
            if cut else f"whole log ({len(logs)} lines)")
    was = f" (was {result.previous_version})" if result.previous_version else ""
    summary = (f"deployment {result.deployment_id} of {result.service} {result.version}{was} to "
               f"{result.environment} ({result.strategy}): {result.status} in {result.duration:.1f}s")
    if result.reason and str(result.status) != "success":
        summary += f"; {clip(result.reason, 300)}"
    return DeployOutput(
        summary=summary, deployment_id=result.deployment_id, name=result.name, environment=result.environment,
        service=result.service, version=result.version, previous_version=result.previous_version,
        strategy=result.strategy, status=str(result.status), reason=clip(result.reason), duration=result.duration,
        instances=[InstanceOut(slot=i.slot, host=i.host, port=i.port, version=i.version, color=i.color,
                               alive=i.alive) for i in result.instances],
        log_tail=tail, log_note=note, resource_uri=deployment_uri(result.deployment_id),
    )


def deployment_environment(arguments: dict[str, Any], state: AppState) -> str | None:
    """The environment of the deployment a call names (`deployment_id`), for the trust gate."""
    from engine.deploy.history import DeploymentHistory

    ref = arguments.get("deployment_id")
    if not isinstance(ref, str):
        return None
    return DeploymentHistory(state.store).get(ref).environment


def _progress(ctx: Context) -> Any:
    count = 0

    async def on_event(event: Event) -> None:
        nonlocal count
        count += 1
        await ctx.report_progress(count, None, event.message)

    return on_event


async def deploy(args: DeployInput, ctx: Context, confirmed: Confirmed) -> DeployOutput:
    """Deploy a version of a service to an environment for real (local processes, Docker containers, SSH
    hosts or Kubernetes, as the environment says), with a rollout strategy (rolling, blue_green, canary,
    recreate), health checks, and automatic rollback to the previous verified version on failure.
    Reports progress per step; cancelling the call stops the rollout. Environments are defined in a
    deployment config file (`config_path`) or registered earlier."""
    from engine.deploy.orchestrator import DeploymentOrchestrator

    state = state_of(ctx)
    with tool_errors(state):
        # Its hooks run commands: the file is confined to the config roots like a pipeline's.
        config = confined_config_path(args.config_path, state.settings) if args.config_path else None
        orch = DeploymentOrchestrator(config, store=state.store, settings=state.settings)
        try:
            env = orch.get_environment(args.environment)
            service = args.service or env.service_name
            name = args.name or f"{service}-{args.version}"
            kind = env.target.kind if env.target is not None else state.settings.DEPLOY_TARGET
            artifacts = confined_artifacts(list(args.artifacts), kind, state.settings)
            orch.create_deployment(name, args.version, env.name, artifacts, args.strategy,
                                   args.rollback_on_failure, service=service, **args.strategy_options)
            result = await orch.adeploy(name, _progress(ctx))
        finally:
            await orch.aclose()
        return present_deployment(result)


SPECS = [
    ToolSpec(
        name="deploy", fn=deploy, input_model=DeployInput, title="Deploy a service",
        description=deploy.__doc__ or "",
        annotations=ToolAnnotations(title="Deploy a service", read_only_hint=False, destructive_hint=True,
                                    idempotent_hint=False, open_world_hint=True),
        default_level=Level.TRUSTED, requires=("engine.deploy.orchestrator",),
        environment=lambda a, _s: a.get("environment") if isinstance(a.get("environment"), str) else None,
    ),
]
