"""analyze_performance: engine.insights' analysis and optimisation plan of a pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations

from engine.store import Store
from server.gate import state_of
from server.models import AnalyzePerformanceInput, AnalyzePerformanceOutput, DurationStats, SuggestionOut
from server.tools._errors import tool_errors, unknown_pipeline
from server.tools._registry import ToolSpec
from server.trust import Level

if TYPE_CHECKING:
    # Types only: the insights engine loads on the first call that needs it, not at start-up.
    from engine.insights.models import Suggestion

__all__ = ["SPECS", "analysis_from_store"]


def _suggestion(s: Suggestion) -> SuggestionOut:
    return SuggestionOut(kind=s.kind, title=s.title, detail=s.detail, jobs=list(s.jobs),
                         estimated_saving=s.estimated_saving.value, estimated_duration=s.estimated_duration.value,
                         effort=s.effort)


def analysis_from_store(store: Store, args: AnalyzePerformanceInput) -> AnalyzePerformanceOutput:
    """Raises:
    NotFoundError: the pipeline was never registered or run.
    InputError: a parameter is out of range.
    """
    from engine.insights import PipelineOptimizer

    opt = PipelineOptimizer(store=store)
    a = opt.analyze_performance(args.pipeline_name, args.time_range_days)
    if a.status == "unknown_pipeline":
        from engine.errors import NotFoundError
        from engine.store import runs

        raise NotFoundError(unknown_pipeline(args.pipeline_name, runs.pipeline_names(store)))
    plan = opt.optimize_pipeline_performance(args.pipeline_name, args.target_improvement,
                                             time_range=args.time_range_days)
    d = a.duration_stats.pipeline if a.duration_stats else None
    duration = DurationStats(runs=d.count, mean=d.mean, median=d.median, p95=d.p95) if d else None
    jobs = a.duration_stats.jobs if a.duration_stats else {}
    slowest = [name for name, _ in sorted(jobs.items(), key=lambda kv: -kv[1].mean)][:10]
    b = a.bottlenecks
    path = [j.job for j in b.critical_path.jobs] if b and b.critical_path else []
    trend = f"{a.trends.verdict}: {a.trends.reason}" if a.trends else None
    outcome = plan.expected_outcome
    summary = f"{a.pipeline}: {a.message}"
    if duration:
        summary += f"; median {duration.median:.1f}s, p95 {duration.p95:.1f}s"
    if plan.suggestions:
        best = plan.suggestions[0]
        summary += (f"; {len(plan.suggestions)} suggestion(s), best: {best.title} "
                    f"(saves ~{best.estimated_saving.value:.1f}s/run)")
    if outcome.reaches_target is not None:
        summary += f"; target {args.target_improvement:.0%} {'reached' if outcome.reaches_target else 'not reached'}"
    return AnalyzePerformanceOutput(
        summary=summary, pipeline=a.pipeline, status=a.status, message=a.message, window_days=a.window_days,
        runs=dict(a.runs), duration=duration, trend=trend, critical_path=path, slowest_jobs=slowest,
        flaky_jobs=[f.job for f in b.flaky_jobs] if b else [],
        suggestions=[_suggestion(s) for s in plan.suggestions], target_improvement=args.target_improvement,
        reaches_target=outcome.reaches_target,
        estimated_duration=outcome.estimated_duration.value if outcome.estimated_duration else None,
        report_uri=a.report_uri,
    )


async def analyze_performance(args: AnalyzePerformanceInput, ctx: Context) -> AnalyzePerformanceOutput:
    """Why a pipeline is slow, from its recorded runs: duration stats, trend, critical path,
    slowest and flaky jobs, ranked suggestions with the seconds each saves."""
    state = state_of(ctx)
    with tool_errors(state):
        return await anyio.to_thread.run_sync(analysis_from_store, state.store, args)


SPECS = [
    ToolSpec(
        name="analyze_performance", fn=analyze_performance, input_model=AnalyzePerformanceInput,
        title="Analyse pipeline performance", description=analyze_performance.__doc__ or "",
        annotations=ToolAnnotations(title="Analyse pipeline performance", read_only_hint=True,
                                    destructive_hint=False, idempotent_hint=True, open_world_hint=False),
        default_level=Level.UNTRUSTED, requires=("engine.insights.optimizer",),
    ),
]
