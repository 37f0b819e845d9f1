"""Rollback planning: pure functions from a deployment's history and what runs now to a plan.

Theory of operation
-------------------
A rollback puts `to_version` (a version that was verified healthy in the environment before
the deployment) back in the slots where it ran, and takes the deployment's version down. The
plan is a list of `RollbackStep`s on concrete instances; each step names one operation of
`engine.deploy.operations` (its `action`) and carries what that operation needs (`params`), so
the executor can run it, journal it and run it again after a crash: every action is idempotent
(a stop of a gone instance, a start of a slot already running `to_version`, a verify, a route).

* IMMEDIATE:  stop_services -> restore_backup (prepare the old release) -> restart_services
              (start it in its slots) -> verify_health [-> switch_traffic with a router].
* ROLLING:    restore_backup, then per batch of slots: [drain] -> stop -> start -> verify
              [-> route]; instances outside the old slots are stopped at the end.
* BLUE_GREEN: restore_backup -> start the old colour where it was scaled down -> verify it ->
              switch the router back -> verify_health -> retire the new colour [-> route].
* CANARY:     restore_backup [-> start stable where it is gone] -> canary weight to 0 ->
              verify stable -> remove the canary instances -> route.
* MANUAL:     the IMMEDIATE steps, not executable, rendered as a runbook for a person.

Nothing here touches the world; `engine.rollback.manager` gathers the inputs (store, target).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.deploy.targets.base import Instance
from engine.errors import InputError

__all__ = [
    "ACTIONS",
    "PlanInputs",
    "RollbackPlan",
    "RollbackStep",
    "RollbackStrategy",
    "StepTimeouts",
    "build_steps",
    "Liveness",
    "estimate",
    "liveness",
    "parse_strategy",
]


class RollbackStrategy(StrEnum):
    IMMEDIATE = "immediate"
    ROLLING = "rolling"
    BLUE_GREEN = "blue_green"
    CANARY = "canary"
    MANUAL = "manual"


def parse_strategy(value: str | RollbackStrategy) -> RollbackStrategy:
    """Raises: InputError: not a rollback strategy (the known ones are listed)."""
    if isinstance(value, RollbackStrategy):
        return value
    try:
        return RollbackStrategy(str(value).strip().lower().replace("-", "_"))
    except ValueError:
        known = ", ".join(s.value for s in RollbackStrategy)
        raise InputError(f"unknown rollback strategy {value!r} (known: {known})") from None


ACTIONS = ("stop_instances", "prepare_release", "start_release", "verify_health", "route_traffic")
"""The operations a step may name (each maps to `engine.deploy.operations`)."""

Action = Literal["stop_instances", "prepare_release", "start_release", "verify_health", "route_traffic"]


class RollbackStep(BaseModel):
    """One step of a plan: an operation on concrete instances, with its timeout and retries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique within the plan, e.g. 'stop_services' or 'batch 2: verify_health'.")
    action: Action = Field(description="The operation run (engine.deploy.operations).")
    targets: list[str] = Field(description="What it acts on: version@slot, slot ids, or the router.")
    timeout: float = Field(gt=0, description="Seconds one attempt may take.")
    retries: int = Field(ge=0, description="Attempts after the first when it fails.")
    params: dict[str, Any] = Field(default_factory=dict, description="What the operation needs (instances...).")
    estimate: float = Field(default=0.0, description="Expected seconds (measured median, or the timeout).")
    estimate_source: Literal["measured", "timeout"] = "timeout"


class RollbackPlan(BaseModel):
    """A stored plan: what will be done to put `to_version` back in place of `from_version`."""

    model_config = ConfigDict(extra="forbid")

    plan_id: str
    deployment_id: str
    environment: str
    service: str
    strategy: RollbackStrategy
    reason: str
    from_version: str
    to_version: str
    to_deployment_id: str = Field(description="The deployment that made to_version live.")
    to_artifacts: list[str] = Field(default_factory=list)
    target_kind: str
    steps: list[RollbackStep]
    executable: bool = True
    runbook: str | None = Field(default=None, description="MANUAL: markdown a person follows.")
    estimated_duration: float = Field(description="Seconds, sum of the steps' estimates.")
    estimate_basis: Literal["timeouts", "measured", "measured+timeouts"] = "timeouts"
    created_at: float = 0.0
    notes: list[str] = Field(default_factory=list)
    deployment_live: bool = Field(
        default=True, description="The deployment was what ran in the environment when planned."
    )
    live_version: str | None = Field(default=None, description="The live release when planned.")
    live_deployment_id: str | None = Field(default=None, description="The deployment that made it live.")
    warnings: list[str] = Field(
        default_factory=list, description="Why executing the plan needs force=true (it would not undo what runs)."
    )


@dataclass(frozen=True)
class StepTimeouts:
    """Seconds one attempt of each action may take, and how often it is retried."""

    stop: float = 60.0
    prepare: float = 300.0
    start: float = 60.0
    verify: float = 60.0
    traffic: float = 30.0
    stop_retries: int = 2
    prepare_retries: int = 1
    start_retries: int = 1
    verify_retries: int = 0  # a health check retries on its own; a second full round only adds time
    traffic_retries: int = 2


@dataclass(frozen=True)
class PlanInputs:
    """Everything a plan is computed from (gathered by the manager)."""

    deployment_id: str
    environment: str
    service: str
    from_version: str
    to_version: str
    to_deployment_id: str
    target_kind: str
    current: Sequence[Instance]
    """What runs now (from the target)."""
    layout: Sequence[Instance]
    """Where to_version ran before the deployment (bare slots), or the default slots."""
    has_router: bool
    timeouts: StepTimeouts = field(default_factory=StepTimeouts)
    batch_size: int = 1


@dataclass(frozen=True)
class Liveness:
    """What a rollback of a deployment would replace, and whether that is the deployment itself."""

    from_version: str
    live: bool
    warning: str | None = None


def _when(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def liveness(
    *,
    deployment_id: str,
    version: str,
    status: str,
    newest: bool,
    live_version: str | None,
    live_deployment_id: str | None,
    live_since: float | None,
    running: Sequence[str],
    to_version: str,
) -> Liveness:
    """Decide what a rollback of `deployment_id` replaces: the live release of its environment.

    The deployment is live when the releases record names it, or when it is the newest deployment
    there and failed (its instances are what runs, though never recorded live). Otherwise the
    plan would replace another version (a roll *forward* when an older one went live since), and
    the returned warning says so; executing such a plan needs force.
    """
    if live_deployment_id == deployment_id:
        return Liveness(version, True)
    if newest and status in ("failure", "rollback_failed"):
        return Liveness(version if version in running or not running else ", ".join(running), True)
    if live_version is not None:
        current = live_version
        since = f" since {_when(live_since)}" if live_since else ""
        what = f"version {live_version} is (deployment {live_deployment_id}{since})"
    else:
        current = ", ".join(running) or "nothing"
        what = "no version is recorded live" + (f" ({current} runs)" if running else "")
    if current == to_version:
        effect = f"{to_version} is already live: the plan changes nothing that matters"
    else:
        effect = f"this plan would replace {current} with {to_version}, not undo {deployment_id}"
    warning = (f"deployment {deployment_id} (version {version}, {status}) is not live: {what}; {effect}; "
               "execute it only with force=true")
    return Liveness(current, False, warning)


def _bare(slot: Instance) -> Instance:
    return replace(slot, version=None, ref=None, deployment_id=None, alive=True, data=dict(slot.data))


def _tag(inst: Instance) -> str:
    return f"{inst.version}@{inst.slot}"


class _Builder:
    def __init__(self, inputs: PlanInputs) -> None:
        self.i = inputs
        self.t = inputs.timeouts
        self.steps: list[RollbackStep] = []

    def add(self, name: str, action: Action, targets: list[str], **params: Any) -> None:
        timeout, retries = {
            "stop_instances": (self.t.stop, self.t.stop_retries),
            "prepare_release": (self.t.prepare, self.t.prepare_retries),
            "start_release": (self.t.start, self.t.start_retries),
            "verify_health": (self.t.verify, self.t.verify_retries),
            "route_traffic": (self.t.traffic, self.t.traffic_retries),
        }[action]
        if action == "stop_instances":
            timeout *= max(1, len(targets))
        if action == "start_release":
            timeout *= max(1, len(targets))
        self.steps.append(
            RollbackStep(name=name, action=action, targets=targets, timeout=timeout, retries=retries, params=params)
        )

    def stop(self, name: str, instances: Sequence[Instance]) -> None:
        if instances:
            self.add(name, "stop_instances", [_tag(i) for i in instances], instances=[i.to_json() for i in instances])

    def prepare(self, name: str = "restore_backup") -> None:
        self.add(name, "prepare_release", [self.i.to_version], version=self.i.to_version)

    def start(self, name: str, slots: Sequence[Instance]) -> None:
        if slots:
            self.add(
                name,
                "start_release",
                [s.slot for s in slots],
                version=self.i.to_version,
                slots=[_bare(s).to_json() for s in slots],
            )

    def verify(self, name: str, slots: Sequence[str]) -> None:
        self.add(name, "verify_health", list(slots), slots=list(slots))

    def route(self, name: str, *, favour: bool, drain: Sequence[str] = ()) -> None:
        if not self.i.has_router:
            return
        what = f"all traffic to {self.i.to_version}" if favour else "all running instances"
        self.add(
            name,
            "route_traffic",
            [what + (f", draining {', '.join(drain)}" if drain else "")],
            version=self.i.to_version if favour else None,
            percent=100 if favour else None,
            drain=list(drain),
        )


def _split(inputs: PlanInputs) -> tuple[list[Instance], list[Instance], list[Instance]]:
    """(kept: to_version instances alive in its slots, others: everything else, missing slots)."""
    layout_ids = {s.slot for s in inputs.layout}
    kept = [i for i in inputs.current if i.version == inputs.to_version and i.alive and i.slot in layout_ids]
    others = [i for i in inputs.current if i not in kept]
    have = {i.slot for i in kept}
    missing = [s for s in inputs.layout if s.slot not in have]
    return kept, others, missing


def _immediate(b: _Builder) -> None:
    kept, others, missing = _split(b.i)
    b.stop("stop_services", others)
    b.prepare()
    b.start("restart_services", missing)
    b.verify("verify_health", [s.slot for s in b.i.layout])
    b.route("switch_traffic", favour=False)


def _rolling(b: _Builder) -> None:
    kept, others, missing = _split(b.i)
    b.prepare()
    slots = list(b.i.layout)
    size = max(1, b.i.batch_size)
    kept_ids = {i.slot for i in kept}
    for n, start in enumerate(range(0, len(slots), size), 1):
        batch = slots[start : start + size]
        ids = [s.slot for s in batch]
        occupants = [i for i in others if i.slot in ids]
        todo = [s for s in batch if s.slot not in kept_ids]
        if occupants:
            b.route(f"batch {n}: drain", favour=False, drain=ids)
            b.stop(f"batch {n}: stop_services", occupants)
        b.start(f"batch {n}: restart_services", todo)
        b.verify(f"batch {n}: verify_health", ids)
        if occupants or todo:
            b.route(f"batch {n}: route", favour=False)
    layout_ids = {s.slot for s in slots}
    leftovers = [i for i in others if i.slot not in layout_ids]
    if leftovers:
        b.route("drain leftovers", favour=True)
        b.stop("stop leftovers", leftovers)
        b.route("route", favour=False)


def _blue_green(b: _Builder) -> None:
    kept, others, missing = _split(b.i)
    if not b.i.has_router:
        raise InputError(
            "a blue_green rollback switches the router back; the environment has no `router:` "
            "(use immediate or rolling)"
        )
    ids = [s.slot for s in b.i.layout]
    b.prepare()
    b.start("start_old_color", missing)
    b.verify("verify_old_color", ids)
    b.route("switch_traffic", favour=True)
    b.verify("verify_health", ids)
    b.stop("retire_new_color", others)
    b.route("route", favour=False)


def _canary(b: _Builder) -> None:
    kept, others, missing = _split(b.i)
    if not b.i.has_router:
        raise InputError("a canary rollback sets the canary's weight to 0 and needs a `router:` in the environment")
    ids = [s.slot for s in b.i.layout]
    b.prepare()
    b.start("start_stable", missing)
    b.route("canary_weight_zero", favour=True)
    b.verify("verify_stable", ids)
    b.stop("remove_canary", others)
    b.route("route", favour=False)


_PLANNERS = {
    RollbackStrategy.IMMEDIATE: _immediate,
    RollbackStrategy.ROLLING: _rolling,
    RollbackStrategy.BLUE_GREEN: _blue_green,
    RollbackStrategy.CANARY: _canary,
    RollbackStrategy.MANUAL: _immediate,
}


def build_steps(strategy: RollbackStrategy, inputs: PlanInputs) -> list[RollbackStep]:
    """The steps that put `inputs.to_version` back with `strategy` (MANUAL: the IMMEDIATE ones).

    Raises:
        InputError: the strategy needs a router the environment lacks, or there is nowhere to
            start the old version.
    """
    if not inputs.layout:
        raise InputError(f"the target gives no slots for {inputs.service}; nowhere to start {inputs.to_version}")
    b = _Builder(inputs)
    _PLANNERS[strategy](b)
    return b.steps


def estimate(
    steps: Sequence[RollbackStep], measured: Mapping[str, Sequence[float]]
) -> tuple[list[RollbackStep], float, Literal["timeouts", "measured", "measured+timeouts"]]:
    """Give each step an estimate: the median of past durations of its action here, else its timeout.

    `measured` maps an action to the durations (seconds) of past completed steps of that action in
    the same environment. Returns (steps with estimates, total seconds, which basis was used).
    """
    out: list[RollbackStep] = []
    used: set[str] = set()
    for step in steps:
        past = [d for d in measured.get(step.action, ()) if d >= 0]
        if past:
            out.append(step.model_copy(update={"estimate": statistics.median(past), "estimate_source": "measured"}))
            used.add("measured")
        else:
            out.append(step.model_copy(update={"estimate": step.timeout, "estimate_source": "timeout"}))
            used.add("timeout")
    basis: Literal["timeouts", "measured", "measured+timeouts"]
    basis = "measured+timeouts" if len(used) == 2 else "measured" if used == {"measured"} else "timeouts"
    return out, round(sum(s.estimate for s in out), 3), basis
