"""The pure rollout planner: plans as data, checked step by step."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.deploy.strategies import (
    Analyze,
    Start,
    Stop,
    Traffic,
    Verify,
    Wait,
    parse_options,
    plan,
    plan_restore,
    traffic_weights,
    without_slots,
)
from engine.deploy.targets.base import Instance
from engine.errors import InputError


def slots(ports: list[int], color: str | None = None) -> list[Instance]:
    return [Instance(service="web", slot=str(p), port=p, color=color) for p in ports]


LAYOUT: dict[str | None, list[Instance]] = {
    None: slots([1, 2, 3, 4]),
    "blue": slots([1, 2, 3, 4], "blue"),
    "green": slots([11, 12, 13, 14], "green"),
}


def running(version: str, layout: list[Instance]) -> list[Instance]:
    return [replace(s, version=version, ref=f"r{s.slot}") for s in layout]


def kinds(p: object) -> list[str]:
    return [type(s).__name__ for s in p.steps]  # type: ignore[attr-defined]


def test_recreate_stops_everything_then_starts_verifies_and_routes() -> None:
    current = running("1", LAYOUT[None])
    p = plan("recreate", "2", current=current, layout=LAYOUT, has_router=True)
    assert p.steps == (
        Stop(tuple(current)),
        Start(tuple(LAYOUT[None]), "2"),
        Verify(("1", "2", "3", "4")),
        Traffic(),
    )


def test_rolling_drains_replaces_and_gates_each_batch() -> None:
    current = running("1", LAYOUT[None])
    p = plan(
        "rolling",
        "2",
        current=current,
        layout=LAYOUT,
        has_router=True,
        options={"batch_size": 2, "max_unavailable": 3},
    )
    assert p.steps == (
        Traffic(drain=frozenset({"1", "2"})),
        Stop(tuple(current[:2])),
        Start(tuple(LAYOUT[None][:2]), "2"),
        Verify(("1", "2")),
        Traffic(),
        Traffic(drain=frozenset({"3", "4"})),
        Stop(tuple(current[2:])),
        Start(tuple(LAYOUT[None][2:]), "2"),
        Verify(("3", "4")),
        Traffic(),
    )


@pytest.mark.parametrize(
    ("batch", "unavailable", "expected_batches"),
    [(1, 1, 4), (3, 1, 4), (2, "50%", 2), ("100%", 4, 1), ("25%", "100%", 4), (3, 3, 2)],
)
def test_rolling_batch_is_the_smaller_of_batch_size_and_max_unavailable(
    batch: int | str,
    unavailable: int | str,
    expected_batches: int,
) -> None:
    p = plan(
        "rolling",
        "2",
        current=running("1", LAYOUT[None]),
        layout=LAYOUT,
        has_router=False,
        options={"batch_size": batch, "max_unavailable": unavailable},
    )
    assert sum(isinstance(s, Verify) for s in p.steps) == expected_batches
    assert "Traffic" not in kinds(p)


def test_rolling_first_deploy_and_leftover_colour_instances() -> None:
    assert kinds(plan("rolling", "1", current=[], layout=LAYOUT, has_router=False)) == ["Start", "Verify"] * 4
    green = running("1", LAYOUT["green"])
    p = plan(
        "rolling",
        "2",
        current=green,
        layout=LAYOUT,
        has_router=True,
        options={"batch_size": 4, "max_unavailable": 4},
    )
    # the green instances keep serving until the default slots are up, then are drained and stopped
    assert p.steps[-3:] == (Traffic(drain=frozenset({"11", "12", "13", "14"})), Stop(tuple(green)), Traffic())
    assert isinstance(p.steps[0], Start)


def test_blue_green_starts_the_free_colour_switches_waits_then_stops_the_old() -> None:
    blue = running("1", LAYOUT["blue"])
    p = plan("blue_green", "2", current=blue, layout=LAYOUT, has_router=True, options={"scale_down_delay": 5})
    assert p.color == "green"
    assert p.steps == (
        Start(tuple(LAYOUT["green"]), "2"),
        Verify(("11", "12", "13", "14")),
        Traffic(version="2", percent=100),
        Wait(5, p.steps[3].why),
        Stop(tuple(blue)),  # type: ignore[union-attr]
        Traffic(),
    )
    back = plan("blue_green", "3", current=running("2", LAYOUT["green"]), layout=LAYOUT, has_router=True)
    assert back.color == "blue"


def test_blue_green_after_a_rolling_deploy_uses_the_colour_whose_ports_are_free() -> None:
    plain = running("1", LAYOUT[None])  # occupies 1-4, which are also blue's ports
    assert plan("blue_green", "2", current=plain, layout=LAYOUT, has_router=False).color == "green"
    both = [*running("1", LAYOUT[None]), *running("1", LAYOUT["green"])]
    with pytest.raises(InputError, match="no free colour"):
        plan("blue_green", "2", current=both, layout=LAYOUT, has_router=False)


@pytest.mark.parametrize("strategy", ["blue_green", "canary"])
def test_a_colour_left_by_a_failed_version_is_evicted_before_the_new_one_starts_there(strategy: str) -> None:
    """After a deployment whose rollback failed, the idle colour still runs the failed version;
    the next deployment clears that colour first (out of the router, stopped), as a new preview
    replaces the old one. Without the live version it cannot tell which colour serves: refused."""
    live = running("1", LAYOUT["blue"])
    leftovers = running("2", LAYOUT["green"])
    p = plan(strategy, "3", current=[*live, *leftovers], layout=LAYOUT, has_router=True, live_version="1")
    assert p.color == "green"
    assert p.steps[:3] == (
        Traffic(drain=frozenset({"11", "12", "13", "14"})),
        Stop(tuple(leftovers)),
        Start(tuple(LAYOUT["green"]), "3"),
    )
    stops = [step for step in p.steps[2:] if isinstance(step, Stop)]
    assert stops == [Stop(tuple(live))]  # the old colour, retired at the end as usual
    with pytest.raises(InputError, match="no free colour"):
        plan(strategy, "3", current=[*live, *leftovers], layout=LAYOUT, has_router=True)
    with pytest.raises(InputError, match="no free colour"):  # neither colour holds the live version
        plan(strategy, "3", current=[*live, *leftovers], layout=LAYOUT, has_router=True, live_version="0")


def test_canary_shifts_weights_step_by_step_with_analysis() -> None:
    blue = running("1", LAYOUT["blue"])
    p = plan(
        "canary",
        "2",
        current=blue,
        layout=LAYOUT,
        has_router=True,
        options={"steps": [10, 50], "analysis_window": 30, "success_rate": 0.95},
    )
    assert kinds(p) == [
        "Start",
        "Verify",
        "Traffic",
        "Analyze",
        "Traffic",
        "Analyze",
        "Traffic",
        "Stop",
        "Traffic",
    ]
    analyses = [s for s in p.steps if isinstance(s, Analyze)]
    assert [(a.percent, a.seconds, a.success_rate) for a in analyses] == [(10, 30, 0.95), (50, 30, 0.95)]
    assert [s.percent for s in p.steps if isinstance(s, Traffic) and s.version] == [10, 50, 100]
    with pytest.raises(InputError, match="needs a `router:`"):
        plan("canary", "2", current=blue, layout=LAYOUT, has_router=False)


@pytest.mark.parametrize(
    ("strategy", "options", "message"),
    [
        ("rolling", {"batch_size": 0}, "batch_size"),
        ("rolling", {"batch_size": "150%"}, "batch_size"),
        ("rolling", {"surge": 1}, "surge"),
        ("canary", {"steps": [50, 10]}, "increase"),
        ("canary", {"success_rate": 2}, "success_rate"),
        ("blue_green", {"scale_down_delay": -1}, "scale_down_delay"),
        ("big_bang", {}, "unknown strategy 'big_bang'"),
    ],
)
def test_bad_options_are_refused_naming_the_option(strategy: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_options(strategy, options)


def test_traffic_weights_split_by_percentage_and_drain() -> None:
    old = running("1", slots([1, 2, 3]))
    new = running("2", slots([11]))
    w = {i.slot: wt for i, wt in traffic_weights(Traffic("2", 10), [*old, *new])}
    total_new = w["11"]
    total_old = w["1"] + w["2"] + w["3"]
    assert total_new * 90 == total_old * 10
    assert {i.slot: wt for i, wt in traffic_weights(Traffic("2", 100), [*old, *new])} == {
        "1": 0,
        "2": 0,
        "3": 0,
        "11": 1,
    }
    assert {i.slot: wt for i, wt in traffic_weights(Traffic(drain=frozenset({"2"})), old)} == {
        "1": 1,
        "2": 0,
        "3": 1,
    }
    dead = replace(old[0], alive=False)
    assert [i.slot for i, _ in traffic_weights(Traffic(), [dead, *old[1:]])] == ["2", "3"]


def test_restore_keeps_healthy_old_instances_and_refills_the_rest() -> None:
    blue = running("1", LAYOUT["blue"])
    green = running("2", LAYOUT["green"][:2])
    live = [*blue[:2], replace(blue[2], alive=False), *green]
    p = plan_restore("1", live=live, layout=LAYOUT["blue"], has_router=True)
    assert p.steps[0] == Traffic(version="1", percent=100)
    stop = p.steps[1]
    assert isinstance(stop, Stop) and {i.slot for i in stop.instances} == {"3", "11", "12"}
    start = p.steps[2]
    assert isinstance(start, Start) and [s.slot for s in start.slots] == ["3", "4"] and start.version == "1"
    assert p.steps[3] == Verify(("1", "2", "3", "4")) and p.steps[4] == Traffic()


def test_without_slots_leaves_skipped_slots_alone_and_drops_empty_steps() -> None:
    old = running("1", LAYOUT[None][:2])
    p = plan("rolling", "2", current=old, layout={**LAYOUT, None: LAYOUT[None][:2]}, has_router=True)
    kept = without_slots(p, {"1"})
    touched = {
        *(s.slot for step in kept.steps if isinstance(step, Start) for s in step.slots),
        *(i.slot for step in kept.steps if isinstance(step, Stop) for i in step.instances),
        *(x for step in kept.steps if isinstance(step, Verify) for x in step.slots),
        *(x for step in kept.steps if isinstance(step, Traffic) for x in step.drain),
    }
    assert touched == {"2"}
    assert len(kept.steps) < len(p.steps) and kept.steps[-1] == p.steps[-1]
    assert without_slots(p, set()) == p
