"""DockerTarget against the real Docker engine started by the `docker_engine` fixture."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from engine.deploy.targets.base import TARGETS, Instance, Release, TargetContext
from engine.deploy.targets.docker import LABEL, DockerTarget, DockerTargetConfig
from engine.errors import InputError, TargetError
from tests.engine.deploy.targets.http_probe import get, wait_body, wait_status

pytestmark = [pytest.mark.anyio]


def make_target(tmp_path: Path, base_url: str, env: str = "test", **settings: object) -> DockerTarget:
    config = DockerTargetConfig.model_validate({"kind": "docker", "base_url": base_url, **settings})
    return DockerTarget(config, TargetContext(environment=env, state_dir=tmp_path))


def release(
    service: str, version: str, *artifacts: str, dep: str = "dep-1", color: str | None = None
) -> Release:
    return Release(service=service, version=version, deployment_id=dep, artifacts=artifacts, color=color)


def test_a_failed_unix_connect_leaves_no_socket_behind(tmp_path: Path) -> None:
    """docker-py's own connect leaves the socket of a failed connect to the garbage collector;
    the target installs one that closes it (a leak would fail this test as an unraisable
    ResourceWarning when collected below)."""
    import gc

    from docker.transport.unixconn import UnixHTTPConnection

    from engine.deploy.targets.docker import _close_failed_unix_connects

    _close_failed_unix_connects()
    conn = UnixHTTPConnection("http+docker://localhost", str(tmp_path / "no-engine.sock"), timeout=1)
    with pytest.raises(FileNotFoundError):
        conn.connect()
    del conn
    gc.collect()


def test_registry_resolves_docker_kind() -> None:
    assert TARGETS["docker"] is DockerTarget
    assert DockerTarget.config_model is DockerTargetConfig


def test_slots_follow_ports_and_colours(tmp_path: Path) -> None:
    target = make_target(
        tmp_path, "unix:///nowhere", ports=[18001, 18002], color_ports={"blue": [18011], "green": [18021]}
    )
    assert [(s.slot, s.port, s.color) for s in target.slots("web")] == [
        ("0", 18001, None),
        ("1", 18002, None),
    ]
    assert [(s.slot, s.port) for s in target.slots("web", "blue")] == [("blue-0", 18011)]
    assert [(s.slot, s.port) for s in target.slots("web", "green")] == [("green-0", 18021)]


def test_colours_default_to_an_offset_and_missing_ones_name_the_setting(tmp_path: Path) -> None:
    target = make_target(tmp_path, "unix:///nowhere", ports=[18001])
    assert [s.port for s in target.slots("web", "green")] == [18101]
    only_blue = make_target(tmp_path, "unix:///nowhere", ports=[18001], color_ports={"blue": [18011]})
    with pytest.raises(InputError, match="color_ports.green"):
        only_blue.slots("web", "green")
    with pytest.raises(ValueError, match="overlap"):
        make_target(tmp_path, "unix:///nowhere", color_ports={"blue": [1], "green": [1]})


@pytest.mark.parametrize("ports", [[0], [18001, 18001], [70000]])
def test_bad_ports_are_refused_by_the_config(ports: list[int]) -> None:
    with pytest.raises(ValueError, match="ports"):
        DockerTargetConfig.model_validate({"kind": "docker", "ports": ports})


async def test_unreachable_engine_is_a_target_error(tmp_path: Path) -> None:
    target = make_target(tmp_path, f"unix://{tmp_path}/no.sock", ports=[18001])
    with pytest.raises(TargetError, match="docker"):
        await target.instances("web")
    await target.close()


@pytest.mark.docker
async def test_start_serves_labels_lists_and_stops(
    tmp_path: Path, docker_engine: str, docker_client, port_pool
) -> None:
    port = port_pool.take()
    target = make_target(tmp_path, docker_engine, ports=[port])
    try:
        rel = await target.prepare(release("web", "1", "svc:v1", dep="dep-42"))
        assert rel.prepared["image"] == "svc:v1"
        assert rel.prepared["image_id"].startswith("sha256:")
        (slot,) = target.slots("web")
        inst = await target.start(rel, slot)
        assert (inst.version, inst.deployment_id, inst.slot, inst.port) == ("1", "dep-42", "0", port)

        addr = await target.address(inst)
        assert wait_body(f"http://{addr}/version", "v1") == "v1"

        container = docker_client.containers.get(inst.ref)
        assert container.labels[f"{LABEL}.service"] == "web"
        assert container.labels[f"{LABEL}.version"] == "1"
        assert container.labels[f"{LABEL}.deployment-id"] == "dep-42"
        assert container.labels[f"{LABEL}.environment"] == "test"
        assert container.attrs["HostConfig"]["Init"] is True
        bindings = container.attrs["HostConfig"]["PortBindings"]["8080/tcp"]
        assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]

        # A fresh target (another engine process) finds the container through its labels.
        other = make_target(tmp_path, docker_engine, ports=[port])
        (seen,) = await other.instances("web")
        assert (seen.ref, seen.version, seen.alive, seen.port) == (inst.ref, "1", True, port)
        await other.close()

        # Starting the same release into the same slot again is a no-op (idempotent).
        again = await target.start(rel, slot)
        assert again.ref == inst.ref

        await target.stop(inst)
        assert await target.instances("web") == []
        assert get(f"http://{addr}/version") is None
        await target.stop(inst)  # already gone: not an error
    finally:
        for leftover in await target.instances("web"):
            await target.stop(leftover)
        await target.close()


@pytest.mark.docker
async def test_instances_are_scoped_by_environment_and_service(
    tmp_path: Path, docker_engine: str, port_pool
) -> None:
    a = make_target(tmp_path, docker_engine, env="staging", ports=[port_pool.take()])
    b = make_target(tmp_path, docker_engine, env="prod", ports=[port_pool.take()])
    try:
        ia = await a.start(await a.prepare(release("api", "1", "svc:v1")), a.slots("api")[0])
        ib = await b.start(await b.prepare(release("api", "2", "svc:v2")), b.slots("api")[0])
        assert [i.ref for i in await a.instances("api")] == [ia.ref]
        assert [i.ref for i in await b.instances("api")] == [ib.ref]
        assert await a.instances("other") == []
    finally:
        for t in (a, b):
            for i in await t.instances("api"):
                await t.stop(i)
            await t.close()


@pytest.mark.docker
async def test_missing_image_is_an_error_and_nothing_is_pulled(
    tmp_path: Path, docker_engine: str, docker_client
) -> None:
    import docker.errors

    target = make_target(tmp_path, docker_engine, ports=[18001])
    with pytest.raises(TargetError, match=r"'svc:does-not-exist' is not on .* target.pull is 'never'"):
        await target.prepare(release("web", "9", "svc:does-not-exist"))
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get("svc:does-not-exist")
    await target.close()


async def test_release_without_image_names_the_setting(tmp_path: Path) -> None:
    target = make_target(tmp_path, "unix:///nowhere", ports=[18001])
    with pytest.raises(InputError, match="target.image"):
        await target.prepare(release("web", "1"))


async def test_path_that_is_no_build_context_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    target = make_target(tmp_path, "unix:///nowhere", ports=[18001])
    with pytest.raises(InputError, match="neither an image reference nor a build context"):
        await target.prepare(release("web", "1", str(tmp_path / "notes.txt")))


@pytest.mark.docker
async def test_image_template_from_config(tmp_path: Path, docker_engine: str, port_pool) -> None:
    target = make_target(tmp_path, docker_engine, ports=[port_pool.take()], image="svc:v{version}")
    rel = await target.prepare(release("web", "2"))
    assert rel.prepared["image"] == "svc:v2"
    await target.close()


@pytest.mark.docker
async def test_build_context_tarball_is_built_and_served(
    tmp_path: Path, docker_engine: str, port_pool
) -> None:
    ctx = tmp_path / "ctx.tar.gz"
    dockerfile = b"FROM svc:v1\nCOPY version /www/version\n"
    with tarfile.open(ctx, "w:gz") as tar:
        for name, data in (("Dockerfile", dockerfile), ("version", b"built-7\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    port = port_pool.take()
    target = make_target(tmp_path, docker_engine, ports=[port])
    try:
        rel = await target.prepare(release("Web App", "7+build", str(ctx)))
        assert rel.prepared["image"] == "web-app:7-build"
        inst = await target.start(rel, target.slots("Web App")[0])
        assert wait_body(f"http://127.0.0.1:{port}/version", "built-7") == "built-7"
        await target.stop(inst)
    finally:
        await target.close()


@pytest.mark.docker
async def test_build_failure_is_a_target_error_with_the_log(tmp_path: Path, docker_engine: str) -> None:
    ctx = tmp_path / "broken"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM svc:v1\nCOPY no-such-file /x\n")
    target = make_target(tmp_path, docker_engine, ports=[18001])
    with pytest.raises(TargetError, match="no-such-file"):
        await target.prepare(release("web", "3", str(ctx)))
    await target.close()


@pytest.mark.docker
async def test_version_that_exits_is_seen_dead_with_its_logs(
    tmp_path: Path, docker_engine: str, port_pool
) -> None:
    target = make_target(tmp_path, docker_engine, ports=[port_pool.take()])
    try:
        inst = await target.start(
            await target.prepare(release("exiter", "x", "svc:exits")), target.slots("exiter")[0]
        )
        for _ in range(100):
            (seen,) = await target.instances("exiter")
            if not seen.alive:
                break
        assert seen.alive is False
        assert "missing configuration" in await target.logs(inst)
        # A dead container in the slot does not block the next start.
        again = await target.start(
            await target.prepare(release("exiter", "1", "svc:v1")), target.slots("exiter")[0]
        )
        assert [(i.ref, i.version) for i in await target.instances("exiter")] == [(again.ref, "1")]
    finally:
        for i in await target.instances("exiter"):
            await target.stop(i)
        await target.close()


@pytest.mark.docker
async def test_occupied_slot_and_taken_port_are_refused(
    tmp_path: Path, docker_engine: str, port_pool
) -> None:
    port = port_pool.take()
    target = make_target(tmp_path, docker_engine, ports=[port])
    squatter = make_target(tmp_path, docker_engine, env="squatter", ports=[port])
    try:
        v1 = await target.prepare(release("web", "1", "svc:v1"))
        v2 = await target.prepare(release("web", "2", "svc:v2"))
        inst = await target.start(v1, target.slots("web")[0])
        with pytest.raises(TargetError, match="occupied by version 1"):
            await target.start(v2, target.slots("web")[0])
        with pytest.raises(TargetError, match="starting svc:v2"):
            await squatter.start(v2, squatter.slots("web")[0])
        assert await squatter.instances("web") == []  # the container that could not bind is removed
        assert wait_body(f"http://127.0.0.1:{port}/version", "v1") == "v1"
        await target.stop(inst)
    finally:
        await target.close()
        await squatter.close()


@pytest.mark.docker
async def test_blue_and_green_run_side_by_side(tmp_path: Path, docker_engine: str, port_pool) -> None:
    blue_port, green_port = port_pool.take_many(2)
    target = make_target(tmp_path, docker_engine, color_ports={"blue": [blue_port], "green": [green_port]})
    try:
        blue = await target.start(
            await target.prepare(release("bg", "1", "svc:v1", color="blue")), target.slots("bg", "blue")[0]
        )
        green = await target.start(
            await target.prepare(release("bg", "2", "svc:v2", color="green")), target.slots("bg", "green")[0]
        )
        assert wait_body(f"http://127.0.0.1:{blue_port}/version", "v1") == "v1"
        assert wait_body(f"http://127.0.0.1:{green_port}/version", "v2") == "v2"
        assert wait_status(f"http://127.0.0.1:{green_port}/health", 200) == 200
        colours = {i.color: i.version for i in await target.instances("bg")}
        assert colours == {"blue": "1", "green": "2"}
        for inst in (blue, green):
            await target.stop(inst)
    finally:
        await target.close()


@pytest.mark.docker
async def test_bad_health_image_answers_500(tmp_path: Path, docker_engine: str, port_pool) -> None:
    port = port_pool.take()
    target = make_target(tmp_path, docker_engine, ports=[port])
    try:
        inst = await target.start(
            await target.prepare(release("sick", "b", "svc:bad-health")), target.slots("sick")[0]
        )
        assert wait_status(f"http://127.0.0.1:{port}/health", 500) == 500
        await target.stop(inst)
    finally:
        await target.close()


def test_instance_roundtrip_keeps_docker_data() -> None:
    inst = Instance(service="web", slot="0", port=1, ref="abc", data={"container": "c"})
    assert Instance.from_json(inst.to_json()) == inst
