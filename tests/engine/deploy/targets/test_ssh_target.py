"""SSHTarget against real sshd hosts started by the `sshd_hosts` fixture (three daemons on 127.0.0.1).

The "hosts" share this machine, so each has its own deploy_path and instance ports, as separate
machines would have their own filesystem and network address.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from engine.deploy.targets.base import TARGETS, Release, TargetContext
from engine.deploy.targets.ssh import SSHTarget, SSHTargetConfig, batch_failed, host_batches
from engine.errors import InputError, TargetError
from tests.engine.deploy.conftest import services
from tests.engine.deploy.targets.http_probe import get, wait_body, wait_status

pytestmark = [pytest.mark.anyio]

HTTPD = "busybox httpd -f -p {host}:{port} -h {release_dir}"


def release(service: str, version: str, artifact: Path, dep: str = "dep-1") -> Release:
    return Release(service=service, version=version, deployment_id=dep, artifacts=(str(artifact),))


def site(tmp_path: Path, version: str, healthy: bool = True) -> Path:
    return services.make_site_tarball(tmp_path / f"site-{version}.tar.gz", version, healthy=healthy)


def make_target(
    tmp_path: Path, hosts: list[Any], ports: list[list[int]], *, env: str = "test", **settings: Any
) -> SSHTarget:
    first = hosts[0]
    raw = {
        "kind": "ssh",
        "hosts": [
            {
                "host": s.host,
                "port": s.port,
                "name": f"h{i}",
                "deploy_path": f"{s.extra['deploy_path']}/{{service}}",
                "ports": ports[i],
            }
            for i, s in enumerate(hosts)
        ],
        "user": first.user,
        "key_file": str(first.key_path),
        "known_hosts": str(first.known_hosts),
        "command": HTTPD,
        **settings,
    }
    return SSHTarget(SSHTargetConfig.model_validate(raw), TargetContext(environment=env, state_dir=tmp_path))


async def stop_all(target: SSHTarget, service: str) -> None:
    for inst in await target.instances(service):
        await target.stop(inst)
    await target.close()


# -- pure decisions ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "serial", "expected"),
    [
        (3, 1, [[0], [1], [2]]),
        (5, 2, [[0, 1], [2, 3], [4]]),
        (4, "50%", [[0, 1], [2, 3]]),
        (3, "30%", [[0], [1], [2]]),
        (3, "100%", [[0, 1, 2]]),
        (0, 1, []),
    ],
)
def test_host_batches(n: int, serial: int | str, expected: list[list[int]]) -> None:
    assert [list(b) for b in host_batches(n, serial)] == expected


@pytest.mark.parametrize(
    ("failed", "size", "pct", "fails"),
    [
        (0, 3, 0, False),
        (1, 3, 0, True),
        (1, 3, 34, False),
        (1, 3, 33, True),
        (2, 4, 50, False),
        (3, 4, 50, True),
    ],
)
def test_batch_failed_follows_ansible(failed: int, size: int, pct: float, fails: bool) -> None:
    assert batch_failed(failed, size, pct) is fails


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"serial": 0}, "positive host count"),
        ({"serial": "150%"}, "percentage"),
        ({"command": "run {prot}"}, "unknown placeholder {prot}"),
        ({"deploy_path": None}, "deploy_path: not set for a:22"),
        ({"max_fail_percentage": 120}, "less than or equal to 100"),
        ({"hosts": ["a", "a:22"]}, "listed twice"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    raw = {"kind": "ssh", "hosts": ["a"], "deploy_path": "/srv/x", "command": "run", "ports": [8080], **settings}
    with pytest.raises(ValueError, match=message):
        SSHTargetConfig.model_validate(raw)


def test_slots_per_host_and_colour(tmp_path: Path) -> None:
    config = SSHTargetConfig.model_validate(
        {
            "kind": "ssh",
            "hosts": ["web1.example:2222", {"host": "web2.example", "ports": [9000]}],
            "deploy_path": "/srv/{service}",
            "command": "run",
            "ports": [8080, 8081],
        }
    )
    target = SSHTarget(config, TargetContext(environment="prod", state_dir=tmp_path))
    assert [(s.slot, s.host, s.port) for s in target.slots("web")] == [
        ("web1.example:2222/8080", "web1.example", 8080),
        ("web1.example:2222/8081", "web1.example", 8081),
        ("web2.example:22/9000", "web2.example", 9000),
    ]
    assert [s.port for s in target.slots("web", "green")] == [8180, 8181, 9100]
    with pytest.raises(InputError, match="unknown colour"):
        target.slots("web", "red")
    assert TARGETS["ssh"] is SSHTarget


async def test_a_directory_artifact_that_is_missing_is_an_input_error(tmp_path: Path) -> None:
    config = SSHTargetConfig.model_validate(
        {"kind": "ssh", "hosts": ["h"], "deploy_path": "/srv", "command": "run", "ports": [1]}
    )
    target = SSHTarget(config, TargetContext(environment="x", state_dir=tmp_path))
    with pytest.raises(InputError, match="does not exist"):
        await target.prepare(release("web", "1", tmp_path / "nope"))


# -- real sshd -----------------------------------------------------------------------------------
@pytest.mark.ssh
async def test_unknown_host_key_is_refused(tmp_path: Path, sshd_server: Any) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    target = make_target(tmp_path, [sshd_server], [[18999]], known_hosts=str(empty))
    with pytest.raises(TargetError, match="not in .*known_hosts; an unknown host is refused, never trusted"):
        await target.instances("web")
    # Nothing was learnt on the way: the file is still empty.
    assert empty.read_text() == ""
    await target.close()


@pytest.mark.ssh
async def test_changed_host_key_is_refused(tmp_path: Path, sshd_hosts: list[Any]) -> None:
    a, b = sshd_hosts[0], sshd_hosts[1]
    forged = tmp_path / "known_hosts"
    # b's key claimed for a's address: what a man in the middle would present.
    forged.write_text(f"[127.0.0.1]:{a.port} {' '.join(b.host_public_key.split()[:2])}\n")
    target = make_target(tmp_path, [a], [[18999]], known_hosts=str(forged))
    with pytest.raises(TargetError, match="host key does not match"):
        await target.instances("web")
    await target.close()


@pytest.mark.ssh
async def test_wrong_client_key_is_a_target_error(tmp_path: Path, sshd_server: Any) -> None:
    services.make_key(tmp_path / "stranger")
    target = make_target(tmp_path, [sshd_server], [[18999]], key_file=str(tmp_path / "stranger"))
    with pytest.raises(TargetError, match="ssh h0"):
        await target.instances("web")
    await target.close()


@pytest.mark.ssh
async def test_prepare_start_serve_and_stop_on_three_hosts(
    tmp_path: Path, sshd_hosts: list[Any], port_pool: Any
) -> None:
    ports = [[p] for p in port_pool.take_many(3)]
    target = make_target(tmp_path, sshd_hosts, ports)
    service = "shop"
    try:
        rel = await target.prepare(release(service, "1", site(tmp_path, "1"), dep="d-1"))
        for s in sshd_hosts:
            app = Path(s.extra["deploy_path"]) / service
            assert (app / "releases" / "1" / "version").read_text() == "1\n"
            assert (app / "releases" / "1" / ".release.json").exists()
        started = [await target.start(rel, slot) for slot in target.slots(service)]
        for inst in started:
            assert wait_body(f"http://{await target.address(inst)}/version", "1") == "1"
            app = Path(sshd_hosts[int(inst.data["ssh_host"][1:])].extra["deploy_path"]) / service
            assert os.readlink(app / "current") == "releases/1"
            assert not [p for p in app.iterdir() if p.name.startswith(".current-")]

        # Another target object (another engine process) reads the instances from the hosts.
        other = make_target(tmp_path, sshd_hosts, ports)
        seen = await other.instances(service)
        assert [(i.slot, i.version, i.deployment_id, i.alive) for i in seen] == [
            (f"h{n}/{ports[n][0]}", "1", "d-1", True) for n in range(3)
        ]
        await other.close()

        # start is idempotent for the same release in the same slot
        again = await target.start(rel, target.slots(service)[0])
        assert again.ref == started[0].ref

        for inst in started:
            await target.stop(inst)
            assert get(f"http://127.0.0.1:{inst.port}/version") is None
        assert await target.instances(service) == []
    finally:
        await stop_all(target, service)


@pytest.mark.ssh
async def test_switch_to_a_new_release_keeps_the_last_n(tmp_path: Path, sshd_server: Any, port_pool: Any) -> None:
    port = port_pool.take()
    target = make_target(tmp_path, [sshd_server], [[port]], keep_releases=2)
    service = "keeper"
    app = Path(sshd_server.extra["deploy_path"]) / service
    try:
        inst = None
        for v in ("1", "2", "3", "4"):
            rel = await target.prepare(release(service, v, site(tmp_path, v)))
            if inst is not None:
                await target.stop(inst)
            inst = await target.start(rel, target.slots(service)[0])
            assert wait_body(f"http://127.0.0.1:{port}/version", v) == v
            assert os.readlink(app / "current") == f"releases/{v}"
        assert sorted(p.name for p in (app / "releases").iterdir()) == ["3", "4"]
        # `releases()` reports what `current` names first, then the directories present
        assert (await target.releases(service))["h0"] == ["4", "3", "4"]
        # a rollback re-prepares an old version: it is uploaded again and served
        old = await target.prepare(release(service, "1", site(tmp_path, "1")))
        assert inst is not None
        await target.stop(inst)
        await target.start(old, target.slots(service)[0])
        assert wait_body(f"http://127.0.0.1:{port}/version", "1") == "1"
        assert sorted(p.name for p in (app / "releases").iterdir()) == ["1", "4"]
    finally:
        await stop_all(target, service)


@pytest.mark.ssh
async def test_occupied_slot_unhealthy_release_and_dead_instance(
    tmp_path: Path, sshd_server: Any, port_pool: Any
) -> None:
    port = port_pool.take()
    target = make_target(tmp_path, [sshd_server], [[port]])
    service = "sick"
    try:
        v1 = await target.prepare(release(service, "1", site(tmp_path, "1")))
        bad = await target.prepare(release(service, "2", site(tmp_path, "2", healthy=False)))
        inst = await target.start(v1, target.slots(service)[0])
        with pytest.raises(TargetError, match="still runs sick 1"):
            await target.start(bad, target.slots(service)[0])
        await target.stop(inst)
        inst = await target.start(bad, target.slots(service)[0])
        assert wait_body(f"http://127.0.0.1:{port}/version", "2") == "2"
        assert wait_status(f"http://127.0.0.1:{port}/health", 404) == 404
        await target.stop(inst)
    finally:
        await stop_all(target, service)

    crashing = make_target(tmp_path, [sshd_server], [[port]], command="echo 'no config, giving up'; exit 3")
    try:
        rel = await crashing.prepare(release("crash", "1", site(tmp_path, "1")))
        inst = await crashing.start(rel, crashing.slots("crash")[0])
        for _ in range(100):
            (seen,) = await crashing.instances("crash")
            if not seen.alive:
                break
        assert seen.alive is False
        assert "no config, giving up" in crashing.log_tail(inst)
    finally:
        await stop_all(crashing, "crash")


@pytest.mark.ssh
async def test_batches_stop_at_max_fail_percentage(tmp_path: Path, sshd_hosts: list[Any]) -> None:
    service = "batched"
    broken = Path(sshd_hosts[1].extra["deploy_path"]) / service
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text("a file where the service directory should be\n")  # mkdir -p fails on h1
    apps = [Path(s.extra["deploy_path"]) / service for s in sshd_hosts]
    tarball = site(tmp_path, "1")
    try:
        # serial 1, no failure tolerated: h0 done, h1 fails, h2 never touched
        target = make_target(tmp_path, sshd_hosts, [[18998]] * 3, serial=1, max_fail_percentage=0)
        with pytest.raises(TargetError, match=r"(?s)failed on 1 of 1 hosts .*ssh h1.*not touched: h2"):
            await target.prepare(release(service, "1", tarball))
        assert (apps[0] / "releases" / "1" / "version").exists()
        assert not apps[2].exists()
        await target.close()

        # one batch of 3, 34% tolerated: 1 of 3 failed is fine, the others are prepared
        target = make_target(tmp_path, sshd_hosts, [[18998]] * 3, serial="100%", max_fail_percentage=34)
        await target.prepare(release(service, "2", tarball))
        assert (apps[2] / "releases" / "2" / "version").exists()
        assert list(target.failed_hosts.get("h1", {})) == ["2"]
        # starting on the failed host tries it again, and says why it still fails
        with pytest.raises(TargetError, match="ssh h1"):
            await target.start(await target.prepare(release(service, "2", tarball)), target.slots(service)[1])
        await target.close()

        # the same batch with 30% tolerated fails the prepare
        target = make_target(tmp_path, sshd_hosts, [[18998]] * 3, serial=3, max_fail_percentage=30)
        with pytest.raises(TargetError, match="failed on 1 of 3 hosts"):
            await target.prepare(release(service, "3", tarball))
        await target.close()
    finally:
        broken.unlink()


@pytest.mark.ssh
async def test_same_version_with_other_bytes_keeps_running_instances_serving(
    tmp_path: Path, sshd_server: Any, port_pool: Any
) -> None:
    first_port, second_port = port_pool.take_many(2)
    target = make_target(tmp_path, [sshd_server], [[first_port, second_port]])
    service = "rebuilt"
    app = Path(sshd_server.extra["deploy_path"]) / service
    build = tmp_path / "build"
    build.mkdir()
    (build / "health").write_text("ok\n")
    (build / "version").write_text("first build\n")
    try:
        rel = await target.prepare(release(service, "1", build))
        inode = (app / "releases" / "1").stat().st_ino
        # the same directory again gives the same bytes: the release directory is re-used
        await target.prepare(release(service, "1", build))
        assert (app / "releases" / "1").stat().st_ino == inode

        first = await target.start(rel, target.slots(service)[0])
        assert wait_body(f"http://127.0.0.1:{first_port}/version", "first build") == "first build"
        (build / "version").write_text("second build\n")
        rebuilt = await target.prepare(release(service, "1", build))
        assert (app / "releases" / "1" / "version").read_text() == "second build\n"
        # the running instance still serves from the directory it started in (moved aside)
        assert wait_body(f"http://127.0.0.1:{first_port}/version", "first build") == "first build"
        assert [p.name.startswith(".replaced-") for p in (app / "releases").iterdir()].count(True) == 1
        second = await target.start(rebuilt, target.slots(service)[1])
        assert wait_body(f"http://127.0.0.1:{second_port}/version", "second build") == "second build"

        await target.stop(first)
        await target.prepare(release(service, "1", build))  # pruning: nobody works in it any more
        assert not [p for p in (app / "releases").iterdir() if p.name.startswith(".replaced-")]
        assert wait_body(f"http://127.0.0.1:{second_port}/version", "second build") == "second build"
        await target.stop(second)
    finally:
        await stop_all(target, service)
