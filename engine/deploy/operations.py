"""The operations that change what serves: start a release, stop instances, route traffic,
verify health, analyse a canary, run a plan, and put a previous version back.

They live here once. A deployment's automatic rollback uses `restore_version`; the rollback
package plans, journals and resumes sequences of the same operations. Nothing here decides
*what* to do (that is `strategies`); these functions do it and report what happened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import httpx

from engine._clock import Clock
from engine.deploy.config import Environment, HttpCheck, TcpCheck
from engine.deploy.health import HealthVerdict, probe, verify
from engine.deploy.routers.base import Backend, Router
from engine.deploy.strategies import (
    Analyze,
    Plan,
    Start,
    Step,
    Stop,
    Traffic,
    Verify,
    Wait,
    describe,
    plan_restore,
    traffic_weights,
)
from engine.deploy.targets.base import Instance, Release, Target
from engine.errors import CicdError, RouterError, TargetError

__all__ = [
    "Emit",
    "OpsContext",
    "PlanOutcome",
    "analyze_instances",
    "execute_plan",
    "restore_version",
    "route",
    "start_release",
    "stop_instances",
    "verify_instances",
]

Emit = Callable[[str, str, dict[str, Any]], Awaitable[None]]
"""emit(kind, message, data): report progress (stored, logged and passed to the caller's callback)."""


async def _no_emit(kind: str, message: str, data: dict[str, Any]) -> None:
    return None


DRAIN_GRACE = 0.5  # seconds between draining an instance and stopping it


@dataclass
class OpsContext:
    """What the operations work with: one service in one environment."""

    environment: Environment
    service: str
    target: Target
    router: Router | None
    clock: Clock
    http: httpx.AsyncClient
    emit: Emit = _no_emit
    on_step: Callable[[int, str, str | None], Awaitable[None]] | None = None


@dataclass
class PlanOutcome:
    ok: bool
    reason: str | None = None
    failed_step: int | None = None
    changed: bool = False  # whether any step touched the world
    verdicts: list[HealthVerdict] = field(default_factory=list)


async def start_release(ctx: OpsContext, release: Release, slots: Sequence[Instance]) -> list[Instance]:
    """Prepare `release` (idempotent) and start it in each slot, in order.

    Raises:
        TargetError: the target could not prepare or start it.
    """
    ready = release if release.prepared else await ctx.target.prepare(release)
    started = []
    for slot in slots:
        inst = await ctx.target.start(replace(ready, color=slot.color), slot)
        started.append(inst)
        await ctx.emit(
            "instance_started",
            f"started {release.version} on {inst.slot}",
            {"slot": inst.slot, "version": inst.version, "ref": inst.ref, "color": inst.color},
        )
    return started


async def stop_instances(ctx: OpsContext, instances: Sequence[Instance]) -> None:
    """Stop each instance (already-gone ones are fine).

    Raises:
        TargetError: an instance could not be stopped.
    """
    for inst in instances:
        await ctx.target.stop(inst)
        await ctx.emit(
            "instance_stopped",
            f"stopped {inst.version} on {inst.slot}",
            {"slot": inst.slot, "version": inst.version},
        )


async def route(ctx: OpsContext, step: Traffic, running: Sequence[Instance]) -> list[Backend]:
    """Point the router at `running` with the weights `step` asks for (no-op without a router).

    Raises:
        RouterError: the router refused or failed (its previous configuration stays).
    """
    if ctx.router is None:
        return []
    backends = [
        Backend(inst, await ctx.target.address(inst), weight) for inst, weight in traffic_weights(step, running)
    ]
    await ctx.router.set_backends(ctx.service, backends)
    weights: dict[str, int] = {}
    for b in backends:
        weights[str(b.instance.version)] = weights.get(str(b.instance.version), 0) + b.weight
    total = sum(weights.values()) or 1
    shares = {v: round(100 * w / total) for v, w in weights.items()}
    await ctx.emit(
        "traffic_shifted",
        "traffic: " + ", ".join(f"{v} {p}%" for v, p in shares.items()),
        {"shares": shares, "backends": [(str(b.address), b.weight) for b in backends]},
    )
    return backends


async def verify_instances(ctx: OpsContext, instances: Sequence[Instance]) -> list[HealthVerdict]:
    """Run the environment's health checks against the instances, all at once.

    Returns the verdicts gathered. The first unhealthy instance settles the matter: checks of
    the others still running are cancelled (their verdicts are left out), so a bad batch is
    known as soon as one instance fails.
    """
    verdicts: list[HealthVerdict] = []

    async def one(inst: Instance, scope: anyio.CancelScope) -> None:
        address = await ctx.target.address(inst)
        found = await verify(ctx.environment.health_checks, address, client=ctx.http, clock=ctx.clock)
        if all(v.healthy for v in found):
            verdicts.extend(found)
            await ctx.emit(
                "health_passed",
                f"{inst.version} on {inst.slot} is healthy",
                {
                    "slot": inst.slot,
                    "version": inst.version,
                    "healthy": True,
                    "probes": sum(v.probes for v in found),
                },
            )
            return
        gone = await _exited(ctx, inst)
        if gone is not None:
            # say why: the instance died, and what it printed last
            found = [
                v if v.healthy else replace(v, detail=f"{v.detail}; the instance is not running any more{gone}")
                for v in found
            ]
        verdicts.extend(found)
        detail = str(next(v for v in found if not v.healthy))
        await ctx.emit(
            "health_failed",
            f"{inst.version} on {inst.slot}: {detail}",
            {"slot": inst.slot, "version": inst.version, "healthy": False},
        )
        scope.cancel()

    async with anyio.create_task_group() as tg:
        for inst in instances:
            tg.start_soon(one, inst, tg.cancel_scope)
    return verdicts


async def _exited(ctx: OpsContext, inst: Instance) -> str | None:
    """None while the instance runs; else what it printed last (may be empty)."""
    try:
        now = {i.slot: i for i in await ctx.target.instances(ctx.service)}
    except CicdError:
        return None
    current = now.get(inst.slot)
    if current is not None and current.alive:
        return None
    tail_fn = getattr(ctx.target, "log_tail", None)
    tail = tail_fn(inst) if callable(tail_fn) else ""
    return f" (its output ends: {tail.strip()[-300:]!r})" if tail else ""


async def analyze_instances(ctx: OpsContext, instances: Sequence[Instance], step: Analyze) -> tuple[int, int]:
    """Probe `instances` every `step.interval` for `step.seconds`; returns (passed, total) probes."""
    checks = [c for c in ctx.environment.health_checks if isinstance(c, HttpCheck | TcpCheck)] or [TcpCheck()]
    addresses = [await ctx.target.address(i) for i in instances]
    passed = total = 0
    end = ctx.clock.now() + step.seconds
    while True:
        for address in addresses:
            for check in checks:
                result = await probe(check, address, ctx.http)()
                total += 1
                passed += result.ok
        if ctx.clock.now() >= end:
            return passed, total
        await ctx.clock.sleep(step.interval)


async def execute_plan(
    ctx: OpsContext,
    plan: Plan,
    releases: Mapping[str, Release],
    live: MutableMapping[str, Instance],
    *,
    first_seq: int = 0,
) -> PlanOutcome:
    """Run the steps of `plan` in order, keeping `live` (slot -> instance) up to date.

    Never raises for the world failing: a target/router error or a failed gate ends the run with
    `ok=False` and the reason; `changed` says whether anything had been touched by then.
    """
    outcome = PlanOutcome(ok=True)
    for n, step in enumerate(plan.steps):
        seq = first_seq + n
        kind, text = describe(step)
        if ctx.on_step:
            await ctx.on_step(seq, "running", None)
        await ctx.emit("step_started", text, {"step": seq, "kind": kind})
        try:
            failure = await _run_step(ctx, step, releases, live, outcome)
        except (TargetError, RouterError) as exc:
            failure = str(exc)
        if failure is not None:
            outcome.ok, outcome.reason, outcome.failed_step = False, f"{text}: {failure}", seq
            if ctx.on_step:
                await ctx.on_step(seq, "failed", failure)
            await ctx.emit("step_failed", outcome.reason, {"step": seq, "kind": kind})
            return outcome
        if ctx.on_step:
            await ctx.on_step(seq, "done", None)
    return outcome


async def _run_step(
    ctx: OpsContext,
    step: Step,
    releases: Mapping[str, Release],
    live: MutableMapping[str, Instance],
    outcome: PlanOutcome,
) -> str | None:
    if isinstance(step, Start):
        outcome.changed = True
        release = releases[step.version]
        await ctx.emit(
            "batch_started",
            f"starting {step.version} on {', '.join(s.slot for s in step.slots)}",
            {"slots": [s.slot for s in step.slots], "version": step.version},
        )
        if not release.prepared:
            release = await ctx.target.prepare(release)
        for slot in step.slots:
            if slot.slot in live:
                return f"slot {slot.slot} is still occupied by {live[slot.slot].version}"
            live[slot.slot] = (await start_release(ctx, release, [slot]))[0]
        return None
    if isinstance(step, Stop):
        outcome.changed = True
        for inst in step.instances:
            current = live.get(inst.slot)
            same = current is not None and current.ref == inst.ref
            await stop_instances(ctx, [current if same and current is not None else inst])
            if same:
                live.pop(inst.slot, None)
        return None
    if isinstance(step, Verify):
        instances = [live[s] for s in step.slots if s in live]
        missing = [s for s in step.slots if s not in live]
        if missing:
            return f"nothing runs in {', '.join(missing)}"
        verdicts = await verify_instances(ctx, instances)
        outcome.verdicts += verdicts
        bad = [v for v in verdicts if not v.healthy]
        return str(bad[0]) if bad else None
    if isinstance(step, Traffic):
        if ctx.router is not None:
            outcome.changed = True
            before = {str(b.address) for b in await ctx.router.backends(ctx.service) if not b.drained}
            after = {str(b.address) for b in await route(ctx, step, list(live.values())) if not b.drained}
            if before - after:
                # The router sends no new request to an instance it took out of rotation, but
                # requests it already forwarded (nginx's old workers finish theirs after a reload)
                # must complete before the instance is stopped, or a client sees a cut response
                # (or, on docker, a connection to a vanished container that hangs).
                await ctx.clock.sleep(DRAIN_GRACE)
        return None
    if isinstance(step, Wait):
        await ctx.emit("waiting", f"waiting {step.seconds:g}s: {step.why}", {"seconds": step.seconds})
        await ctx.clock.sleep(step.seconds)
        return None
    assert isinstance(step, Analyze)
    instances = [live[s] for s in step.slots if s in live]
    passed, total = await analyze_instances(ctx, instances, step)
    rate = passed / total if total else 0.0
    ok = rate >= step.success_rate
    await ctx.emit(
        "analysis_" + ("passed" if ok else "failed"),
        f"canary at {step.percent}%: {passed}/{total} probes passed ({rate:.0%}, need {step.success_rate:.0%})",
        {"passed": passed, "total": total, "percent": step.percent},
    )
    return None if ok else f"{passed}/{total} probes passed ({rate:.0%} < {step.success_rate:.0%})"


@dataclass
class RestoreOutcome:
    ok: bool
    reason: str | None
    plan: Plan


async def restore_version(
    ctx: OpsContext,
    release: Release,
    *,
    live: MutableMapping[str, Instance],
    layout: Sequence[Instance],
    first_seq: int = 0,
    on_plan: Callable[[Plan], Awaitable[None]] | None = None,
) -> RestoreOutcome:
    """Put `release` back: keep its healthy instances, stop the rest, refill `layout`, verify, route.

    `layout` is where the version ran before (bare slots); `live` is what runs now and is kept
    up to date. `ok` is True only when every instance of the version answered its health checks.
    """
    bare = [replace(s, version=None, ref=None, deployment_id=None, alive=True, data={}) for s in layout]
    the_plan = plan_restore(release.version, live=list(live.values()), layout=bare, has_router=ctx.router is not None)
    if on_plan is not None:
        await on_plan(the_plan)
    outcome = await execute_plan(ctx, the_plan, {release.version: release}, live, first_seq=first_seq)
    return RestoreOutcome(outcome.ok, outcome.reason, the_plan)
