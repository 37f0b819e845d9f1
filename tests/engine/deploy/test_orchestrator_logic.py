"""Orchestrator logic with the in-memory FakeTarget/FakeRouter, a FakeClock and an httpx
MockTransport standing in for the instances' HTTP. These cover paths that are hard to provoke
on real processes (a router that refuses, a previous version that will not start, a stale lock);
every strategy and rollback also runs for real in test_orchestrator_local.py."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from engine._clock import FakeClock
from engine.deploy import DeploymentOrchestrator, DeploymentStatus, Environment
from engine.deploy.history import DeploymentHistory
from engine.deploy.routers.fake import FakeRouter
from engine.deploy.targets.fake import FakeTarget
from engine.store.sqlite import SQLiteStore


def build(tmp_path: Path, *, router: bool = True) -> tuple[DeploymentOrchestrator, FakeTarget, FakeRouter, FakeClock]:
    target = FakeTarget()
    fake_router = FakeRouter()
    clock = FakeClock()

    def answer(request: httpx.Request) -> httpx.Response:
        port = request.url.port
        inst = next((i for i in target.running.values() if i.port == port), None)
        if inst is None:
            raise httpx.ConnectError("connection refused", request=request)
        healthy = target.is_healthy(inst)
        budget = HEALTHY_ANSWERS.get(str(inst.version))
        if budget is not None:  # healthy for this many answers, then sick
            HEALTHY_ANSWERS[str(inst.version)] = budget - 1
            healthy = budget > 0
        return httpx.Response(200 if healthy else 500, text=str(inst.version))

    HEALTHY_ANSWERS.clear()
    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    orch = DeploymentOrchestrator(
        workspace_dir=tmp_path,
        store=SQLiteStore(tmp_path / "state.db"),
        clock=clock,
        targets={"env": target},
        routers={"env": fake_router if router else None},
        http=http,
    )
    orch.register_environment(
        Environment.model_validate(
            {
                "name": "env",
                "service": "web",
                "health_checks": [{"type": "http", "retries": 3, "interval": 1}],
            }
        )
    )
    return orch, target, fake_router, clock


HEALTHY_ANSWERS: dict[str, int] = {}


def deploy(orch: DeploymentOrchestrator, version: str, strategy: str, **options: object) -> object:
    orch.create_deployment(f"web-{version}", version, "env", ["img:" + version], strategy, True, **options)
    return orch.deploy(f"web-{version}")


def test_a_canary_failing_its_analysis_sends_all_traffic_back_to_stable(tmp_path: Path) -> None:
    orch, target, router, clock = build(tmp_path)
    assert deploy(orch, "1", "canary").status == DeploymentStatus.SUCCESS  # type: ignore[attr-defined]
    assert router.weights("web") == {"1": 2}
    HEALTHY_ANSWERS["2"] = 2  # passes its start-up health checks (one per instance), then fails
    result = deploy(orch, "2", "canary", steps=[10, 50], analysis_window=30)
    assert result.status == DeploymentStatus.ROLLED_BACK  # type: ignore[attr-defined]
    assert "analyse" in result.reason and "probes passed" in result.reason  # type: ignore[attr-defined]
    assert [dict(h[1]).get("2", 0) > 0 for h in router.history][-3:] == [True, False, False]
    assert target.serving("web") == {"1"} and router.weights("web") == {"1": 2}


def test_the_canary_analysis_window_runs_on_the_clock(tmp_path: Path) -> None:
    orch, target, router, clock = build(tmp_path)
    assert deploy(orch, "1", "blue_green").status == DeploymentStatus.SUCCESS  # type: ignore[attr-defined]
    result = deploy(orch, "2", "canary", steps=[25, 100], analysis_window=60, probe_interval=5)
    assert result.status == DeploymentStatus.SUCCESS  # type: ignore[attr-defined]
    assert clock.slept.count(5) == 12  # a 60 s window probed every 5 s, without waiting for it
    totals = []
    for _, entries in router.history:
        t: dict[str | None, int] = {}
        for version, weight in entries:
            t[version] = t.get(version, 0) + weight
        totals.append(t)
    assert {"1": 6, "2": 2} in totals  # 25 % of the traffic to the canary: 2 instances each side


def test_blue_green_scale_down_delay_is_a_clock_wait(tmp_path: Path) -> None:
    orch, target, router, clock = build(tmp_path)
    deploy(orch, "1", "blue_green")
    result = deploy(orch, "2", "blue_green", scale_down_delay=600)
    assert result.status == DeploymentStatus.SUCCESS  # type: ignore[attr-defined]
    assert 600 in clock.slept and target.serving("web") == {"2"}


def test_a_router_that_refuses_fails_the_deploy_and_the_old_version_keeps_serving(tmp_path: Path) -> None:
    orch, target, router, clock = build(tmp_path)
    deploy(orch, "1", "blue_green")
    router.fail_next = True
    result = deploy(orch, "2", "blue_green")
    assert result.status == DeploymentStatus.ROLLED_BACK  # type: ignore[attr-defined]
    assert "reload failed" in result.reason  # type: ignore[attr-defined]
    assert target.serving("web") == {"1"} and router.weights("web") == {"1": 2}


def test_when_the_old_version_cannot_come_back_the_status_says_rollback_failed(tmp_path: Path) -> None:
    orch, target, router, clock = build(tmp_path)
    deploy(orch, "1", "recreate")
    target.unhealthy.add("2")
    target.fail_start.add("1")  # recreate stopped 1; it now refuses to start again
    result = deploy(orch, "2", "recreate")
    assert result.status == DeploymentStatus.ROLLBACK_FAILED  # type: ignore[attr-defined]
    assert "rollback to 1 failed" in result.reason and "refuses to start" in result.reason  # type: ignore[attr-defined]
    history = DeploymentHistory(orch.store)
    live = history.live_release("env", "web")
    assert live is not None and live.version == "1"  # still the last verified one; nothing new was verified
    assert [s["status"] for s in history.steps(result.deployment_id)][-1] != "done"  # type: ignore[attr-defined]


def test_a_deployment_left_in_progress_by_a_dead_process_does_not_block_forever(tmp_path: Path) -> None:
    orch, target, router, clock = build(tmp_path)
    orch.create_deployment("web-1", "1", "env", ["img:1"], "recreate")
    rec = orch.history.latest_by_name("web-1")
    assert rec is not None
    orch.history.begin(rec.deployment_id, None, [])
    # pretend its owner was a process that has exited
    orch.store.execute("UPDATE deployments SET owner_pid = 999999999 WHERE deployment_id = ?", (rec.deployment_id,))
    assert deploy(orch, "2", "recreate").status == DeploymentStatus.SUCCESS  # type: ignore[attr-defined]
    stale = orch.history.get(rec.deployment_id)
    assert stale.status == DeploymentStatus.FAILURE and "interrupted" in (stale.reason or "")


@pytest.mark.parametrize("strategy", ["recreate", "rolling", "blue_green", "canary"])
def test_every_strategy_ends_with_only_the_new_version_routed(tmp_path: Path, strategy: str) -> None:
    orch, target, router, clock = build(tmp_path)
    for v in ("1", "2", "3"):
        assert deploy(orch, v, strategy).status == DeploymentStatus.SUCCESS  # type: ignore[attr-defined]
        assert target.serving("web") == {v}
        assert set(router.weights("web")) == {v}
