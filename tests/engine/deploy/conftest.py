"""Real services for the deploy tests: a Docker engine and sshd hosts, started here and stopped after.

Each service runs under its own temp dir on 127.0.0.1 (ports 18300-18499). When a binary is
missing the tests that need it are skipped, except under CI (`CI` set), where they fail: CI
installs everything (scripts/test.sh), so a missing service there is a broken setup.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._services import load_services, unavailable

services = load_services()


@pytest.fixture(scope="session")
def port_pool() -> services.PortPool:
    return services.PortPool(18300, 18499)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """A dockerd of our own with the test images built; yields its base_url (unix://...)."""
    root = Path(tempfile.mkdtemp(prefix="cicd-dk-", dir="/tmp"))
    try:
        engine = services.start_docker(root)
    except services.ServiceUnavailable as exc:
        shutil.rmtree(root, ignore_errors=True)
        unavailable(str(exc))
    try:
        try:
            services.build_test_images(engine.base_url, root / "contexts")
        except services.ServiceUnavailable as exc:
            unavailable(str(exc))
        yield engine.base_url
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def docker_client(docker_engine: str) -> Iterator[object]:
    import docker

    client = docker.DockerClient(base_url=docker_engine, timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="session")
def sshd_hosts(tmp_path_factory: pytest.TempPathFactory, port_pool: services.PortPool) -> Iterator[list]:
    """Three sshd "hosts" on 127.0.0.1 (separate daemons, host keys and ports), one client key.

    Each carries a private `deploy_path` and a service port in `extra`, as separate machines would
    have their own filesystem and ports.
    """
    base = tmp_path_factory.mktemp("sshd")
    client_key = base / "id_ed25519"
    servers: list = []
    try:
        try:
            services.make_key(client_key)
            for i in range(3):
                server = services.start_sshd(base / f"host{i}", port_pool.take(), client_key=client_key)
                servers.append(server)
        except services.ServiceUnavailable as exc:
            unavailable(str(exc))
        known_hosts = base / "known_hosts"
        known_hosts.write_text("".join(s.known_hosts.read_text() for s in servers))
        for s in servers:
            s.known_hosts = known_hosts
            s.extra["deploy_path"] = str(s.root / "app")
        yield servers
    finally:
        for s in servers:
            s.stop()


@pytest.fixture(scope="session")
def sshd_server(sshd_hosts: list) -> object:
    """One sshd host (the first of `sshd_hosts`): host, port, user, key_path, known_hosts."""
    return sshd_hosts[0]
