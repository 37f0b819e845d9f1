"""Running a rollback plan against the target, journaled step by step, resumable.

Theory of operation
-------------------
`run_plan` walks the plan's steps from the first one the journal does not mark `done` (all of
them for a new execution). For each step it writes `running` (attempt n) to the journal, runs
the step's action with the step's timeout, and writes `done` or `failed` with what the action
touched. A failed attempt is retried up to `retries` times; a step that still fails stops the
plan, whatever the strategy, and the result names it and says why. A process killed mid-step
leaves that step `running`: the next run starts again at it, and because every action is
idempotent (stop by container/pid ref, start only slots that do not already run the version,
verify, route to what runs) redoing it does no harm, and steps before it are not redone.

Each action reads the world afresh from the target (`instances`) rather than trusting memory,
which is what makes a resume in a new process correct. The actions are the operations of
`engine.deploy.operations` (start_release, stop_instances, route, verify_instances), registered
by name in `ACTIONS`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio

from engine.deploy.operations import OpsContext, route, start_release, stop_instances, verify_instances
from engine.deploy.strategies import Traffic
from engine.deploy.targets.base import Instance, Release
from engine.errors import CicdError, InputError
from engine.events import Event, EventCallback, emit
from engine.rollback._journal import Journal
from engine.rollback.plans import RollbackPlan, RollbackStep

__all__ = ["ACTIONS", "RollbackExecution", "StepFailed", "StepResult", "run_plan"]


class StepFailed(CicdError):
    """An action found the world not as the step needs it (unhealthy, occupied slot)."""


@dataclass
class StepResult:
    seq: int
    name: str
    action: str
    status: str  # pending | running | done | failed
    attempts: int = 0
    duration: float | None = None
    detail: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class RollbackExecution:
    """What a rollback did. `status` is "completed" or "failed" ("running" only while it runs)."""

    execution_id: str
    plan_id: str
    deployment_id: str
    environment: str
    service: str
    strategy: str
    from_version: str
    to_version: str
    status: str
    completed_steps: list[str]
    errors: list[str]
    duration: float
    steps: list[StepResult]
    failed_step: str | None = None
    runs: int = 1
    skipped_steps: list[str] = field(default_factory=list)
    """Steps found done in the journal and not run again by this call (a resume)."""
    finished_at: float | None = None
    replayed: bool = False
    """This call found the execution already completed and did nothing (the original result)."""

    @property
    def ok(self) -> bool:
        return self.status == "completed"


@dataclass
class ExecContext:
    """One execution in progress: the operations' context, the release to put back, the journal."""

    ops: OpsContext
    plan: RollbackPlan
    release: Release
    journal: Journal
    execution_id: str
    on_event: EventCallback | None = None
    done: int = 0

    async def event(self, kind: str, message: str, step: str | None, status: str | None, data: dict[str, Any]) -> None:
        await emit(self.on_event, Event(
            kind=kind, subject="rollback", subject_id=self.execution_id, message=message, job=step, status=status,
            done=self.done, total=len(self.plan.steps), data=data))


Action = Callable[[ExecContext, RollbackStep], Awaitable[tuple[str, dict[str, Any]]]]


async def _running(ctx: ExecContext) -> dict[str, Instance]:
    return {i.slot: i for i in await ctx.ops.target.instances(ctx.plan.service)}


async def _prepared(ctx: ExecContext) -> Release:
    if not ctx.release.prepared:
        ctx.release = await ctx.ops.target.prepare(ctx.release)
    return ctx.release


async def _stop(ctx: ExecContext, step: RollbackStep) -> tuple[str, dict[str, Any]]:
    planned = [Instance.from_json(raw) for raw in step.params["instances"]]
    now = await _running(ctx)
    stopped, gone = [], []
    for inst in planned:
        current = now.get(inst.slot)
        # Stop by the planned ref: a slot that runs something else now (our restored version
        # after a resume) is not touched, and a gone instance is not an error.
        if current is not None and current.ref == inst.ref:
            await stop_instances(ctx.ops, [current])
            stopped.append(f"{inst.version}@{inst.slot} ({inst.ref})")
        else:
            await ctx.ops.target.stop(inst)
            gone.append(f"{inst.version}@{inst.slot}")
    detail = f"stopped {', '.join(stopped) or 'nothing'}" + (f"; already gone: {', '.join(gone)}" if gone else "")
    return detail, {"stopped": stopped, "already_gone": gone}


async def _prepare(ctx: ExecContext, step: RollbackStep) -> tuple[str, dict[str, Any]]:
    ctx.release = replace(ctx.release, prepared={})
    release = await _prepared(ctx)
    return f"{release.version} is ready on the target", {"prepared": dict(release.prepared)}


async def _start(ctx: ExecContext, step: RollbackStep) -> tuple[str, dict[str, Any]]:
    slots = [Instance.from_json(raw) for raw in step.params["slots"]]
    version = step.params["version"]
    now = await _running(ctx)
    started: list[dict[str, str | None]] = []
    kept: list[dict[str, str | None]] = []
    for slot in slots:
        current = now.get(slot.slot)
        if current is not None and current.alive:
            if current.version == version:
                kept.append({"slot": slot.slot, "ref": current.ref})  # started before a crash, or never stopped
                continue
            raise StepFailed(f"slot {slot.slot} runs {current.version} ({current.ref}); it must be stopped first")
        if current is not None:
            await ctx.ops.target.stop(current)  # a dead record only holds the slot
        inst = (await start_release(ctx.ops, await _prepared(ctx), [slot]))[0]
        started.append({"slot": inst.slot, "ref": inst.ref})
    detail = f"started {version} on {', '.join(str(s['slot']) for s in started) or 'no slot'}"
    if kept:
        detail += f"; already running on {', '.join(str(k['slot']) for k in kept)}"
    return detail, {"started": started, "kept": kept}


async def _verify(ctx: ExecContext, step: RollbackStep) -> tuple[str, dict[str, Any]]:
    wanted = list(step.params["slots"])
    now = await _running(ctx)
    version = ctx.plan.to_version
    problems = []
    for slot in wanted:
        inst = now.get(slot)
        if inst is None or not inst.alive:
            problems.append(f"nothing runs in {slot}")
        elif inst.version != version:
            problems.append(f"{slot} runs {inst.version}, not {version}")
    if problems:
        raise StepFailed("; ".join(problems))
    verdicts = await verify_instances(ctx.ops, [now[s] for s in wanted])
    bad = [v for v in verdicts if not v.healthy]
    if bad or len({v.address for v in verdicts}) < len(wanted):
        raise StepFailed(str(bad[0]) if bad else "a health check was cut short")
    return (
        f"{version} is healthy on {', '.join(wanted)}",
        {"verdicts": [str(v) for v in verdicts], "refs": {s: now[s].ref for s in wanted}},
    )


async def _route(ctx: ExecContext, step: RollbackStep) -> tuple[str, dict[str, Any]]:
    if ctx.ops.router is None:
        return "no router", {}
    running = [i for i in (await _running(ctx)).values() if i.alive]
    traffic = Traffic(
        version=step.params.get("version"), percent=step.params.get("percent"), drain=frozenset(step.params["drain"])
    )
    backends = await route(ctx.ops, traffic, running)
    shares = [f"{b.instance.version}@{b.instance.slot}={b.weight}" for b in backends]
    return "routed: " + (", ".join(shares) or "no backends"), {"backends": shares}


ACTIONS: dict[str, Action] = {
    "stop_instances": _stop,
    "prepare_release": _prepare,
    "start_release": _start,
    "verify_health": _verify,
    "route_traffic": _route,
}


async def _attempt(ctx: ExecContext, step: RollbackStep) -> tuple[str | None, str, dict[str, Any]]:
    """(error or None, detail, result) of one attempt of `step`, within its timeout."""
    try:
        with anyio.fail_after(step.timeout):
            detail, result = await ACTIONS[step.action](ctx, step)
        return None, detail, result
    except TimeoutError:
        return f"timed out after {step.timeout:g}s", "", {}
    except CicdError as exc:
        return str(exc) or type(exc).__name__, "", {}


async def run_plan(ctx: ExecContext, journal_steps: list[dict[str, Any]]) -> tuple[str, str | None, list[str]]:
    """Run the plan's unfinished steps in order; returns (status, failed step name, errors).

    Never raises for the world failing: the failing step's name and reason come back. A
    cancellation marks the step in progress failed ("interrupted") and propagates.
    """
    plan, journal, xid = ctx.plan, ctx.journal, ctx.execution_id
    status_of = {row["seq"]: row["status"] for row in journal_steps}
    ctx.done = sum(1 for s in status_of.values() if s == "done")
    for seq, step in enumerate(plan.steps):
        if status_of.get(seq) == "done":
            continue
        errors: list[str] = []
        for attempt in range(1, step.retries + 2):
            journal.step_started(xid, seq, attempt)
            await ctx.event(
                "rollback_step_started",
                f"{step.name}: {step.action} {', '.join(step.targets)}"
                + (f" (attempt {attempt})" if attempt > 1 else ""),
                step.name,
                "running",
                {"seq": seq, "action": step.action, "attempt": attempt},
            )
            t0 = time.monotonic()
            try:
                error, detail, result = await _attempt(ctx, step)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    journal.step_finished(xid, seq, "failed", time.monotonic() - t0, "interrupted", {})
                raise
            took = time.monotonic() - t0
            if error is None:
                journal.step_finished(xid, seq, "done", took, detail, result)
                ctx.done += 1
                await ctx.event(
                    "rollback_step_finished",
                    f"{step.name}: {detail}",
                    step.name,
                    "done",
                    {"seq": seq, "action": step.action, "duration": took, **result},
                )
                break
            errors.append(f"attempt {attempt}: {error}")
            journal.step_finished(xid, seq, "failed", took, error, {})
            if attempt <= step.retries:
                await ctx.event(
                    "rollback_step_retrying",
                    f"{step.name}: {error}; retrying",
                    step.name,
                    "retrying",
                    {"seq": seq, "attempt": attempt},
                )
                await anyio.sleep(min(2.0, 0.25 * attempt))
        else:
            why = f"step {seq + 1} ({step.name}, {step.action}) failed: {errors[-1].split(': ', 1)[1]}"
            if len(errors) > 1:
                why += f" (after {len(errors)} attempts)"
            await ctx.event(
                "rollback_step_failed", why, step.name, "failed", {"seq": seq, "action": step.action, "errors": errors}
            )
            return "failed", step.name, [why]
    return "completed", None, []


def check_executable(plan: RollbackPlan) -> None:
    """Raises: InputError: the plan is a MANUAL runbook."""
    if not plan.executable:
        raise InputError(
            f"rollback plan {plan.plan_id} is {plan.strategy.value}: a runbook for a person, not executable "
            "by the engine (read plan.runbook)"
        )
