"""End to end on the real targets: the orchestrator deploys to a real Docker engine and to real sshd
hosts, behind a real nginx (the `nginx` fixture of the deploy tests), with real health checks.

Docker releases are the FROM-scratch busybox images (`svc:v1`, `svc:v2`, `svc:bad-health` whose
/health answers 500, `svc:exits` which exits at start); their /version answers `v<version>`.
SSH releases are tarballs served by busybox httpd from `releases/<version>` on each host; a bad
one lacks its `health` file (404) or carries a `crash` file that makes it exit at start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from engine.deploy import DeploymentOrchestrator, DeploymentStatus, Environment
from engine.deploy.history import DeploymentHistory
from tests.engine.deploy.conftest import services
from tests.engine.deploy.helpers import Prober
from tests.engine.deploy.nginx_fixture import NginxServer, nginx_server, ports  # noqa: F401

pytestmark = [pytest.mark.nginx, pytest.mark.slow]

FAST_CHECK = {
    "type": "http",
    "url": "http://{host}:{port}/health",
    "expect_status": 200,
    "timeout": 2,
    "retries": 20,
    "interval": 0.1,
}
OPTIONS: dict[str, dict[str, Any]] = {
    "recreate": {},
    "rolling": {},
    "blue_green": {"scale_down_delay": 0.2},
    "canary": {"steps": [50, 100], "analysis_window": 0.3, "probe_interval": 0.1},
}
STRATEGIES = list(OPTIONS)


class Rig:
    """One environment on one real target kind, with nginx in front, and how to make its releases."""

    def __init__(self, kind: str, tmp_path: Path, orch: DeploymentOrchestrator, listen: int) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.orch = orch
        self.listen = listen

    def artifact(self, version: str, bad: str | None = None) -> str:
        if self.kind == "docker":
            return {"health_500": "svc:bad-health", "exits_at_start": "svc:exits"}.get(bad or "", f"svc:v{version}")
        dest = self.tmp_path / "artifacts" / f"site-{version}.tar.gz"
        return str(
            services.make_site_tarball(dest, version, healthy=bad != "health_500", crash=bad == "exits_at_start")
        )

    def body(self, version: str) -> str:
        return f"v{version}" if self.kind == "docker" else version

    def deploy(self, version: str, strategy: str, bad: str | None = None) -> Any:
        name = f"svc-{version}-{bad or 'ok'}"
        self.orch.create_deployment(
            name, version, "svc", [self.artifact(version, bad)], strategy, True, **OPTIONS[strategy]
        )
        return self.orch.deploy(name)

    def served(self, port: int | None = None) -> str:
        return httpx.get(f"http://127.0.0.1:{port or self.listen}/version", timeout=5).text.strip()


def _target(kind: str, request: pytest.FixtureRequest, port_pool: Any, n: int, tag: str) -> dict[str, Any]:
    if kind == "docker":
        base_url = request.getfixturevalue("docker_engine")
        return {
            "kind": "docker",
            "base_url": base_url,
            "ports": port_pool.take_many(n),
            "color_ports": {"blue": port_pool.take_many(n), "green": port_pool.take_many(n)},
        }
    hosts = request.getfixturevalue("sshd_hosts")[:n]
    first = hosts[0]
    return {
        "kind": "ssh",
        "user": first.user,
        "key_file": str(first.key_path),
        "known_hosts": str(first.known_hosts),
        "command": services.SITE_COMMAND,
        "hosts": [
            {
                "host": h.host,
                "port": h.port,
                "name": f"h{i}",
                "deploy_path": f"{h.extra['deploy_path']}/{tag}/{{service}}",
                "ports": [port_pool.take()],
                "color_ports": {"blue": [port_pool.take()], "green": [port_pool.take()]},
            }
            for i, h in enumerate(hosts)
        ],
    }


@pytest.fixture
def rigs(request: pytest.FixtureRequest, tmp_path: Path, port_pool: Any, nginx: NginxServer) -> Iterator[Any]:
    made: list[Rig] = []

    def make(kind: str, n: int = 2, **target: Any) -> Rig:
        listen = ports.take(1)[0]
        env = Environment.model_validate(
            {
                "name": "svc",
                "type": "testing",
                "target": {**_target(kind, request, port_pool, n, tmp_path.name), **target},
                "router": nginx.router_config(listen),
                "health_checks": [FAST_CHECK],
            }
        )
        orch = DeploymentOrchestrator(workspace_dir=tmp_path / "ws")
        orch.register_environment(env)
        rig = Rig(kind, tmp_path, orch, listen)
        made.append(rig)
        return rig

    yield make

    async def stop_all() -> None:
        for rig in made:
            for env in rig.orch.environments.values():
                target = rig.orch.target_for(env)
                for inst in await target.instances(env.service_name):
                    await target.stop(inst)
            await rig.orch.aclose()

    anyio.run(stop_all)


KINDS = [pytest.param("docker", marks=pytest.mark.docker), pytest.param("ssh", marks=pytest.mark.ssh)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_changes_the_served_version(rigs: Any, kind: str, strategy: str) -> None:
    rig = rigs(kind)
    first = rig.deploy("1", strategy)
    assert first.status == DeploymentStatus.SUCCESS, first.reason
    assert rig.served() == rig.body("1")
    second = rig.deploy("2", strategy)
    assert second.status == DeploymentStatus.SUCCESS, second.reason
    assert second.previous_version == "1"
    assert {rig.served(i.port) for i in second.instances} == {rig.body("2")}
    assert {rig.served() for _ in range(6)} == {rig.body("2")}
    live = DeploymentHistory(rig.orch.store).live_release("svc", "svc")
    assert live is not None and live.version == "2"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("failure", ["health_500", "exits_at_start"])
def test_a_failing_version_is_rolled_back_and_the_old_one_answers(
    rigs: Any, kind: str, strategy: str, failure: str
) -> None:
    rig = rigs(kind)
    assert rig.deploy("1", strategy).status == DeploymentStatus.SUCCESS
    result = rig.deploy("2", strategy, bad=failure)
    assert result.status == DeploymentStatus.ROLLED_BACK, result.reason
    assert "rolled back to 1" in (result.reason or "")
    assert result.instances and {i.version for i in result.instances} == {"1"}
    assert {rig.served(i.port) for i in result.instances} == {rig.body("1")}
    assert {rig.served() for _ in range(6)} == {rig.body("1")}
    live = DeploymentHistory(rig.orch.store).live_release("svc", "svc")
    assert live is not None and live.version == "1"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("strategy", ["rolling", "blue_green"])
def test_no_request_fails_during_a_rollout(rigs: Any, kind: str, strategy: str) -> None:
    rig = rigs(kind, n=3)
    assert rig.deploy("1", strategy).status == DeploymentStatus.SUCCESS
    prober = Prober(f"http://127.0.0.1:{rig.listen}/version", limit=3000)
    prober.start()
    try:
        result = rig.deploy("2", strategy)
    finally:
        prober.stop()
    assert result.status == DeploymentStatus.SUCCESS, result.reason
    assert prober.failures == [], prober.failures[:5]
    assert prober.versions[rig.body("1")] > 0 and prober.versions[rig.body("2")] > 0, prober.versions
    assert rig.served() == rig.body("2")


@pytest.mark.ssh
def test_a_host_that_cannot_be_prepared_is_left_out_within_max_fail_percentage(rigs: Any, tmp_path: Path) -> None:
    """Ansible's rule through the orchestrator: with 1 of 3 hosts failing to take the release
    (tolerated by max_fail_percentage 34), the other two get it and the failed host keeps
    serving the old version, untouched; the result says which slots were left out and why."""
    rig = rigs("ssh", n=3, serial="100%", max_fail_percentage=34)
    assert rig.deploy("1", "rolling").status == DeploymentStatus.SUCCESS
    h1 = rig.orch.get_environment("svc").target.hosts[1]  # type: ignore[union-attr]
    logs = Path(h1.deploy_path.replace("{service}", "svc")) / "logs"
    logs.rename(logs.with_name("logs.moved"))  # v1's instance keeps its open log file
    logs.symlink_to("/nonexistent/logs")  # `mkdir -p .../logs` now fails on h1 only
    result = rig.deploy("2", "rolling")
    assert result.status == DeploymentStatus.SUCCESS, result.reason
    reason = result.reason or ""
    assert reason.startswith("deployed except where the release could not be prepared"), reason
    assert "ssh h1" in reason and "h0" not in reason and "h2" not in reason, reason
    served = {i.slot.split("/")[0]: rig.served(i.port) for i in result.instances}
    assert served == {"h0": "2", "h1": "1", "h2": "2"}, served
    kinds = [e["kind"] for e in rig.orch.history.events(result.deployment_id)]
    assert "slots_skipped" in kinds
    steps = rig.orch.history.steps(result.deployment_id)
    assert not [s for s in steps if "h1/" in s["description"]], steps  # nothing planned on h1
