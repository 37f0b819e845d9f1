"""deploy: a thin call into engine.deploy's orchestrator."""

from __future__ import annotations

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations

from server.gate import Confirmed, state_of
from server.models import DeployInput, DeployOutput
from server.tools._errors import tool_errors
from server.tools._paths import confined_artifacts, confined_config_path
from server.tools._present import present_deployment, step_progress
from server.tools._registry import ToolSpec
from server.trust import Level

__all__ = ["SPECS"]

async def deploy(args: DeployInput, ctx: Context, confirmed: Confirmed) -> DeployOutput:
    """Deploy a version of a service to an environment for real (its target: local, Docker, SSH or
    Kubernetes) with a rollout strategy and health checks; rolls back by itself on failure."""
    # Imported per call, not at start-up: the orchestrator pulls in the deploy targets' clients.
    from engine.deploy.orchestrator import DeploymentOrchestrator
    from server.tools.service import find_environment

    state = state_of(ctx)
    with tool_errors(state):
        # Its hooks run commands: the file is confined to the config roots like a pipeline's.
        config = confined_config_path(args.config_path, state.settings) if args.config_path else None
        orch = DeploymentOrchestrator(config, store=state.store, settings=state.settings)
        try:
            env = find_environment(orch, args.environment)
            service = args.service or env.service_name
            name = args.name or f"{service}-{args.version}"
            kind = env.target.kind if env.target is not None else state.settings.DEPLOY_TARGET
            artifacts = confined_artifacts(list(args.artifacts), kind, state.settings)
            orch.create_deployment(name, args.version, env.name, artifacts, args.strategy,
                                   args.rollback_on_failure, service=service, **args.strategy_options)
            result = await orch.adeploy(name, step_progress(ctx))
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
