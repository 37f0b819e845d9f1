"""docker_registry (or ARTIFACT_REGISTRY): a built image is tagged and pushed to a real registry
(Debian's docker-registry, started here on 127.0.0.1), and an unreachable one fails the deploy naming it."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.deploy.targets.base import Release, TargetContext
from engine.deploy.targets.docker import DockerTarget, DockerTargetConfig
from engine.errors import TargetError
from tests.engine.deploy.conftest import unavailable

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

REGISTRY_PORT = 18850   # outside every suite's port pool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def registry() -> Iterator[str]:
    """A docker-registry of our own (storage in a temp dir); yields its host:port."""
    binary = shutil.which("docker-registry")
    if binary is None:
        unavailable("docker-registry is not installed (apt-get install docker-registry)")
    assert binary is not None
    root = Path(tempfile.mkdtemp(prefix="cicd-reg-", dir="/tmp"))
    config = root / "config.yml"
    config.write_text(json.dumps({
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"127.0.0.1:{REGISTRY_PORT}"},
    }))
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{REGISTRY_PORT}/v2/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    unavailable(f"docker-registry did not start: {(root / 'registry.log').read_text()[-500:]}")
                time.sleep(0.1)
        yield f"127.0.0.1:{REGISTRY_PORT}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _target(tmp_path: Path, base_url: str, registry: str) -> DockerTarget:
    config = DockerTargetConfig.model_validate({"kind": "docker", "base_url": base_url, "ports": [18001]})
    return DockerTarget(config, TargetContext(environment="test", state_dir=tmp_path, docker_registry=registry))


def _context(tmp_path: Path) -> str:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM svc:v1\nCOPY version /www/version\n")
    (ctx / "version").write_text("pushed-3\n")
    return str(ctx)


async def test_a_built_image_is_pushed_to_the_environments_registry(
    tmp_path: Path, docker_engine: str, registry: str
) -> None:
    target = _target(tmp_path, docker_engine, registry)
    try:
        rel = await target.prepare(Release(service="api", version="3", deployment_id="d-1",
                                           artifacts=(_context(tmp_path),)))
    finally:
        await target.close()
    assert rel.prepared["image"] == f"{registry}/api:3"
    with urllib.request.urlopen(f"http://{registry}/v2/api/tags/list", timeout=5) as resp:
        assert json.load(resp)["tags"] == ["3"]


async def test_an_unreachable_registry_fails_the_deploy_naming_it(tmp_path: Path, docker_engine: str) -> None:
    nowhere = f"127.0.0.1:{_free_port()}"
    target = _target(tmp_path, docker_engine, nowhere)
    try:
        with pytest.raises(TargetError, match=f"registry {nowhere}"):
            await target.prepare(Release(service="api", version="4", deployment_id="d-2",
                                         artifacts=(_context(tmp_path),)))
    finally:
        await target.close()
