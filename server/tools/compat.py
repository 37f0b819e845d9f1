"""call_module_function: the original design's entry point, kept for old clients.

`module="ci_cd_automation"` and a function name map to a first-class tool; the gate decides
for both tools (the compat tool and the one it reaches), so the compat path is never a way
around a tool's level or its confirmation.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import ValidationError

from server.gate import Confirmed, server_of
from server.models import CallModuleFunctionInput, CallModuleFunctionOutput
from server.tools._registry import ToolSpec
from server.trust import Level

__all__ = ["FUNCTIONS", "SPECS"]

FUNCTIONS = {
    "run_pipeline": "run_pipeline",
    "manage_deployments": "deploy",
    "handle_rollback": "execute_rollback",
    "optimize_pipeline_performance": "analyze_performance",
}


def _delegate(arguments: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    target = FUNCTIONS.get(str(arguments.get("function")))
    if target is None:
        return None
    inner = arguments.get("arguments")
    return target, inner if isinstance(inner, dict) else {}


async def call_module_function(
    args: CallModuleFunctionInput, ctx: Context, confirmed: Confirmed
) -> CallModuleFunctionOutput:
    """Compatibility entry point of the original design: module='ci_cd_automation' and function one of
    run_pipeline, manage_deployments, handle_rollback, optimize_pipeline_performance, with `arguments`
    as for the first-class tool it maps to (run_pipeline, deploy, execute_rollback, analyze_performance).
    Prefer the first-class tools; this one is gated at the level of the function it reaches."""
    server = server_of(ctx)
    target = FUNCTIONS[args.function]
    spec = server.specs.get(target)
    if spec is None:
        raise ToolError(
            f"{args.module}.{args.function} maps to the tool {target!r}, which this server does not offer "
            "(its engine is not installed); available tools: " + ", ".join(sorted(server.specs))
        )
    try:
        inner = spec.input_model.model_validate(args.arguments)
    except ValidationError as exc:
        from server.tools._validation import argument_errors

        raise ToolError(f"arguments for {args.function} ({target}): {argument_errors(exc, spec.input_model)}") from exc
    kwargs: dict[str, Any] = {"args": inner, "ctx": ctx}
    tool = server.registered_tool(target)
    if tool is not None and "confirmed" in tool.resolved_params:
        # The gate already asked (or found no need) for both tools; pass that on.
        kwargs["confirmed"] = confirmed
    result = await spec.fn(**kwargs)
    data = result.model_dump(mode="json")
    return CallModuleFunctionOutput(summary=str(data.get("summary", "")), tool=target, result=data)


SPECS = [
    ToolSpec(
        name="call_module_function", fn=call_module_function, input_model=CallModuleFunctionInput,
        title="Call a ci_cd_automation function (compat)", description=call_module_function.__doc__ or "",
        annotations=ToolAnnotations(title="Call a ci_cd_automation function (compat)", read_only_hint=False,
                                    destructive_hint=True, idempotent_hint=False, open_world_hint=True),
        default_level=Level.TRUSTED, delegate=_delegate,
    ),
]
