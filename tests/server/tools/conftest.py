"""Fixtures for the deployment and rollback tools: a local-target environment named production."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from engine.deploy import DeploymentOrchestrator
from tests.engine.deploy.helpers import APP_COMMAND

PORTS = (18860, 18861)   # outside every suite's port pool; the suite runs on one worker (tests/conftest.py)


def free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def deploy_config(tmp_path: Path, workspace: Path) -> Iterator[Path]:
    for port in PORTS:
        if not free(port):
            pytest.fail(f"port {port} is taken by something else")
    config = tmp_path / "deployment_config.yaml"
    config.write_text(textwrap.dedent(f"""\
        environments:
          - name: production
            type: production
            service: web
            target:
              kind: local
              command: "{APP_COMMAND}"
              ports: [{PORTS[0]}, {PORTS[1]}]
            health_checks:
              - {{type: http, url: "http://{{host}}:{{port}}/health", expect_status: 200, timeout: 2,
                  retries: 30, interval: 0.1}}
        """))
    yield config

    async def stop_all() -> None:
        orch = DeploymentOrchestrator(config, workspace)
        env = orch.get_environment("production")
        target = orch.target_for(env)
        for inst in await target.instances("web"):
            await target.stop(inst)
        await orch.aclose()

    anyio.run(stop_all)


