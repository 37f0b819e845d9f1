"""Faults injected into real deploy targets during a rollout: each ends in a clear status, within a
bound, and where rollback applies the previous version is serving and recorded live.

Real services only: the local target's processes behind a real nginx, a Docker engine of the
tests' own (the deploy tests' `docker_engine` fixture and images), an sshd started here.
Target and router ports come from 18750-18799 (the deploy suite, which may run beside this one on
another xdist worker, has its own).
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from engine.deploy import DeploymentOrchestrator, Environment
from engine.deploy.history import DeploymentHistory
from engine.errors import TargetError
from tests.engine.deploy.conftest import docker_engine, services  # noqa: F401 - fixture reused
from tests.engine.deploy.helpers import APP_COMMAND, make_release
from tests.engine.deploy.nginx_fixture import NginxServer, nginx_server  # noqa: F401 - fixture reused

pytestmark = [pytest.mark.slow]
BOUND = 120.0   # seconds any faulted rollout may take to reach its final status

HANGING_APP = """\
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port = int(sys.argv[1])
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            time.sleep(3600)   # never answers
        body = b"hang"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


@pytest.fixture(scope="module")
def port_pool() -> Any:
    return services.PortPool(18750, 18799)


class Service:
    """One environment with an orchestrator of its own; stops what it started."""

    def __init__(self, tmp_path: Path, env: dict[str, Any]) -> None:
        self.tmp_path = tmp_path
        self.orch = DeploymentOrchestrator(workspace_dir=tmp_path / "ws")
        self.orch.register_environment(Environment.model_validate({"name": "svc", "type": "testing", **env}))

    def deploy(self, version: str, artifact: str, strategy: str = "rolling", **options: Any) -> Any:
        name = f"svc-{version}-{time.monotonic_ns()}"
        self.orch.create_deployment(name, version, "svc", [artifact], strategy, True, **options)
        started = time.monotonic()
        result = self.orch.deploy(name)
        assert time.monotonic() - started < BOUND, "the faulted rollout was not bounded"
        return result

    def live(self) -> str | None:
        rec = DeploymentHistory(self.orch.store).live_release("svc", "svc")
        return rec.version if rec else None

    def instances(self) -> list[Any]:
        async def listed() -> list[Any]:
            env = self.orch.get_environment("svc")
            return list(await self.orch.target_for(env).instances(env.service_name))

        return anyio.run(listed)

    def stop(self) -> None:
        async def stop_all() -> None:
            for env in self.orch.environments.values():
                target = self.orch.target_for(env)
                for inst in await target.instances(env.service_name):
                    await target.stop(inst)
            await self.orch.aclose()

        anyio.run(stop_all)


@pytest.fixture
def made() -> Iterator[list[Service]]:
    out: list[Service] = []
    yield out
    for s in out:
        try:
            s.stop()
        except Exception:  # noqa: BLE001 - a target broken on purpose may refuse to stop
            pass


def _get(port: int, path: str = "/version") -> str | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).text.strip()
    except httpx.HTTPError:
        return None


# Generous for a loaded 2-core machine (a probe passes as soon as one answers); a hang fails in ~10 s.
CHECK = {"type": "http", "url": "http://{host}:{port}/health", "timeout": 0.5, "retries": 15, "interval": 0.2}


# -- local target ---------------------------------------------------------------------------------


def test_health_endpoint_hangs_past_its_timeout(tmp_path: Path, port_pool: Any, made: list[Service]) -> None:
    svc = Service(tmp_path, {"target": {"kind": "local", "command": APP_COMMAND, "ports": port_pool.take_many(2)},
                             "health_checks": [CHECK]})
    made.append(svc)
    ports_ = svc.orch.get_environment("svc").target.ports  # type: ignore[union-attr]
    assert str(svc.deploy("1", str(make_release(tmp_path, "1"))).status) == "success"
    hanging = make_release(tmp_path, "2")
    (hanging / "server.py").write_text(HANGING_APP)
    result = svc.deploy("2", str(hanging))
    assert str(result.status) == "rolled_back", result.reason
    assert "health" in (result.reason or "").lower()
    assert [_get(p) for p in ports_] == ["1", "1"] and svc.live() == "1"


def test_nginx_reload_fails(tmp_path: Path, port_pool: Any, nginx: NginxServer, made: list[Service]) -> None:
    listen = port_pool.take()  # not the deploy suite's nginx range: that suite may run beside this one
    svc = Service(tmp_path, {"target": {"kind": "local", "command": APP_COMMAND, "ports": port_pool.take_many(1),
                                        "color_ports": {"blue": port_pool.take_many(1),
                                                        "green": port_pool.take_many(1)}},
                             "router": nginx.router_config(listen), "health_checks": [CHECK]})
    made.append(svc)
    assert str(svc.deploy("1", str(make_release(tmp_path, "1")), "blue_green").status) == "success"
    assert _get(listen) == "1"
    broken = nginx.sites_dir / "zz-broken.conf"
    broken.write_text("this is not nginx configuration;\n")
    try:
        result = svc.deploy("2", str(make_release(tmp_path, "2")), "blue_green")
        # The switch back needs a reload too, so the rollback cannot complete either; the reason says why.
        assert str(result.status) == "rollback_failed", result.status
        assert "nginx" in (result.reason or "").lower() and "invalid" in (result.reason or ""), result.reason
        # nginx kept its last good configuration: version 1 still answers through it, and is live.
        assert _get(listen) == "1" and svc.live() == "1"
    finally:
        broken.unlink()
    # Once nginx is fixed, the next blue-green deployment goes through: the failed version's
    # instances in the idle colour are taken out and replaced.
    assert str(svc.deploy("3", str(make_release(tmp_path, "3")), "blue_green").status) == "success"
    assert _get(listen) == "3" and svc.live() == "3"
    assert {i.version for i in svc.instances()} == {"3"}


# -- docker ---------------------------------------------------------------------------------------


def _docker_env(base_url: str, port_pool: Any, n: int = 2) -> dict[str, Any]:
    return {"target": {"kind": "docker", "base_url": base_url, "ports": port_pool.take_many(n)},
            "health_checks": [{**CHECK, "retries": 30}]}


@pytest.mark.docker
def test_container_killed_during_its_health_checks(tmp_path: Path, docker_engine: str, port_pool: Any,  # noqa: F811
                                                    made: list[Service]) -> None:
    import docker

    env = _docker_env(docker_engine, port_pool)
    # A second of grace before the first probe: the window in which the new container dies.
    env["health_checks"] = [{**CHECK, "retries": 30, "initial_delay": 1.0}]
    svc = Service(tmp_path, env)
    made.append(svc)
    ports_ = env["target"]["ports"]
    assert str(svc.deploy("1", "svc:v1").status) == "success"
    client = docker.DockerClient(base_url=docker_engine)
    killed: list[str] = []

    def killer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for c in client.containers.list():
                if c.image.tags and c.image.tags[0] == "svc:v2":
                    c.kill()
                    killed.append(c.name)
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        result = svc.deploy("2", "svc:v2")
    finally:
        thread.join()
        client.close()
    assert killed, "the v2 container was never seen"
    assert str(result.status) == "rolled_back", result.reason
    assert [_get(p) for p in ports_] == ["v1", "v1"] and svc.live() == "1"


@pytest.mark.docker
def test_docker_socket_disappears_mid_rollout(tmp_path: Path, docker_engine: str, port_pool: Any,  # noqa: F811
                                              made: list[Service]) -> None:
    socket_path = Path(docker_engine.removeprefix("unix://"))
    gate = tmp_path / "gate"
    env = _docker_env(docker_engine, port_pool)
    env["health_checks"] = [{"type": "command", "command": f"test -e {gate}", "retries": 600, "interval": 0.05}]
    svc = Service(tmp_path, env)
    made.append(svc)
    gate.touch()
    assert str(svc.deploy("1", "svc:v1").status) == "success"
    gate.unlink()
    hidden = socket_path.with_name(socket_path.name + ".hidden")

    def pull_the_socket() -> None:
        time.sleep(1.0)   # v2's first container is up and waiting for its health check
        os.rename(socket_path, hidden)
        gate.touch()      # the check now passes; the next Docker call finds no engine

    thread = threading.Thread(target=pull_the_socket)
    thread.start()
    try:
        result = svc.deploy("2", "svc:v2")
    finally:
        thread.join()
        if hidden.exists():
            os.rename(hidden, socket_path)
    assert str(result.status) in ("failure", "rollback_failed", "rolled_back"), result.status
    reason = (result.reason or "").lower()
    assert "docker" in reason or "engine" in reason, result.reason
    # The record never claims a version that was not verified.
    assert svc.live() == "1"
    made.remove(svc)
    svc.stop()
    # docker-py leaves its pooled unix socket open when the engine vanishes mid-request unless the
    # target drops the client; a leaked one would be reported (and fail this test) right here.
    gc.collect()


# -- ssh ------------------------------------------------------------------------------------------


@pytest.mark.ssh
def test_ssh_connection_drops_mid_rollout(tmp_path: Path, port_pool: Any, made: list[Service]) -> None:
    try:
        host = services.start_sshd(tmp_path / "sshd", port_pool.take())
    except services.ServiceUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    gate = tmp_path / "gate"
    try:
        svc = Service(tmp_path, {"target": {
            "kind": "ssh", "user": host.user, "key_file": str(host.key_path), "known_hosts": str(host.known_hosts),
            "command": services.SITE_COMMAND,
            "hosts": [{"host": host.host, "port": host.port, "name": "h0", "deploy_path": str(host.root / "app"),
                       "ports": [port_pool.take()]}]},
            "health_checks": [{"type": "command", "command": f"test -e {gate}", "retries": 600, "interval": 0.05}]})
        made.append(svc)
        gate.touch()
        one = services.make_site_tarball(tmp_path / "a" / "site-1.tar.gz", "1")
        assert str(svc.deploy("1", str(one)).status) == "success"
        gate.unlink()

        # The host goes away once the deployment has begun: killed on a timer it could also land
        # after the last SSH operation (the health check here is local), and the deploy would
        # rightly succeed, so the drop is made certain: before the first SSH operation of v2.
        # The sessions the daemon forked (the engine's open connection among them), then the daemon.
        found = subprocess.run(["pgrep", "-P", str(host.pid)], capture_output=True, text=True)
        os.kill(host.pid, signal.SIGKILL)   # the daemon and, with it, the listening socket
        for line in found.stdout.split():
            try:
                os.kill(int(line), signal.SIGKILL)   # and the sessions it forked
            except (ProcessLookupError, ValueError):
                pass
        gate.touch()
        two = services.make_site_tarball(tmp_path / "a" / "site-2.tar.gz", "2")
        try:
            result = svc.deploy("2", str(two))
        except TargetError as exc:   # refused before any change: the host cannot be read
            reason = str(exc).lower()
        else:
            assert str(result.status) in ("failure", "rollback_failed", "rolled_back"), result.status
            reason = (result.reason or "").lower()
        assert "ssh" in reason or "connect" in reason, reason
        assert svc.live() == "1"
    finally:
        host.stop()
        # v1 was started through the killed daemon: nothing else will stop it.
        subprocess.run(["pkill", "-f", str(host.root)], check=False)
