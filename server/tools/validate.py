"""validate_pipeline: check a pipeline and show what would run, executing nothing."""

from __future__ import annotations

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations

from server.gate import state_of
from server.models import PipelineIssue, PlannedJob, ValidatePipelineInput, ValidatePipelineOutput
from server.tools._errors import missing_config_file, pipeline_lookup, tool_errors
from server.tools._paths import confined_config_path
from server.tools._registry import ToolSpec
from server.trust import Level

__all__ = ["SPECS"]


def _levels(graph: dict[str, list[str]]) -> list[list[str]]:
    """Jobs grouped by how early they can start: each group needs only earlier groups."""
    depth: dict[str, int] = {}
    for name in graph:   # the plan lists jobs in a topological order
        depth[name] = 1 + max((depth.get(d, 0) for d in graph[name]), default=-1)
    groups: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name, level in depth.items():
        groups[level].append(name)
    return groups


async def validate_pipeline(args: ValidatePipelineInput, ctx: Context) -> ValidatePipelineOutput:
    """Check a pipeline without running it (file, YAML text or name): its errors with file:line,
    or the job graph and which jobs run together."""
    import anyio

    from engine.errors import NotFoundError, SpecError

    state = state_of(ctx)
    with tool_errors(state):
        if args.config_path:
            text = confined_config_path(args.config_path, state.settings)
            if missing := missing_config_file(text):
                raise NotFoundError(missing)
        elif args.yaml is not None:
            text = args.yaml + ("\n" if "\n" not in args.yaml else "")
        else:
            assert args.pipeline is not None
            text = args.pipeline
        try:
            with pipeline_lookup(args.pipeline, state.manager.list_pipelines):
                plan = await anyio.to_thread.run_sync(state.manager.check_pipeline, text)
        except SpecError as exc:
            issues = [PipelineIssue(where=f"{i.file or '<pipeline>'}:{i.line}" + (f":{i.column}" if i.column else "")
                                    if i.line is not None else (i.file or "<pipeline>"),
                                    field=i.field, message=i.message) for i in exc.issues]
            summary = f"invalid: {len(issues)} problem(s); first: {exc.issues[0]}" if issues else "invalid"
            return ValidatePipelineOutput(summary=summary, valid=False, errors=issues)
        graph = plan.graph
        jobs = [PlannedJob(name=j.name, stage=j.stage, needs=list(j.needs), runs_on=j.runs_on,
                           deploys_to=j.environment if j.deploy is not None else None,
                           commands=len(j.commands)) for j in plan.jobs.values()]
        levels = _levels(graph)
        deploys = sorted({j.deploys_to for j in jobs if j.deploys_to})
        summary = (f"valid: pipeline {plan.name}, {len(jobs)} job(s) in {len(levels)} wave(s)"
                   + (f", deploys to {', '.join(deploys)}" if deploys else "")
                   + "; run it with run_pipeline (nothing was run now)")
        return ValidatePipelineOutput(summary=summary, valid=True, pipeline=plan.name, jobs=jobs, waves=levels,
                                      secrets=list(plan.spec.secrets))


SPECS = [
    ToolSpec(
        name="validate_pipeline", fn=validate_pipeline, input_model=ValidatePipelineInput,
        title="Validate a pipeline", description=validate_pipeline.__doc__ or "",
        annotations=ToolAnnotations(title="Validate a pipeline", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=False),
        default_level=Level.UNTRUSTED, requires=("engine.pipeline.manager",),
    ),
]
