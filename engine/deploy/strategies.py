"""Rollout strategies as plans of steps: pure functions from (what runs now, where instances
may go, options) to a sequence of steps. The orchestrator executes the steps; nothing here
touches the world.

Theory of operation
-------------------
A *slot* is a place an instance can run (see `targets.base`); two instances never share one.
`Start` fills slots with a version, `Stop` empties them, `Verify` health-gates the instances in
slots, `Traffic` tells the router how to split traffic among what runs, `Wait` holds, and
`Analyze` probes instances for a window and demands a success rate.

* recreate:   stop everything, start everything, verify, route.
* rolling:    per batch of default slots: drain the batch, stop its occupants, start the new
              version there, verify, route to it again. Batch = min(batch_size, max_unavailable).
* blue_green: start the new version in the colour not in use, verify, switch all traffic to it
              (old colour kept drained for `scale_down_delay`), stop the old colour.
* canary:     start the new version in the free colour, verify, then for each weight step route
              that share of traffic to it and analyse; at 100 stop the old version.

`plan_restore` is the plan that puts a previous version back after a failure: route to what
still serves that version, stop the failed version, start the previous one where it is
missing, verify it all, route to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.deploy.targets.base import COLORS, Instance, other_color
from engine.errors import InputError

__all__ = [
    "STRATEGIES",
    "Analyze",
    "BlueGreenOptions",
    "CanaryOptions",
    "Plan",
    "RecreateOptions",
    "RollingOptions",
    "Start",
    "Step",
    "Stop",
    "Traffic",
    "Verify",
    "Wait",
    "describe",
    "parse_options",
    "plan",
    "plan_restore",
    "traffic_weights",
    "without_slots",
]


# -- steps ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Start:
    """Start `version` in each of `slots`."""

    slots: tuple[Instance, ...]
    version: str


@dataclass(frozen=True)
class Stop:
    """Stop these instances."""

    instances: tuple[Instance, ...]


@dataclass(frozen=True)
class Verify:
    """Health-check the instances now in these slots (by slot id); all must pass."""

    slots: tuple[str, ...]


@dataclass(frozen=True)
class Traffic:
    """Route traffic among the running instances.

    version None: equal weights for all. Otherwise `version`'s instances share `percent` of the
    traffic and the rest share what is left. Instances in `drain` get none (kept as backups).
    """

    version: str | None = None
    percent: int | None = None
    drain: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Wait:
    seconds: float
    why: str


@dataclass(frozen=True)
class Analyze:
    """Probe the instances in `slots` for `seconds`; the success rate must reach `success_rate`."""

    slots: tuple[str, ...]
    seconds: float
    success_rate: float
    interval: float
    percent: int


Step = Start | Stop | Verify | Traffic | Wait | Analyze


@dataclass(frozen=True)
class Plan:
    strategy: str
    version: str
    color: str | None
    steps: tuple[Step, ...]


def describe(step: Step) -> tuple[str, str]:
    """(kind, one-line description) of a step, for logs and the store."""
    if isinstance(step, Start):
        return "start", f"start {step.version} on {', '.join(s.slot for s in step.slots)}"
    if isinstance(step, Stop):
        return "stop", "stop " + ", ".join(f"{i.version}@{i.slot}" for i in step.instances)
    if isinstance(step, Verify):
        return "verify", f"health-check {', '.join(step.slots)}"
    if isinstance(step, Traffic):
        if step.version is None:
            what = "route to all running instances"
        else:
            what = f"route {step.percent}% of traffic to {step.version}"
        if step.drain:
            what += f", draining {', '.join(sorted(step.drain))}"
        return "traffic", what
    if isinstance(step, Wait):
        return "wait", f"wait {step.seconds:g}s ({step.why})"
    return "analyze", (
        f"analyse {', '.join(step.slots)} at {step.percent}% for {step.seconds:g}s, "
        f"need {step.success_rate:.0%} success"
    )


# -- options -------------------------------------------------------------------------------------
class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecreateOptions(_Options):
    pass


def _count_or_percent(v: Any) -> Any:
    if isinstance(v, str) and v.endswith("%"):
        try:
            pct = float(v[:-1])
        except ValueError:
            raise ValueError(f"{v!r} is not a count or a percentage") from None
        if not 0 < pct <= 100:
            raise ValueError("a percentage must be in (0, 100]")
    elif not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{v!r} is not a positive count or a percentage like '25%'")
    return v


def _resolve(v: int | str, total: int) -> int:
    if isinstance(v, str):
        return max(1, math.floor(total * float(v[:-1]) / 100))
    return v


class RollingOptions(_Options):
    batch_size: int | str = Field(default=1, description="Instances replaced at once (count or '25%').")
    max_unavailable: int | str = Field(default=1, description="Instances allowed down at once (count or %).")

    @field_validator("batch_size", "max_unavailable", mode="before")
    @classmethod
    def _check(cls, v: Any) -> Any:
        return _count_or_percent(v)


class BlueGreenOptions(_Options):
    scale_down_delay: float = Field(
        default=2.0,
        ge=0,
        le=24 * 3600,
        description="Seconds the old colour stays up after the switch.",
    )


class CanaryOptions(_Options):
    steps: list[int] = Field(default=[10, 50, 100], min_length=1, description="Traffic percentages in order.")
    analysis_window: float = Field(default=10.0, ge=0, le=24 * 3600, description="Seconds each step is held.")
    success_rate: float = Field(default=0.99, ge=0, le=1, description="Share of probes that must pass.")
    probe_interval: float = Field(default=0.5, gt=0, le=600, description="Seconds between analysis probes.")

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if any(not 0 < p <= 100 for p in v):
            raise ValueError("each step is a percentage in 1..100")
        if any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError("steps must increase")
        return v if v[-1] == 100 else [*v, 100]


Planner = Callable[..., Plan]


@dataclass(frozen=True)
class StrategyEntry:
    options: type[_Options]
    planner: Planner
    needs_router: bool = False


def parse_options(strategy: str, raw: Mapping[str, Any]) -> _Options:
    """Validate strategy options.

    Raises:
        InputError: unknown strategy or invalid option (named).
    """
    entry = _entry(strategy)
    try:
        return entry.options.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors())
        raise InputError(f"strategy {strategy!r}: {problems}") from None


def _entry(strategy: str) -> StrategyEntry:
    try:
        return STRATEGIES[strategy]
    except KeyError:
        raise InputError(f"unknown strategy {strategy!r} (known: {', '.join(sorted(STRATEGIES))})") from None


# -- planners ------------------------------------------------------------------------------------
def _occupants(current: Sequence[Instance], slots: Sequence[Instance]) -> list[Instance]:
    ids = {s.slot for s in slots}
    return [i for i in current if i.slot in ids]


def _plan_recreate(
    version: str,
    current: Sequence[Instance],
    layout: Mapping[str | None, Sequence[Instance]],
    has_router: bool,
    options: RecreateOptions,
) -> Plan:
    slots = tuple(layout[None])
    steps: list[Step] = []
    if current:
        steps.append(Stop(tuple(current)))
    steps += [Start(slots, version), Verify(tuple(s.slot for s in slots))]
    if has_router:
        steps.append(Traffic())
    return Plan("recreate", version, None, tuple(steps))


def _plan_rolling(
    version: str,
    current: Sequence[Instance],
    layout: Mapping[str | None, Sequence[Instance]],
    has_router: bool,
    options: RollingOptions,
) -> Plan:
    slots = list(layout[None])
    size = min(_resolve(options.batch_size, len(slots)), _resolve(options.max_unavailable, len(slots)))
    size = max(1, size)
    steps: list[Step] = []
    for start in range(0, len(slots), size):
        batch = slots[start : start + size]
        ids = frozenset(s.slot for s in batch)
        occupants = _occupants(current, batch)
        if has_router and occupants:
            steps.append(Traffic(drain=ids))
        if occupants:
            steps.append(Stop(tuple(occupants)))
        steps += [Start(tuple(batch), version), Verify(tuple(s.slot for s in batch))]
        if has_router:
            steps.append(Traffic())
    leftovers = [i for i in current if i.slot not in {s.slot for s in slots}]
    if leftovers:
        if has_router:
            steps.append(Traffic(drain=frozenset(i.slot for i in leftovers)))
        steps.append(Stop(tuple(leftovers)))
        if has_router:
            steps.append(Traffic())
    return Plan("rolling", version, None, tuple(steps))


def _free_color(current: Sequence[Instance], layout: Mapping[str | None, Sequence[Instance]]) -> str:
    """The colour to start the new version in: not the one in use, and with no slot occupied."""
    in_use = {i.color for i in current if i.color}
    preferred = other_color(next(iter(in_use))) if len(in_use) == 1 else "blue"
    occupied = {i.slot for i in current}
    for color in (preferred, other_color(preferred)):
        if color in in_use:
            continue
        if not occupied & {s.slot for s in layout[color]}:
            return color
    raise InputError(
        "no free colour: both the blue and the green slots are in use "
        f"({', '.join(sorted(occupied))}); run a recreate or rolling deploy first"
    )


def _plan_blue_green(
    version: str,
    current: Sequence[Instance],
    layout: Mapping[str | None, Sequence[Instance]],
    has_router: bool,
    options: BlueGreenOptions,
) -> Plan:
    color = _free_color(current, layout)
    slots = tuple(layout[color])
    steps: list[Step] = [Start(slots, version), Verify(tuple(s.slot for s in slots))]
    if has_router:
        steps.append(Traffic(version=version, percent=100))
    if current:
        if options.scale_down_delay:
            steps.append(Wait(options.scale_down_delay, "scale_down_delay: old colour kept as fallback"))
        steps.append(Stop(tuple(current)))
    if has_router:
        steps.append(Traffic())
    return Plan("blue_green", version, color, tuple(steps))


def _plan_canary(
    version: str,
    current: Sequence[Instance],
    layout: Mapping[str | None, Sequence[Instance]],
    has_router: bool,
    options: CanaryOptions,
) -> Plan:
    color = _free_color(current, layout)
    slots = tuple(layout[color])
    ids = tuple(s.slot for s in slots)
    steps: list[Step] = [Start(slots, version), Verify(ids)]
    for pct in options.steps:
        steps.append(Traffic(version=version, percent=pct))
        if pct < 100 and current:
            steps.append(Analyze(ids, options.analysis_window, options.success_rate, options.probe_interval, pct))
    if current:
        steps.append(Stop(tuple(current)))
    steps.append(Traffic())
    return Plan("canary", version, color, tuple(steps))


STRATEGIES: dict[str, StrategyEntry] = {
    "recreate": StrategyEntry(RecreateOptions, _plan_recreate),
    "rolling": StrategyEntry(RollingOptions, _plan_rolling),
    "blue_green": StrategyEntry(BlueGreenOptions, _plan_blue_green),
    "canary": StrategyEntry(CanaryOptions, _plan_canary, needs_router=True),
}


def plan(
    strategy: str,
    version: str,
    *,
    current: Sequence[Instance],
    layout: Mapping[str | None, Sequence[Instance]],
    has_router: bool,
    options: Mapping[str, Any] | None = None,
    live_version: str | None = None,
) -> Plan:
    """The steps that take a service from `current` to `version` with `strategy`.

    `layout` maps None (the ordinary slots) and each colour to the target's slots. `live_version`
    is the version recorded live (verified): for blue-green and canary, when both colours are
    occupied and one holds no instance of it (what a failed deployment whose rollback also failed
    leaves behind), that colour's instances are taken out of the router and stopped first, and the
    new version starts there, as a new preview replaces the old one.

    Raises:
        InputError: unknown strategy, bad options, no free colour, or canary without a router.
    """
    entry = _entry(strategy)
    opts = parse_options(strategy, options or {})
    if entry.needs_router and not has_router:
        raise InputError(f"strategy {strategy!r} shifts traffic by weight and needs a `router:` in the environment")
    for key in (None, *COLORS):
        if key not in layout and (key is None or strategy in ("blue_green", "canary")):
            raise InputError(f"the target gives no {'default' if key is None else key} slots")
    stale = _stale_colour(current, layout, live_version) if strategy in ("blue_green", "canary") else []
    if not stale:
        return entry.planner(version, current, layout, has_router, opts)
    keep = [i for i in current if i not in stale]
    inner = entry.planner(version, keep, layout, has_router, opts)
    evict: list[Step] = [Stop(tuple(stale))]
    if has_router:
        evict.insert(0, Traffic(drain=frozenset(i.slot for i in stale)))
    return replace(inner, steps=(*evict, *inner.steps))


def without_slots(the_plan: Plan, skip: set[str]) -> Plan:
    """`the_plan` with the slots in `skip` left alone: nothing started, stopped, verified or
    probed there (a host that could not be prepared keeps what it runs, as Ansible leaves a
    failed host out of the rest of the play). Steps left empty are dropped."""
    steps: list[Step] = []
    for step in the_plan.steps:
        if isinstance(step, Start):
            slots = tuple(s for s in step.slots if s.slot not in skip)
            if slots:
                steps.append(replace(step, slots=slots))
        elif isinstance(step, Stop):
            instances = tuple(i for i in step.instances if i.slot not in skip)
            if instances:
                steps.append(replace(step, instances=instances))
        elif isinstance(step, Verify | Analyze):
            ids = tuple(s for s in step.slots if s not in skip)
            if ids:
                steps.append(replace(step, slots=ids))
        elif isinstance(step, Traffic) and step.drain:
            drain = step.drain - skip
            if drain:  # a step that only drained skipped slots has nothing left to do
                steps.append(replace(step, drain=drain))
        else:
            steps.append(step)
    return replace(the_plan, steps=tuple(steps))


def _stale_colour(
    current: Sequence[Instance], layout: Mapping[str | None, Sequence[Instance]], live_version: str | None
) -> list[Instance]:
    """The instances of the colour that holds no live instance, when both colours are occupied
    and the other one does; else none."""
    if live_version is None:
        return []
    by_colour: dict[str, list[Instance]] = {}
    for color in COLORS:
        slots = {s.slot for s in layout[color]}
        by_colour[color] = [i for i in current if i.slot in slots]
    if not all(by_colour.values()):
        return []  # a colour is free: nothing to evict
    live = [c for c in COLORS if any(i.version == live_version for i in by_colour[c])]
    if len(live) != 1:
        return []
    (stale_colour,) = [c for c in COLORS if c not in live]
    return by_colour[stale_colour]


def plan_restore(
    version: str,
    *,
    live: Sequence[Instance],
    layout: Sequence[Instance],
    has_router: bool,
) -> Plan:
    """The steps that put `version` back: keep its healthy instances, stop the others, refill `layout`.

    `layout` is where `version` ran before (its slots), or the default slots when that is unknown.
    """
    keep = [i for i in live if i.version == version and i.alive]
    others = [i for i in live if not (i.version == version and i.alive)]
    kept_slots = {i.slot for i in keep}
    missing = tuple(s for s in layout if s.slot not in kept_slots)
    steps: list[Step] = []
    if has_router and keep:
        steps.append(Traffic(version=version, percent=100))
    if others:
        steps.append(Stop(tuple(others)))
    if missing:
        steps.append(Start(missing, version))
    slots = tuple(dict.fromkeys([*(i.slot for i in keep), *(s.slot for s in missing)]))
    steps.append(Verify(slots))
    if has_router:
        steps.append(Traffic())
    color = next((s.color for s in layout if s.color), None)
    return Plan("restore", version, color, tuple(steps))


# -- traffic -------------------------------------------------------------------------------------
def traffic_weights(step: Traffic, running: Sequence[Instance]) -> list[tuple[Instance, int]]:
    """Integer weights per running instance for a Traffic step (0 = drained).

    With a percentage, the favoured version's instances share `percent` and the others share
    the rest; weights are scaled so each side's total is exact, then reduced by their gcd.
    """
    live = [i for i in running if i.alive]
    serving = [i for i in live if i.slot not in step.drain]
    if step.version is None or step.percent is None:
        return [(i, 1 if i in serving else 0) for i in live]
    favoured = [i for i in serving if i.version == step.version]
    rest = [i for i in serving if i.version != step.version]
    pct = step.percent if rest else 100
    if not favoured:
        pct = 0
    per_fav = pct * max(1, len(rest))
    per_rest = (100 - pct) * max(1, len(favoured))
    g = math.gcd(per_fav, per_rest) or 1
    weights: dict[str, int] = {}
    for i in favoured:
        weights[i.slot] = per_fav // g
    for i in rest:
        weights[i.slot] = per_rest // g
    return [(i, weights.get(i.slot, 0)) for i in live]
