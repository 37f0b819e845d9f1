"""Helpers for the rollback tests: an environment on a real target with nginx in front, deployed
twice (v1 then v2) by the real orchestrator, and a RollbackManager on the same workspace."""

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
from tests.engine.deploy.helpers import APP_COMMAND, make_release

FAST_CHECK: dict[str, Any] = {
    "type": "http",
    "url": "http://{host}:{port}/health",
    "expect_status": 200,
    "timeout": 2,
    "retries": 30,
    "interval": 0.1,
}
DEPLOY_OPTIONS: dict[str, dict[str, Any]] = {
    "recreate": {},
    "rolling": {},
    "blue_green": {"scale_down_delay": 0.1},
    "canary": {"steps": [50, 100], "analysis_window": 0.2, "probe_interval": 0.1},
}
# The deploy strategy that puts v1 and v2 in place before each rollback strategy is tried.
DEPLOYED_WITH = {"immediate": "rolling", "rolling": "rolling", "blue_green": "blue_green", "canary": "canary"}


class Rig:
    """One environment "svc" on a real target kind; `listen` is nginx's port when there is a router."""

    def __init__(self, kind: str, tmp_path: Path, orch: DeploymentOrchestrator, listen: int | None) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.orch = orch
        self.listen = listen
        self.workspace = tmp_path / "ws"

    def artifact(self, version: str) -> str:
        if self.kind == "docker":
            return f"svc:v{version}"
        if self.kind == "ssh":
            return str(services.make_site_tarball(self.tmp_path / "artifacts" / f"site-{version}.tar.gz", version))
        return str(make_release(self.tmp_path / "artifacts", version))

    def body(self, version: str) -> str:
        return f"v{version}" if self.kind == "docker" else version

    def deploy(self, version: str, strategy: str) -> Any:
        name = f"svc-{version}"
        self.orch.create_deployment(
            name, version, "svc", [self.artifact(version)], strategy, True, **DEPLOY_OPTIONS[strategy]
        )
        result = self.orch.deploy(name)
        assert result.status == DeploymentStatus.SUCCESS, result.reason
        return result

    def served(self, port: int | None = None) -> str | None:
        try:
            return httpx.get(f"http://127.0.0.1:{port or self.listen}/version", timeout=5).text.strip()
        except httpx.HTTPError:
            return None

    def live(self) -> str | None:
        rel = DeploymentHistory(self.orch.store).live_release("svc", "svc")
        return rel.version if rel else None

    async def instances(self) -> list[Any]:
        env = self.orch.get_environment("svc")
        return await self.orch.target_for(env).instances("svc")


def target_config(kind: str, request: pytest.FixtureRequest, port_pool: Any, n: int) -> dict[str, Any]:
    colors = {"blue": port_pool.take_many(n), "green": port_pool.take_many(n)}
    if kind == "local":
        return {"kind": "local", "command": APP_COMMAND, "ports": port_pool.take_many(n), "color_ports": colors}
    if kind == "docker":
        cfg: dict[str, Any] = {"kind": "docker", "base_url": request.getfixturevalue("docker_engine")}
        cfg["ports"] = port_pool.take_many(n)
        cfg["color_ports"] = colors
        return cfg
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
                "deploy_path": f"{h.extra['deploy_path']}/rollback/{{service}}",
                "ports": [port_pool.take()],
                "color_ports": {"blue": [port_pool.take()], "green": [port_pool.take()]},
            }
            for i, h in enumerate(hosts)
        ],
    }


def make_rigs(request: pytest.FixtureRequest, tmp_path: Path, port_pool: Any) -> Iterator[Any]:
    made: list[Rig] = []

    def make(kind: str, *, router: bool = True, n: int = 2, checks: list[dict[str, Any]] | None = None) -> Rig:
        listen = port_pool.take() if router else None
        nginx = request.getfixturevalue("nginx") if router else None
        env = Environment.model_validate(
            {
                "name": "svc",
                "type": "testing",
                "target": target_config(kind, request, port_pool, n),
                "router": nginx.router_config(listen) if nginx and listen else None,
                "health_checks": checks or [FAST_CHECK],
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
