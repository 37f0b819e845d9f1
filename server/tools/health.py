"""pipeline_health: each pipeline's health, computed by engine.insights from its stored runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations

from engine.store import Store, runs
from server.gate import state_of
from server.models import PipelineHealthInput, PipelineHealthOutput
from server.tools._errors import tool_errors, unknown_pipeline
from server.tools._present import present_health
from server.tools._registry import ToolSpec
from server.trust import Level

__all__ = ["SPECS", "HealthCache", "health_from_store"]


_WINDOW_STEP = 60.0   # the window's start slides with the clock: recompute at least once a minute


class HealthCache:
    """Health reports, recomputed only when the stored runs change (or the clock minute turns).

    An agent polls pipeline_health; recomputing the same answer from every run of the window
    on each poll would cost far more than the call itself.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str | None, float], tuple[tuple[Any, ...], PipelineHealthOutput]] = {}

    def _stamp(self, store: Store) -> tuple[Any, ...]:
        # What a health report reads changes the fingerprint (engine.store.runs says how).
        return (*runs.store_fingerprint(store), int(self._clock() // _WINDOW_STEP))

    def cached(self, store: Store, name: str | None, days: float) -> PipelineHealthOutput | None:
        """The stored report if it is still current (one small query), else None."""
        stamp = self._stamp(store)
        with self._lock:
            hit = self._entries.get((name, days))
        return hit[1] if hit is not None and hit[0] == stamp else None

    def get(self, store: Store, name: str | None, days: float) -> PipelineHealthOutput:
        """Raises: as health_from_store."""
        key = (name, days)
        stamp = self._stamp(store)
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        out = health_from_store(store, name, days)
        with self._lock:
            if len(self._entries) > 256:
                self._entries.clear()
            self._entries[key] = (stamp, out)
        return out


_CACHE = HealthCache()


def health_from_store(store: Store, name: str | None, days: float) -> PipelineHealthOutput:
    """Raises:
    NotFoundError: `name` has never been registered or run.
    InputError: days is out of range.
    """
    from engine.errors import NotFoundError
    from engine.insights import PipelineMonitor

    report = PipelineMonitor(store=store).monitor_pipeline_health(name, time_range=days)
    out = [present_health(h) for h in report.pipelines]
    if name is not None and out and out[0].runs == 0 and out[0].last_run_id is None:
        if not runs.pipeline_registered(store, name):
            raise NotFoundError(unknown_pipeline(name, runs.pipeline_names(store)))
    if not out:
        summary = "no pipelines have been registered or run yet"
    else:
        by: dict[str, list[str]] = {}
        for h in out:
            by.setdefault(h.status, []).append(h.pipeline)
        summary = "; ".join(f"{status}: {', '.join(ps)}" for status, ps in sorted(by.items()))
        summary += f" (last {days:g} days)"
    return PipelineHealthOutput(summary=summary, pipelines=out)


async def pipeline_health(args: PipelineHealthInput, ctx: Context) -> PipelineHealthOutput:
    """Health of one or all pipelines from recent runs: status with reasons, success rate, failure
    streak, last run, recovery time, flaky jobs, duration trend."""
    state = state_of(ctx)
    with tool_errors(state):
        hit = _CACHE.cached(state.store, args.pipeline_name, args.time_range_days)
        if hit is not None:
            return hit
        # A recomputation reads every run of the window: off the event loop.
        return await anyio.to_thread.run_sync(_CACHE.get, state.store, args.pipeline_name, args.time_range_days)


SPECS = [
    ToolSpec(
        name="pipeline_health", fn=pipeline_health, input_model=PipelineHealthInput, title="Pipeline health",
        description=pipeline_health.__doc__ or "",
        annotations=ToolAnnotations(title="Pipeline health", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=False),
        default_level=Level.UNTRUSTED, requires=("engine.insights.monitor",),
    ),
]
