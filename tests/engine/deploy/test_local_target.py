"""The local target against real processes: release dirs, pid records, ports, stop."""

from __future__ import annotations

import os
import socket
import tarfile
from pathlib import Path

import pytest

from engine.deploy.targets.base import Release, Target, TargetContext
from engine.deploy.targets.local import LocalTarget, LocalTargetConfig
from engine.errors import InputError, TargetError
from tests.engine.deploy.helpers import APP_COMMAND, make_release, served_version
from tests.engine.deploy.nginx_fixture import ports


def target(tmp_path: Path, port_list: list[int], **kw: object) -> LocalTarget:
    config = LocalTargetConfig(command=APP_COMMAND, ports=port_list, **kw)  # type: ignore[arg-type]
    return LocalTarget(config, TargetContext(environment="t", state_dir=tmp_path / "state"))


def release(art: Path | str, version: str) -> Release:
    return Release(service="web", version=version, deployment_id=f"d{version}", artifacts=(str(art),))


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_it_satisfies_the_target_protocol_and_gives_colour_slots(tmp_path: Path) -> None:
    t = target(tmp_path, [5000, 5001], color_ports={"blue": [6000, 6001], "green": [7000, 7001]})
    assert isinstance(t, Target)
    assert [s.port for s in t.slots("web")] == [5000, 5001]
    assert [(s.port, s.color) for s in t.slots("web", "green")] == [(7000, "green"), (7001, "green")]
    with pytest.raises(InputError, match="colour"):
        t.slots("web", "red")


@pytest.mark.anyio
async def test_prepare_copies_dirs_unpacks_tarballs_and_is_idempotent(tmp_path: Path) -> None:
    t = target(tmp_path, [5000])
    art = make_release(tmp_path / "a", "1")
    ready = await t.prepare(release(art, "1"))
    rdir = Path(ready.prepared["release_dir"])
    assert (rdir / "version").read_text() == "1"
    (rdir / "marker").write_text("kept")  # a second prepare of the same version re-uses the directory
    assert (await t.prepare(release(art, "1"))).prepared == ready.prepared and (rdir / "marker").exists()
    tarball = tmp_path / "v2.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(make_release(tmp_path / "b", "2"), arcname=".")
    ready2 = await t.prepare(release(tarball, "2"))
    assert (Path(ready2.prepared["release_dir"]) / "version").read_text() == "2"
    with pytest.raises(InputError, match="does not exist"):
        await t.prepare(release(tmp_path / "missing", "3"))
    assert not (rdir.parent / "3").exists()


@pytest.mark.anyio
async def test_instances_survive_a_new_target_object_and_stop_for_real(tmp_path: Path) -> None:
    p1, p2 = ports.take(2)
    t = target(tmp_path, [p1, p2])
    ready = await t.prepare(release(make_release(tmp_path / "a", "1"), "1"))
    started = [await t.start(ready, slot) for slot in t.slots("web")]
    again = target(tmp_path, [p1, p2])  # as another engine process would see it
    try:
        found = await again.instances("web")
        assert [(i.port, i.version, i.alive) for i in found] == [(p1, "1", True), (p2, "1", True)]
        assert [i.ref for i in found] == [i.ref for i in started]
        import anyio

        with anyio.fail_after(10):
            while refused(p1) or refused(p2):
                await anyio.sleep(0.05)
        assert served_version(p1) == "1"
        # a retried start of the same release in the same slot is a no-op, another one is refused
        assert (await again.start(ready, again.slots("web")[0])).ref == started[0].ref
        other = await again.prepare(release(make_release(tmp_path / "b", "2"), "2"))
        with pytest.raises(TargetError, match="still runs web 1"):
            await again.start(other, again.slots("web")[0])
    finally:
        for inst in await again.instances("web"):
            await again.stop(inst)
    assert refused(p1) and refused(p2)
    assert await t.instances("web") == []
    assert all(
        not os.path.exists(f"/proc/{i.ref}") or open(f"/proc/{i.ref}/stat").read().split()[2] == "Z" for i in started
    )


@pytest.mark.anyio
async def test_a_port_held_by_something_else_is_refused(tmp_path: Path) -> None:
    (port,) = ports.take(1)
    t = target(tmp_path, [port])
    ready = await t.prepare(release(make_release(tmp_path / "a", "1"), "1"))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(TargetError, match=f"port {port} .* in use"):
            await t.start(ready, t.slots("web")[0])


@pytest.mark.anyio
async def test_a_process_that_exits_is_reported_dead_with_its_output(tmp_path: Path) -> None:
    import anyio

    (port,) = ports.take(1)
    t = target(tmp_path, [port])
    ready = await t.prepare(release(make_release(tmp_path / "a", "1", crash=True), "1"))
    inst = await t.start(ready, t.slots("web")[0])
    with anyio.fail_after(10):
        while (await t.instances("web"))[0].alive:
            await anyio.sleep(0.05)
    assert "crashing on purpose" in t.log_tail(inst)
    await t.stop(inst)
    assert await t.instances("web") == []


@pytest.mark.anyio
async def test_old_release_dirs_are_pruned_but_live_ones_kept(tmp_path: Path) -> None:
    t = target(tmp_path, [5000], keep_releases=2)
    for v in ("1", "2", "3", "4"):
        await t.prepare(release(make_release(tmp_path / "a", v), v))
        os.utime(tmp_path / "state" / "releases" / "web" / v, (int(v), int(v)))
    kept = sorted(p.name for p in (tmp_path / "state" / "releases" / "web").iterdir())
    assert kept == ["3", "4"]


@pytest.mark.anyio
async def test_an_instance_that_dies_is_reaped_by_the_next_operation_on_any_service(tmp_path: Path) -> None:
    """A crashed instance must not stay a zombie for the life of a long-running server, even if
    nobody asks about its own service again."""
    import signal

    import anyio

    p1, p2 = ports.take(2)
    web = target(tmp_path, [p1])
    api = LocalTarget(
        LocalTargetConfig(command=APP_COMMAND, ports=[p2]), TargetContext(environment="t", state_dir=tmp_path / "s2")
    )
    ready = await web.prepare(release(make_release(tmp_path / "a", "1"), "1"))
    inst = await web.start(ready, web.slots("web")[0])
    assert inst.ref is not None
    pid = int(inst.ref)
    os.killpg(pid, signal.SIGKILL)

    def state() -> str | None:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None

    with anyio.fail_after(10):
        while state() not in ("Z", None):
            await anyio.sleep(0.02)
    assert state() == "Z"  # dead, and not yet reaped: nothing has looked since
    await api.instances("api")
    assert state() is None
    await web.stop(inst)
