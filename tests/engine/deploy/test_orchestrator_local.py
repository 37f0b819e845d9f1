"""End to end on the local target: real processes, real HTTP, real nginx (the `nginx` fixture)."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.deploy import DeploymentOrchestrator, DeploymentStatus, Environment, deploy_artifacts
from engine.deploy.history import DeploymentHistory
from engine.errors import ConflictError, InputError
from engine.events import Event
from tests.engine.deploy.helpers import APP_COMMAND, Prober, make_release, served_version
from tests.engine.deploy.nginx_fixture import NginxServer, nginx_server, ports  # noqa: F401

FAST_CHECK = {
    "type": "http",
    "url": "http://{host}:{port}/health",
    "expect_status": 200,
    "timeout": 2,
    "retries": 15,
    "interval": 0.1,
}


@pytest.fixture
def orchs() -> Iterator[list[DeploymentOrchestrator]]:
    """Orchestrators made by a test; every instance they started is stopped afterwards."""
    made: list[DeploymentOrchestrator] = []
    yield made

    async def stop_all() -> None:
        for orch in made:
            for env in orch.environments.values():
                target = orch.target_for(env)
                for inst in await target.instances(env.service_name):
                    await target.stop(inst)
            await orch.aclose()

    anyio.run(stop_all)


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _env(
    name: str,
    port_list: list[int],
    *,
    color: dict[str, list[int]] | None = None,
    router: dict[str, Any] | None = None,
    **extra: Any,
) -> Environment:
    target: dict[str, Any] = {"kind": "local", "command": APP_COMMAND, "ports": port_list}
    if color:
        target["color_ports"] = color
    return Environment.model_validate(
        {
            "name": name,
            "type": "testing",
            "target": target,
            "router": router,
            "health_checks": [FAST_CHECK],
            **extra,
        }
    )


def _setup(
    tmp_path: Path,
    orchs: list[DeploymentOrchestrator],
    server: NginxServer | None = None,
    n: int = 2,
    **extra: Any,
) -> tuple[DeploymentOrchestrator, Environment, list[int], int | None]:
    base = ports.take(n)
    color = {"blue": ports.take(n), "green": ports.take(n)}
    listen = ports.take(1)[0] if server else None
    router = server.router_config(listen) if server and listen else None
    env = _env("svc", base, color=color, router=router, **extra)
    orch = DeploymentOrchestrator(workspace_dir=tmp_path / "ws")
    orchs.append(orch)
    orch.register_environment(env)
    return orch, env, base, listen


def _deploy(orch: DeploymentOrchestrator, tmp_path: Path, version: str, strategy: str, **kw: Any) -> Any:
    bad = {k: kw.pop(k) for k in ("health_status", "crash") if k in kw}
    art = make_release(tmp_path / "artifacts", version, **bad)
    orch.create_deployment(f"svc-{version}", version, "svc", [str(art)], strategy, True, **kw)
    return orch.deploy(f"svc-{version}")


def test_the_issue_example_config_works_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orchs: list[DeploymentOrchestrator]
) -> None:
    for port in (18101, 18102, 18201, 18202):
        if not _refused(port):
            pytest.fail(f"port {port} (the issue's example) is taken by something else")
    monkeypatch.chdir(tmp_path)
    shutil.copy(Path(__file__).parent / "data" / "issue_example.yaml", tmp_path / "deployment_config.yaml")
    for v in ("1", "2"):
        d = tmp_path / "build" / f"web-{v}"
        d.mkdir(parents=True)
        (d / "health").write_text("ok\n")
        (d / "version").write_text(f"{v}\n")
    for v in ("1", "2"):
        # a fresh orchestrator each time: it must find what the earlier one started (pid records)
        orch = DeploymentOrchestrator(config_path="deployment_config.yaml", workspace_dir=tmp_path / "ws")
        orchs.append(orch)
        orch.create_deployment(
            name=f"web-{v}",
            version=v,
            environment_name="dev",
            artifacts=[f"build/web-{v}"],
            strategy="rolling",
            rollback_on_failure=True,
        )
        result = orch.deploy(f"web-{v}")
        assert result.status == DeploymentStatus.SUCCESS, result.reason
        assert served_version(18101) == v and served_version(18102) == v
    assert result.previous_version == "1" and result.version == "2"
    assert sorted(i.port for i in result.instances) == [18101, 18102]
    assert result.deployment_id and result.duration > 0 and any("health_passed" in line for line in result.logs)


@pytest.mark.nginx
@pytest.mark.parametrize("strategy", ["recreate", "rolling", "blue_green", "canary"])
def test_every_strategy_changes_the_served_version(
    tmp_path: Path, nginx: NginxServer, strategy: str, orchs: list[DeploymentOrchestrator]
) -> None:
    orch, env, base, listen = _setup(tmp_path, orchs, nginx)
    opts: dict[str, Any] = {
        "canary": {"steps": [50, 100], "analysis_window": 0.3, "probe_interval": 0.1},
        "blue_green": {"scale_down_delay": 0.2},
    }.get(strategy, {})
    first = _deploy(orch, tmp_path, "1", strategy, **opts)
    assert first.status == DeploymentStatus.SUCCESS, first.reason
    assert served_version(listen or 0) == "1"
    second = _deploy(orch, tmp_path, "2", strategy, **opts)
    assert second.status == DeploymentStatus.SUCCESS, second.reason
    assert {served_version(i.port or 0) for i in second.instances} == {"2"}
    assert {served_version(listen or 0) for _ in range(6)} == {"2"}
    old_ports = {i.port for i in first.instances} - {i.port for i in second.instances}
    assert all(_refused(p) for p in old_ports if p)
    live = DeploymentHistory(orch.store).live_release("svc", "svc")
    assert live is not None and live.version == "2"


@pytest.mark.nginx
@pytest.mark.parametrize("strategy", ["recreate", "rolling", "blue_green", "canary"])
@pytest.mark.parametrize("failure", ["health_500", "exits_at_start"])
def test_a_failing_version_is_rolled_back_and_the_old_one_answers(
    tmp_path: Path,
    nginx: NginxServer,
    strategy: str,
    failure: str,
    orchs: list[DeploymentOrchestrator],
) -> None:
    orch, env, base, listen = _setup(tmp_path, orchs, nginx)
    opts: dict[str, Any] = {
        "canary": {"steps": [50, 100], "analysis_window": 0.2, "probe_interval": 0.1},
        "blue_green": {"scale_down_delay": 0.1},
    }.get(strategy, {})
    assert _deploy(orch, tmp_path, "1", strategy, **opts).status == DeploymentStatus.SUCCESS
    bad = {"health_status": 500} if failure == "health_500" else {"crash": True}
    result = _deploy(orch, tmp_path, "2", strategy, **opts, **bad)
    assert result.status == DeploymentStatus.ROLLED_BACK, result.reason
    assert "rolled back to 1" in (result.reason or "")
    assert result.instances and {i.version for i in result.instances} == {"1"}
    assert {served_version(i.port or 0) for i in result.instances} == {"1"}
    assert {served_version(listen or 0) for _ in range(6)} == {"1"}
    history = DeploymentHistory(orch.store)
    live = history.live_release("svc", "svc")
    assert live is not None and live.version == "1"
    assert history.verified_releases("svc", "svc")[0].version == "1"
    assert history.get(result.deployment_id).status == DeploymentStatus.ROLLED_BACK


def test_a_failing_first_version_has_nothing_to_roll_back_to(
    tmp_path: Path,
    orchs: list[DeploymentOrchestrator],
) -> None:
    orch, env, base, _ = _setup(tmp_path, orchs)
    result = _deploy(orch, tmp_path, "1", "rolling", health_status=500)
    assert result.status == DeploymentStatus.FAILURE
    assert "nothing to roll back to" in (result.reason or "") and "status 500" in (result.reason or "")
    assert all(_refused(p) for p in base), "the failed version's instances must be stopped"
    assert DeploymentHistory(orch.store).live_release("svc", "svc") is None


def test_without_rollback_a_failure_is_left_as_it_is(tmp_path: Path, orchs: list[DeploymentOrchestrator]) -> None:
    orch, env, base, _ = _setup(tmp_path, orchs)
    assert _deploy(orch, tmp_path, "1", "recreate").status == DeploymentStatus.SUCCESS
    art = make_release(tmp_path / "artifacts", "2", crash=True)
    orch.create_deployment("svc-2", "2", "svc", [str(art)], "recreate", rollback_on_failure=False)
    result = orch.deploy("svc-2")
    assert result.status == DeploymentStatus.FAILURE and "rollback is off" in (result.reason or "")
    assert "crashing on purpose" in (result.reason or "")  # the instance's own output explains it


@pytest.mark.nginx
@pytest.mark.parametrize("strategy", ["rolling", "blue_green"])
def test_no_request_fails_during_a_rollout(
    tmp_path: Path, nginx: NginxServer, strategy: str, orchs: list[DeploymentOrchestrator]
) -> None:
    orch, env, base, listen = _setup(tmp_path, orchs, nginx, n=3)
    opts = {"scale_down_delay": 0.3} if strategy == "blue_green" else {}
    assert _deploy(orch, tmp_path, "1", strategy, **opts).status == DeploymentStatus.SUCCESS
    prober = Prober(f"http://127.0.0.1:{listen}/version", limit=3000)
    prober.start()
    try:
        result = _deploy(orch, tmp_path, "2", strategy, **opts)
    finally:
        prober.stop()
    assert result.status == DeploymentStatus.SUCCESS, result.reason
    assert prober.failures == [], prober.failures[:5]
    assert prober.versions["1"] > 0 and prober.versions["2"] > 0, prober.versions
    assert served_version(listen or 0) == "2"


def test_a_failing_pre_deploy_hook_changes_nothing(tmp_path: Path, orchs: list[DeploymentOrchestrator]) -> None:
    orch, env, base, _ = _setup(tmp_path, orchs)
    assert _deploy(orch, tmp_path, "1", "rolling").status == DeploymentStatus.SUCCESS
    target = orch.target_for(env)
    before = {i.slot: i.ref for i in anyio.run(target.instances, "svc")}
    orch.register_environment(
        env.model_copy(
            update={
                "pre_deploy_hooks": [
                    Environment.model_validate(
                        {"name": "x", "pre_deploy_hooks": ["echo checking; exit 4"]}
                    ).pre_deploy_hooks[0]
                ]
            }
        )
    )
    result = _deploy(orch, tmp_path, "2", "rolling")
    assert result.status == DeploymentStatus.FAILURE
    assert "pre-deploy hook 1" in (result.reason or "") and "exited 4" in (result.reason or "")
    assert "nothing was changed" in (result.reason or "")
    assert {i.slot: i.ref for i in anyio.run(target.instances, "svc")} == before
    assert {served_version(p) for p in base} == {"1"}


def test_hooks_see_the_deployment_and_a_failing_post_hook_rolls_back(
    tmp_path: Path,
    orchs: list[DeploymentOrchestrator],
) -> None:
    out = tmp_path / "hook.txt"
    orch, env, base, _ = _setup(
        tmp_path,
        orchs,
        pre_deploy_hooks=[f"echo pre $DEPLOY_VERSION >> {out}"],
        post_deploy_hooks=[f"echo post $DEPLOY_VERSION $DEPLOY_PREVIOUS_VERSION >> {out}; test $DEPLOY_VERSION != 2"],
    )
    assert _deploy(orch, tmp_path, "1", "rolling").status == DeploymentStatus.SUCCESS
    result = _deploy(orch, tmp_path, "2", "rolling")
    assert out.read_text().split("\n")[:4] == ["pre 1", "post 1", "pre 2", "post 2 1"]
    assert result.status == DeploymentStatus.ROLLED_BACK
    assert "post-deploy hook 1" in (result.reason or "")
    assert {served_version(p) for p in base} == {"1"}


@pytest.mark.anyio
async def test_a_second_deployment_in_the_same_environment_is_refused(
    tmp_path: Path,
    orchs: list[DeploymentOrchestrator],
) -> None:
    gate = tmp_path / "go"
    orch, env, base, _ = _setup(tmp_path, orchs, pre_deploy_hooks=[f"while [ ! -e {gate} ]; do sleep 0.02; done"])
    for v in ("1", "2"):
        orch.create_deployment(f"svc-{v}", v, "svc", [str(make_release(tmp_path / "a", v))], "rolling")
    waiting = anyio.Event()
    results = []

    def seen(event: Event) -> None:
        if event.kind == "hook_started":
            waiting.set()

    async def first() -> None:
        results.append(await orch.adeploy("svc-1", on_event=seen))

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await waiting.wait()
        with pytest.raises(ConflictError, match=r"'svc-1'.*in progress"):
            await orch.adeploy("svc-2")
        gate.touch()
    assert results[0].status == DeploymentStatus.SUCCESS
    # the refused one is still planned and can run now
    assert (await orch.adeploy("svc-2")).status == DeploymentStatus.SUCCESS
    assert {served_version(p) for p in base} == {"2"}


@pytest.mark.anyio
async def test_progress_events_arrive_through_the_callback(
    tmp_path: Path, orchs: list[DeploymentOrchestrator], nginx: NginxServer
) -> None:
    orch, env, base, listen = _setup(tmp_path, orchs, nginx)
    events: list[Event] = []

    async def collect(event: Event) -> None:
        events.append(event)

    orch.create_deployment("svc-1", "1", "svc", [str(make_release(tmp_path / "a", "1"))], "rolling")
    result = await orch.adeploy("svc-1", on_event=collect)
    kinds = [e.kind for e in events]
    assert kinds[0] == "deploy_started" and kinds[-1] == "deploy_finished"
    assert {"batch_started", "health_passed", "traffic_shifted"} <= set(kinds)
    assert all((e.subject, e.subject_id) == ("deployment", result.deployment_id) for e in events)
    stored = DeploymentHistory(orch.store).events(result.deployment_id)
    assert [e["kind"] for e in stored] == kinds
    assert all(s["status"] == "done" for s in DeploymentHistory(orch.store).steps(result.deployment_id))


@pytest.mark.anyio
async def test_deploy_artifacts_is_the_pipeline_entry_point(
    tmp_path: Path, orchs: list[DeploymentOrchestrator]
) -> None:
    orch, env, base, _ = _setup(tmp_path, orchs)
    seen: list[str] = []
    result = await deploy_artifacts(
        tmp_path / "ws",
        "svc",
        None,
        "7",
        [make_release(tmp_path / "a", "7")],
        "recreate",
        seen.append,
        run_id="run-1",
    )  # type: ignore[arg-type]
    assert result.status == DeploymentStatus.SUCCESS and result.name == "svc-7"
    assert {served_version(p) for p in base} == {"7"}
    assert DeploymentHistory(orch.store).get(result.deployment_id).run_id == "run-1"
    assert seen


def test_a_deployment_runs_once_and_canary_needs_a_router(tmp_path: Path, orchs: list[DeploymentOrchestrator]) -> None:
    orch, env, base, _ = _setup(tmp_path, orchs)
    assert _deploy(orch, tmp_path, "1", "recreate").status == DeploymentStatus.SUCCESS
    with pytest.raises(InputError, match="already ran"):
        orch.deploy("svc-1")
    orch.create_deployment("svc-2", "2", "svc", [str(make_release(tmp_path / "a", "2"))], "canary")
    with pytest.raises(InputError, match="needs a `router:`"):
        orch.deploy("svc-2")
    assert {served_version(p) for p in base} == {"1"}


def test_settings_give_the_default_strategy_and_rollback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orchs: list[DeploymentOrchestrator]
) -> None:
    monkeypatch.setenv("DEPLOY_STRATEGY", "recreate")
    monkeypatch.setenv("ROLLBACK_AUTO_TRIGGER", "false")
    orch, env, base, _ = _setup(tmp_path, orchs)
    rec = orch.create_deployment("svc-1", "1", "svc", [str(make_release(tmp_path / "a", "1"))])
    assert rec.strategy == "recreate" and rec.rollback_on_failure is False
    assert os.environ["DEPLOY_STRATEGY"] == "recreate"
