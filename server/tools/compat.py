"""call_module_function: the original design's entry point, kept for old clients.

`module="ci_cd_automation"` and a function name map to a first-class tool; the gate decides
for both tools (the compat tool and the one it reaches), so the compat path is never a way
around a tool's level or its confirmation. `_translate` turns the original's arguments into
the tool's, once, for the gate and for the call alike.

The original's agent code reads `result["status"] != "success"` and passes
`result["deployment_id"]` to handle_rollback: the output's top-level `status` is mapped onto
that contract here (`success`, `failure`, or `running` for work still going on), and our own
status stays in `result` as the first-class tool returned it.

- run_pipeline {config_path, ...}: the run_pipeline tool.
- manage_deployments {config_path, version, environment, ...}: the deploy tool; without a
  `version` it loads the config's environments and reports the newest deployment of each
  (status `failure` when one of them did not succeed, with its `deployment_id`).
- handle_rollback {deployment_id, strategy, reason}: a rollback plan with that strategy and
  reason (create_rollback_plan), executed at once (execute_rollback).
- optimize_pipeline_performance {pipeline_name, ...}: the analyze_performance tool.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import ValidationError

from server.gate import Confirmed, server_of, state_of
from server.models import CallModuleFunctionInput, CallModuleFunctionOutput
from server.tools._errors import tool_errors
from server.tools._paths import confined_config_path
from server.tools._registry import ToolSpec
from server.trust import Level

__all__ = ["FUNCTIONS", "SPECS", "original_status"]

FUNCTIONS = {
    "run_pipeline": "run_pipeline",
    "manage_deployments": "deploy",
    "handle_rollback": "execute_rollback",
    "optimize_pipeline_performance": "analyze_performance",
}


# Our statuses, per tool, that the original's contract calls success / still running.
_SUCCESS = {"succeeded", "success", "completed", "ok"}
_RUNNING = {"queued", "running", "planned", "in_progress", "rolling_back"}


def original_status(ours: str | None) -> str:
    """Our status mapped onto the original's contract: success, running or failure."""
    if ours in _SUCCESS:
        return "success"
    return "running" if ours in _RUNNING else "failure"


def _translate(function: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(first-class tool, its arguments) for an original function call; None for an unknown function."""
    target = FUNCTIONS.get(function)
    if target is None:
        return None
    if function == "handle_rollback":
        # strategy and reason go to the plan; the gate decides on the execution, which changes things.
        ref = {k: v for k, v in arguments.items() if k == "deployment_id"}
        return target, ref
    return target, dict(arguments)


def _delegate(arguments: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    inner = arguments.get("arguments", arguments.get("args"))
    return _translate(str(arguments.get("function")), inner if isinstance(inner, dict) else {})


async def _call(server: Any, name: str, raw: dict[str, Any], ctx: Context, confirmed: Confirmed) -> dict[str, Any]:
    spec = server.specs.get(name)
    if spec is None:
        raise ToolError(
            f"the tool {name!r} is not offered by this server (its engine is not installed); "
            "available tools: " + ", ".join(sorted(server.specs))
        )
    try:
        inner = spec.input_model.model_validate(raw)
    except ValidationError as exc:
        from server.tools._validation import argument_errors

        raise ToolError(f"arguments for {name} are invalid: {argument_errors(exc, spec.input_model)}") from exc
    kwargs: dict[str, Any] = {"args": inner, "ctx": ctx}
    tool = server.registered_tool(name)
    if tool is not None and "confirmed" in tool.resolved_params:
        # The gate already asked (or found no need) for both tools; pass that on.
        kwargs["confirmed"] = confirmed
    result = await spec.fn(**kwargs)
    data: dict[str, Any] = result.model_dump(mode="json")
    return data


async def _rollback(
    server: Any, function: str, raw: dict[str, Any], ctx: Context, confirmed: Confirmed
) -> dict[str, Any]:
    plan_args: dict[str, Any] = {k: raw[k] for k in ("deployment_id", "strategy", "reason", "to_version") if k in raw}
    unknown = sorted(set(raw) - {"deployment_id", "strategy", "reason", "to_version"})
    if unknown:
        raise ToolError(f"arguments for {function} are invalid: unknown {', '.join(unknown)} "
                        "(give deployment_id, and optionally strategy, reason, to_version)")
    if "strategy" not in plan_args and "deployment_id" in plan_args:
        return await _call(server, "execute_rollback", {"deployment_id": plan_args["deployment_id"]}, ctx, confirmed)
    plan = await _call(server, "create_rollback_plan", plan_args, ctx, confirmed)
    return await _call(server, "execute_rollback", {"plan_id": plan["plan_id"]}, ctx, confirmed)


async def _deployments_report(raw: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """manage_deployments without a version: load the config, report each environment's newest deployment."""
    from engine.deploy.orchestrator import DeploymentOrchestrator

    state = state_of(ctx)
    unknown = sorted(set(raw) - {"config_path"})
    if unknown:
        raise ToolError(f"arguments for manage_deployments are invalid: unknown {', '.join(unknown)} "
                        "(to deploy, give version and environment as for the deploy tool)")
    with tool_errors(state):
        config = confined_config_path(str(raw["config_path"]), state.settings) if raw.get("config_path") else None
        orch = DeploymentOrchestrator(config, store=state.store, settings=state.settings)
        try:
            newest = [
                recs[0] for name in sorted(orch.environments)
                if (recs := orch.list_deployments(name, limit=1))
            ]
        finally:
            await orch.aclose()
    failing = [r for r in newest if str(r.status) != "success"]
    shown = failing[0] if failing else (max(newest, key=lambda r: r.created_at) if newest else None)
    return {
        "summary": f"{len(orch.environments)} environment(s) loaded; "
        + (f"{len(failing)} whose newest deployment did not succeed" if failing else "every newest deployment "
           "succeeded" if newest else "no deployments yet"),
        "status": "failure" if failing else "success",
        "environments": sorted(orch.environments),
        "deployments": [
            {"deployment_id": r.deployment_id, "name": r.name, "environment": r.environment, "service": r.service,
             "version": r.version, "status": str(r.status)}
            for r in newest
        ],
        "deployment_id": shown.deployment_id if shown is not None else None,
    }


async def call_module_function(
    args: CallModuleFunctionInput, ctx: Context, confirmed: Confirmed
) -> CallModuleFunctionOutput:
    """Compatibility entry point of the original design: module='ci_cd_automation' and function one of
    run_pipeline, manage_deployments, handle_rollback, optimize_pipeline_performance, with the original's
    `arguments` (run_pipeline {config_path}, manage_deployments {config_path[, version, environment]},
    handle_rollback {deployment_id, strategy, reason}, optimize_pipeline_performance {pipeline_name}).
    The top-level `status` is the original's: success, failure or running; `result` holds the answer of
    the first-class tool reached (run_pipeline, deploy, create_rollback_plan + execute_rollback,
    analyze_performance) with our own statuses. Prefer the first-class tools; this one is gated at the
    level of the function it reaches."""
    server = server_of(ctx)
    translated = _translate(args.function, args.arguments)
    assert translated is not None  # the input model admits only known functions
    target = translated[0]
    if args.function == "handle_rollback":
        data = await _rollback(server, args.function, args.arguments, ctx, confirmed)
    elif args.function == "manage_deployments" and "version" not in args.arguments:
        data = await _deployments_report(args.arguments, ctx)
        target = "deploy"
    else:
        if server.specs.get(target) is None:
            raise ToolError(
                f"{args.module}.{args.function} maps to the tool {target!r}, which this server does not offer "
                "(its engine is not installed); available tools: " + ", ".join(sorted(server.specs))
            )
        try:
            data = await _call(server, target, translated[1], ctx, confirmed)
        except ToolError as exc:
            if str(exc).startswith(f"arguments for {target} are invalid"):
                raise ToolError(f"arguments for {args.function} ({target}) are invalid: "
                                f"{str(exc).split(': ', 1)[1]}") from exc
            raise
    ours = data.get("status")
    return CallModuleFunctionOutput(
        summary=str(data.get("summary", "")), tool=target, result=data,
        status=original_status(ours if isinstance(ours, str) else None),
        deployment_id=data.get("deployment_id") if isinstance(data.get("deployment_id"), str) else None,
        run_id=data.get("run_id") if isinstance(data.get("run_id"), str) else None,
    )


SPECS = [
    ToolSpec(
        name="call_module_function", fn=call_module_function, input_model=CallModuleFunctionInput,
        title="Call a ci_cd_automation function (compat)", description=call_module_function.__doc__ or "",
        annotations=ToolAnnotations(title="Call a ci_cd_automation function (compat)", read_only_hint=False,
                                    destructive_hint=True, idempotent_hint=False, open_world_hint=True),
        default_level=Level.TRUSTED, delegate=_delegate,
    ),
]
