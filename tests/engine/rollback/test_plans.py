"""The pure planner: steps on concrete instances per strategy, estimates, runbooks."""

from __future__ import annotations

from typing import Any

import pytest

from engine.deploy.targets.base import Instance
from engine.errors import InputError
from engine.rollback._runbook import RunbookContext, render_runbook
from engine.rollback.plans import (
    ACTIONS,
    PlanInputs,
    RollbackPlan,
    RollbackStrategy,
    build_steps,
    estimate,
    parse_strategy,
)


def inst(slot: str, version: str | None, color: str | None = None, ref: str | None = None) -> Instance:
    return Instance(
        service="web", slot=slot, port=int(slot.split("-")[-1]), color=color, version=version, ref=ref or f"r{slot}"
    )


def inputs(current: list[Instance], layout: list[Instance], *, router: bool = True, batch: int = 1) -> PlanInputs:
    return PlanInputs(
        deployment_id="d-2",
        environment="prod",
        service="web",
        from_version="2",
        to_version="1",
        to_deployment_id="d-1",
        target_kind="docker",
        current=current,
        layout=layout,
        has_router=router,
        batch_size=batch,
    )


SAME_SLOTS = inputs([inst("s-1", "2"), inst("s-2", "2")], [inst("s-1", "1"), inst("s-2", "1")])


def names(steps: Any) -> list[tuple[str, str, list[str]]]:
    return [(s.name, s.action, s.targets) for s in steps]


def test_immediate_stops_restores_restarts_verifies_and_routes() -> None:
    steps = build_steps(RollbackStrategy.IMMEDIATE, SAME_SLOTS)
    assert names(steps) == [
        ("stop_services", "stop_instances", ["2@s-1", "2@s-2"]),
        ("restore_backup", "prepare_release", ["1"]),
        ("restart_services", "start_release", ["s-1", "s-2"]),
        ("verify_health", "verify_health", ["s-1", "s-2"]),
        ("switch_traffic", "route_traffic", ["all running instances"]),
    ]
    stop = steps[0]
    assert [i["ref"] for i in stop.params["instances"]] == ["rs-1", "rs-2"]
    assert all(s.timeout > 0 and s.retries >= 0 for s in steps)


def test_immediate_without_a_router_has_no_traffic_step_and_keeps_healthy_old_instances() -> None:
    plan = inputs([inst("s-1", "1"), inst("s-2", "2")], [inst("s-1", "1"), inst("s-2", "1")], router=False)
    steps = build_steps(RollbackStrategy.IMMEDIATE, plan)
    assert names(steps) == [
        ("stop_services", "stop_instances", ["2@s-2"]),
        ("restore_backup", "prepare_release", ["1"]),
        ("restart_services", "start_release", ["s-2"]),
        ("verify_health", "verify_health", ["s-1", "s-2"]),
    ]


def test_rolling_goes_batch_by_batch() -> None:
    steps = build_steps(RollbackStrategy.ROLLING, SAME_SLOTS)
    assert [s.name for s in steps] == [
        "restore_backup",
        "batch 1: drain",
        "batch 1: stop_services",
        "batch 1: restart_services",
        "batch 1: verify_health",
        "batch 1: route",
        "batch 2: drain",
        "batch 2: stop_services",
        "batch 2: restart_services",
        "batch 2: verify_health",
        "batch 2: route",
    ]
    assert steps[1].params["drain"] == ["s-1"]
    two = build_steps(RollbackStrategy.ROLLING, inputs(SAME_SLOTS.current, SAME_SLOTS.layout, batch=2))
    assert [s.targets for s in two if s.action == "start_release"] == [["s-1", "s-2"]]


def test_blue_green_restarts_the_old_colour_switches_back_and_retires_the_new() -> None:
    plan = inputs(
        [inst("green-1", "2", "green"), inst("green-2", "2", "green")],
        [inst("blue-1", "1", "blue"), inst("blue-2", "1", "blue")],
    )
    steps = build_steps(RollbackStrategy.BLUE_GREEN, plan)
    assert names(steps) == [
        ("restore_backup", "prepare_release", ["1"]),
        ("start_old_color", "start_release", ["blue-1", "blue-2"]),
        ("verify_old_color", "verify_health", ["blue-1", "blue-2"]),
        ("switch_traffic", "route_traffic", ["all traffic to 1"]),
        ("verify_health", "verify_health", ["blue-1", "blue-2"]),
        ("retire_new_color", "stop_instances", ["2@green-1", "2@green-2"]),
        ("route", "route_traffic", ["all running instances"]),
    ]
    assert steps[3].params == {"version": "1", "percent": 100, "drain": []}


def test_blue_green_with_the_old_colour_still_up_does_not_start_it() -> None:
    plan = inputs([inst("blue-1", "1", "blue"), inst("green-1", "2", "green")], [inst("blue-1", "1", "blue")])
    assert "start_old_color" not in [s.name for s in build_steps(RollbackStrategy.BLUE_GREEN, plan)]


def test_canary_sets_the_weight_to_zero_verifies_stable_and_removes_the_canary() -> None:
    plan = inputs([inst("blue-1", "1", "blue"), inst("green-1", "2", "green")], [inst("blue-1", "1", "blue")])
    assert names(build_steps(RollbackStrategy.CANARY, plan)) == [
        ("restore_backup", "prepare_release", ["1"]),
        ("canary_weight_zero", "route_traffic", ["all traffic to 1"]),
        ("verify_stable", "verify_health", ["blue-1"]),
        ("remove_canary", "stop_instances", ["2@green-1"]),
        ("route", "route_traffic", ["all running instances"]),
    ]


@pytest.mark.parametrize("strategy", [RollbackStrategy.BLUE_GREEN, RollbackStrategy.CANARY])
def test_traffic_strategies_need_a_router(strategy: RollbackStrategy) -> None:
    with pytest.raises(InputError, match="router"):
        build_steps(strategy, inputs(SAME_SLOTS.current, SAME_SLOTS.layout, router=False))


def test_strategy_names_are_parsed_and_unknown_ones_listed() -> None:
    assert parse_strategy("Blue-Green") is RollbackStrategy.BLUE_GREEN
    with pytest.raises(InputError, match="immediate, rolling, blue_green, canary, manual"):
        parse_strategy("sideways")


def test_estimate_uses_measured_medians_where_it_has_them_and_says_so() -> None:
    steps = build_steps(RollbackStrategy.IMMEDIATE, SAME_SLOTS)
    timed, total, basis = estimate(steps, {})
    assert basis == "timeouts" and total == pytest.approx(sum(s.timeout for s in steps))
    assert {s.estimate_source for s in timed} == {"timeout"}
    timed, total, basis = estimate(steps, {"start_release": [1.0, 3.0, 2.0], "stop_instances": [0.5]})
    assert basis == "measured+timeouts"
    by_name = {s.name: s for s in timed}
    assert (by_name["restart_services"].estimate, by_name["restart_services"].estimate_source) == (2.0, "measured")
    assert by_name["verify_health"].estimate_source == "timeout"
    measured = {a: [1.0] for a in ACTIONS}
    assert estimate(steps, measured)[1:] == (5.0, "measured")


def test_a_docker_runbook_names_the_exact_commands_and_is_not_executable() -> None:
    steps = build_steps(RollbackStrategy.MANUAL, SAME_SLOTS)
    plan = RollbackPlan(
        plan_id="rb-1",
        deployment_id="d-2",
        environment="prod",
        service="web",
        strategy=RollbackStrategy.MANUAL,
        reason="bad release",
        from_version="2",
        to_version="1",
        to_deployment_id="d-1",
        to_artifacts=["svc:v1"],
        target_kind="docker",
        steps=steps,
        executable=False,
        estimated_duration=10,
    )
    text = render_runbook(plan, RunbookContext(target={"kind": "docker", "base_url": "unix:///run/d.sock"}))
    assert "not executable" in text
    assert "docker -H unix:///run/d.sock stop -t 10 rs-1; docker -H unix:///run/d.sock rm -f rs-1" in text
    assert "--label io.cicd-mcp.version=1 --label io.cicd-mcp.deployment-id=d-1" in text
    assert "-p 127.0.0.1:1:8080/tcp svc:v1" in text
    assert text.count("```bash") == len(steps)


def _liveness(**over: Any) -> Any:
    from engine.rollback.plans import liveness

    args: dict[str, Any] = {
        "deployment_id": "d-3", "version": "3", "status": "success", "newest": True, "live_version": "3",
        "live_deployment_id": "d-3", "live_since": 1_800_000_000.0, "running": ["3"], "to_version": "2",
    }
    return liveness(**(args | over))


def test_a_deployment_the_releases_record_names_is_live() -> None:
    state = _liveness()
    assert (state.from_version, state.live, state.warning) == ("3", True, None)


def test_the_newest_deployment_that_failed_is_what_runs_though_never_recorded_live() -> None:
    state = _liveness(status="failure", live_version="2", live_deployment_id="d-2", running=["2", "3"])
    assert (state.from_version, state.live, state.warning) == ("3", True, None)


def test_a_rolled_back_deployment_planned_while_an_older_version_is_live_warns_of_a_roll_forward() -> None:
    state = _liveness(status="rolled_back", newest=False, live_version="1", live_deployment_id="d-1", running=["1"])
    assert (state.from_version, state.live) == ("1", False)
    assert state.warning == (
        "deployment d-3 (version 3, rolled_back) is not live: version 1 is (deployment d-1 since "
        "2027-01-15T08:00:00Z); this plan would replace 1 with 2, not undo d-3; execute it only with force=true"
    )


def test_a_plan_back_to_what_is_already_live_says_it_changes_nothing() -> None:
    state = _liveness(status="rolled_back", live_version="2", live_deployment_id="d-2", running=["2"])
    assert not state.live and "2 is already live" in (state.warning or "")


def test_with_nothing_recorded_live_the_plan_names_what_runs() -> None:
    state = _liveness(status="rolled_back", live_version=None, live_deployment_id=None, live_since=None,
                      running=["1"])
    assert state.from_version == "1" and "no version is recorded live (1 runs)" in (state.warning or "")
