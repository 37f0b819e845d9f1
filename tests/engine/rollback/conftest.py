"""The deploy tests' real services, reused: a Docker engine, sshd hosts and nginx.

The fixtures are the targets engineer's (tests/engine/deploy/conftest.py) and the core
engineer's (nginx_fixture.py), re-exported here; only the port range is this suite's own
(18600-18699), so rollback tests never race the deploy tests for a port.
"""

from __future__ import annotations

import pytest

from tests.engine.deploy.conftest import (  # noqa: F401 - fixtures re-exported for this directory
    docker_client,
    docker_engine,
    services,
    sshd_hosts,
    sshd_server,
)
from tests.engine.deploy.nginx_fixture import nginx_server  # noqa: F401


@pytest.fixture(scope="session")
def port_pool() -> services.PortPool:
    return services.PortPool(18600, 18699)
