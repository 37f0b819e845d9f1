"""create_rollback_plan and execute_rollback: thin calls into engine.rollback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations

from server.gate import Confirmed, state_of
from server.models import CreateRollbackPlanInput, ExecuteRollbackInput, RollbackExecutionOutput, RollbackPlanOutput
from server.state import AppState
from server.tools._errors import tool_errors
from server.tools._present import present_execution, present_plan, step_progress
from server.tools._registry import ToolSpec
from server.trust import Level

if TYPE_CHECKING:
    # Types only: the rollback engine loads on the first call that needs it.
    from engine.rollback import RollbackManager

__all__ = ["SPECS", "rollback_environment"]


def _manager(state: AppState) -> RollbackManager:
    from engine.rollback import RollbackManager

    return RollbackManager(store=state.store, settings=state.settings)


def rollback_environment(arguments: dict[str, Any], state: AppState) -> str:
    """The environment a rollback call lands in, resolved as the engine resolves it, for the trust gate.

    Raises:
        NotFoundError: the reference is neither a plan nor a deployment (the gate refuses the call).
    """
    from engine.errors import InputError
    from engine.rollback.targets import rollback_environment as resolve

    ref = arguments.get("plan_id") or arguments.get("deployment_id")
    if not isinstance(ref, str):
        raise InputError("give plan_id or deployment_id")
    return resolve(state.store, ref)


async def create_rollback_plan(args: CreateRollbackPlanInput, ctx: Context) -> RollbackPlanOutput:
    """Plan a deployment's rollback, changing nothing: the version going back (default the last
    healthy one before it), the steps, the time. Warns when the deployment is not what is live."""
    state = state_of(ctx)
    with tool_errors(state):
        manager = _manager(state)
        try:
            plan = await manager.acreate_rollback_plan(args.deployment_id, args.strategy, args.reason,
                                                       args.to_version)
        finally:
            await manager.aclose()
        return present_plan(plan)


async def execute_rollback(args: ExecuteRollbackInput, ctx: Context, confirmed: Confirmed) -> RollbackExecutionOutput:
    """Run a rollback for real: a plan, or a deployment's newest plan. Journaled: an interrupted one
    resumes where it stopped; a finished one answers "already completed"."""
    state = state_of(ctx)
    with tool_errors(state):
        manager = _manager(state)
        ref = args.plan_id or args.deployment_id
        assert ref is not None
        try:
            execution = await manager.execute_rollback(ref, on_event=step_progress(ctx), force=args.force)
        finally:
            await manager.aclose()
        return present_execution(execution)


_ROLLBACK = ("engine.rollback.manager",)

SPECS = [
    ToolSpec(
        name="create_rollback_plan", fn=create_rollback_plan, input_model=CreateRollbackPlanInput,
        title="Plan a rollback", description=create_rollback_plan.__doc__ or "",
        annotations=ToolAnnotations(title="Plan a rollback", read_only_hint=False, destructive_hint=False,
                                    idempotent_hint=False, open_world_hint=False),
        default_level=Level.VERIFIED, requires=_ROLLBACK,
    ),
    ToolSpec(
        name="execute_rollback", fn=execute_rollback, input_model=ExecuteRollbackInput,
        title="Execute a rollback", description=execute_rollback.__doc__ or "",
        annotations=ToolAnnotations(title="Execute a rollback", read_only_hint=False, destructive_hint=True,
                                    idempotent_hint=True, open_world_hint=True),
        default_level=Level.TRUSTED, requires=_ROLLBACK, environment=rollback_environment,
    ),
]
