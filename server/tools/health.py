"""pipeline_health: how each pipeline is doing, computed from its stored runs."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations

from engine.errors import NotFoundError
from engine.store import Store
from server.gate import state_of
from server.models import PipelineHealth, PipelineHealthInput, PipelineHealthOutput
from server.tools._errors import tool_errors
from server.tools._registry import ToolSpec
from server.trust import Level

__all__ = ["SPECS", "HealthRules", "assess", "pipeline_health_from_store"]

_COUNTED = ("succeeded", "failed", "interrupted")   # cancelled runs were stopped on purpose: not counted
_BAD = ("failed", "interrupted")


@dataclass(frozen=True)
class HealthRules:
    window: int = 20                # most recent finished runs considered
    failing_streak: int = 3         # this many failures in a row: failing
    failing_rate: float = 0.5       # success rate below this: failing
    healthy_rate: float = 0.9       # below this (or a failed last run): degraded


def assess(name: str, runs: list[dict[str, Any]], rules: HealthRules = HealthRules()) -> PipelineHealth:
    """Health from a pipeline's finished runs, newest first. Pure."""
    counted = [r for r in runs if r["status"] in _COUNTED][: rules.window]
    if not counted:
        return PipelineHealth(pipeline=name, status="unknown", runs=0, consecutive_failures=0,
                              last_status=runs[0]["status"] if runs else None,
                              last_run_id=runs[0]["run_id"] if runs else None,
                              last_finished_at=runs[0]["finished_at"] if runs else None,
                              issues=["no finished runs yet"])
    ok = [r for r in counted if r["status"] == "succeeded"]
    rate = len(ok) / len(counted)
    streak = 0
    for r in counted:
        if r["status"] not in _BAD:
            break
        streak += 1
    durations = [r["duration"] for r in ok if r["duration"] is not None]
    issues: list[str] = []
    if streak:
        issues.append(f"the last {streak} run(s) failed" if streak > 1 else "the last run failed")
    if rate < rules.healthy_rate:
        issues.append(f"{len(counted) - len(ok)} of the last {len(counted)} runs failed")
    status: Literal["healthy", "degraded", "failing"]
    if streak >= rules.failing_streak or rate < rules.failing_rate:
        status = "failing"
    elif issues:
        status = "degraded"
    else:
        status = "healthy"
    last = counted[0]
    return PipelineHealth(
        pipeline=name, status=status, runs=len(counted), success_rate=round(rate, 4), consecutive_failures=streak,
        last_status=last["status"], last_run_id=last["run_id"], last_finished_at=last["finished_at"],
        median_duration=round(statistics.median(durations), 3) if durations else None, issues=issues,
    )


def pipeline_health_from_store(store: Store, name: str | None, rules: HealthRules = HealthRules()) -> PipelineHealthOutput:
    """Raises:
    NotFoundError: `name` has never been registered or run.
    """
    if name is not None:
        names = [name]
        known = store.query_one(
            "SELECT 1 FROM runs WHERE pipeline = ? UNION SELECT 1 FROM pipelines WHERE name = ? LIMIT 1", (name, name))
        if known is None:
            raise NotFoundError(f"no pipeline named {name!r} has been registered or run; "
                                "call pipeline_health without pipeline_name to list them all")
    else:
        names = sorted({r[0] for r in store.query("SELECT name FROM pipelines UNION SELECT DISTINCT pipeline FROM runs")})
    out = []
    for n in names:
        rows = store.query(
            "SELECT run_id, status, finished_at, duration FROM runs "
            "WHERE pipeline = ? AND status NOT IN ('queued', 'running') ORDER BY created_at DESC LIMIT ?",
            (n, rules.window * 2),
        )
        out.append(assess(n, [dict(r) for r in rows], rules))
    if not out:
        summary = "no pipelines have been registered or run yet"
    else:
        by: dict[str, list[str]] = {}
        for h in out:
            by.setdefault(h.status, []).append(h.pipeline)
        summary = "; ".join(f"{status}: {', '.join(ps)}" for status, ps in sorted(by.items()))
    return PipelineHealthOutput(summary=summary, pipelines=out)


async def pipeline_health(args: PipelineHealthInput, ctx: Context) -> PipelineHealthOutput:
    """Health of one pipeline or all of them, from their stored runs: healthy, degraded, failing or
    unknown, with the success rate over the last 20 finished runs, failures in a row, the last run and
    the median duration of successful runs. Read-only."""
    state = state_of(ctx)
    with tool_errors(state):
        return await anyio.to_thread.run_sync(pipeline_health_from_store, state.store, args.pipeline_name)


SPECS = [
    ToolSpec(
        name="pipeline_health", fn=pipeline_health, input_model=PipelineHealthInput, title="Pipeline health",
        description=pipeline_health.__doc__ or "",
        annotations=ToolAnnotations(title="Pipeline health", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=False),
        default_level=Level.UNTRUSTED,
    ),
]
