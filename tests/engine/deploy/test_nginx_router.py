"""The nginx router against a real nginx (the `nginx` fixture) and real backends."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from engine.deploy.routers.base import Backend, Router
from engine.deploy.routers.nginx import NginxRouter, NginxRouterConfig, _accepting, render_upstream
from engine.deploy.targets.base import Address, Instance, TargetContext
from engine.errors import RouterError
from tests.engine.deploy.helpers import APP, make_release
from tests.engine.deploy.nginx_fixture import NginxServer, nginx_server, ports  # noqa: F401

pytestmark = pytest.mark.nginx


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[list[Backend]]:
    """Three real app processes: versions a, b, c."""
    procs, out = [], []
    for version, color in (("a", "blue"), ("b", "green"), ("c", "green")):
        (port,) = ports.take(1)
        rel = make_release(tmp_path, version)
        procs.append(subprocess.Popen([sys.executable, str(APP), str(port), str(rel)]))
        inst = Instance(service="web", slot=str(port), port=port, color=color, version=version)
        out.append(Backend(inst, Address("127.0.0.1", port)))
    for b in out:
        for _ in range(200):
            try:
                httpx.get(f"http://{b.address}/version", timeout=1)
                break
            except httpx.HTTPError:
                anyio.run(anyio.sleep, 0.05)
    yield out
    for p in procs:
        p.terminate()
        p.wait()


def router(nginx: NginxServer) -> tuple[NginxRouter, int]:
    (listen,) = ports.take(1)
    config = NginxRouterConfig.model_validate(nginx.router_config(listen))
    return NginxRouter(config, TargetContext(environment="t", state_dir=nginx.prefix)), listen


def count(listen: int, n: int) -> Counter[str]:
    with httpx.Client(timeout=5) as client:
        return Counter(client.get(f"http://127.0.0.1:{listen}/version").text for _ in range(n))


@pytest.mark.anyio
async def test_weights_split_the_traffic_and_drained_backends_get_none(
    nginx: NginxServer, backends: list[Backend]
) -> None:
    r, listen = router(nginx)
    assert isinstance(r, Router)
    a, b, c = backends
    await r.set_backends(
        "web",
        [
            Backend(a.instance, a.address, 3),
            Backend(b.instance, b.address, 1),
            Backend(c.instance, c.address, 0),
        ],
    )
    seen = count(listen, 40)
    # nginx's smooth weighted round-robin: exactly 3:1 over whole cycles
    assert seen == Counter({"a": 30, "b": 10})
    got = await r.backends("web")
    assert [(x.address, x.weight) for x in got] == [(a.address, 3), (b.address, 1), (c.address, 0)]


@pytest.mark.anyio
async def test_switch_moves_all_traffic_to_one_colour(nginx: NginxServer, backends: list[Backend]) -> None:
    r, listen = router(nginx)
    await r.switch("web", "blue", backends)
    assert set(count(listen, 10)) == {"a"}
    await r.switch("web", "green", backends)
    assert count(listen, 10) == Counter({"b": 5, "c": 5})


@pytest.mark.anyio
async def test_drained_backends_are_a_fallback_when_every_weighted_one_fails(
    nginx: NginxServer,
    backends: list[Backend],
) -> None:
    r, listen = router(nginx)
    (dead_port,) = ports.take(1)
    dead = Backend(Instance(service="web", slot="dead", port=dead_port), Address("127.0.0.1", dead_port), 1)
    await r.set_backends("web", [dead, Backend(backends[0].instance, backends[0].address, 0)])
    assert set(count(listen, 5)) == {"a"}


@pytest.mark.anyio
async def test_a_config_nginx_rejects_is_a_router_error_and_the_old_one_keeps_serving(
    nginx: NginxServer,
    backends: list[Backend],
) -> None:
    r, listen = router(nginx)
    await r.set_backends("web", backends[:1])
    site = nginx.sites_dir / "web.conf"
    good = site.read_text()
    bogus = Backend(Instance(service="web", slot="x"), Address("no-such-host.invalid", 80), 1)
    with pytest.raises(RouterError, match="invalid .*the old one stays"):
        await r.set_backends("web", [bogus])
    assert site.read_text() == good
    assert "no-such-host.invalid" in (nginx.sites_dir / "web.conf.rejected").read_text()
    assert set(count(listen, 5)) == {"a"}


@pytest.mark.anyio
async def test_a_router_whose_nginx_is_not_running_says_so(tmp_path: Path, backends: list[Backend]) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/e.log;\nevents {{}}\n"
        f"http {{ include {tmp_path}/cicd/*.conf; }}\n"
    )
    (listen,) = ports.take(1)
    r = NginxRouter(
        NginxRouterConfig(listen=listen, conf=conf, prefix=tmp_path, reload_timeout=1),
        TargetContext(environment="t", state_dir=tmp_path),
    )
    with pytest.raises(RouterError, match="reload failed"):
        await r.set_backends("web", backends)
    assert not (tmp_path / "cicd" / "web.conf").exists()


def test_render_marks_drained_servers_as_backup() -> None:
    cfg = NginxRouterConfig(listen=1234, conf=Path("/x/nginx.conf"))
    inst = Instance(service="web", slot="1", version="7")
    text = render_upstream(
        "web", [Backend(inst, Address("127.0.0.1", 1), 2), Backend(inst, Address("127.0.0.1", 2), 0)], cfg, 5
    )
    assert "server 127.0.0.1:1 weight=2" in text and "server 127.0.0.1:2 backup;" in text
    assert "listen 127.0.0.1:1234;" in text and "generation 5;" in text


@pytest.mark.anyio
async def test_a_switch_returns_only_after_the_old_workers_stopped_accepting(
    nginx: NginxServer, backends: list[Backend]
) -> None:
    """nginx tells its old workers to quit 100 ms after starting the new ones; until then both
    accept. The router must not report the switch done inside that window."""
    r, _listen = router(nginx)
    await r.switch("web", "blue", backends)
    for color in ("green", "blue", "green"):
        before = r._workers()
        assert before, "the fixture's nginx has a worker the router can see"
        await r.switch("web", color, backends)
        after = r._workers()
        assert after and not set(after) & set(before)
        assert not [pid for pid, start in before.items() if _accepting(pid, start)]


def test_the_pid_file_comes_from_the_main_conf_or_nginx_default(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"

    def pid_file(text: str, prefix: Path | None) -> Path:
        conf.write_text(text)
        cfg = NginxRouterConfig(listen=8080, conf=conf, prefix=prefix)
        return NginxRouter(cfg, TargetContext(environment="t", state_dir=tmp_path))._pid_file()

    assert pid_file("worker_processes 1;\npid /run/x.pid;\n", None) == Path("/run/x.pid")
    assert pid_file("  pid  logs/n.pid ;\n", tmp_path) == tmp_path / "logs/n.pid"
    assert pid_file("# pid /nope.pid;\nevents {}\n", tmp_path) == tmp_path / "logs" / "nginx.pid"
    assert pid_file("events {}\n", None) == Path("/run/nginx.pid")
