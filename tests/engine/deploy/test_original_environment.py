"""An environment as the original design wrote it: checks without `type`, host/port/user an SSH target."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from engine.deploy import DeploymentOrchestrator, Environment, EnvironmentType
from engine.deploy.config import CommandCheck, HttpCheck, TcpCheck
from engine.deploy.targets.ssh import SSHTarget
from engine.errors import SpecError


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ({"url": "http://staging.example.com/health", "timeout": 30}, HttpCheck),
        ({"host": "db", "port": 5432}, TcpCheck),
        ({"port": 5432}, TcpCheck),
        ({"command": "curl -fsS localhost/health"}, CommandCheck),
        ({"type": "tcp", "port": 80}, TcpCheck),
    ],
)
def test_a_check_is_told_by_its_keys(raw: dict[str, object], kind: type) -> None:
    env = Environment(name="e", health_checks=[raw])
    assert isinstance(env.health_checks[0], kind)


def test_a_check_with_no_telling_key_is_refused_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("environments:\n  - name: e\n    health_checks:\n      - {timeout: 3}\n")
    from engine.deploy.config import load_deployment_config

    with pytest.raises(SpecError, match="health_checks"):
        load_deployment_config(path)


def test_host_port_user_mean_an_ssh_target_and_add_environment_is_register(tmp_path: Path) -> None:
    orch = DeploymentOrchestrator(workspace_dir=tmp_path)
    env = Environment(name="staging", type=EnvironmentType.STAGING, host="10.0.0.5", port=2222, user="deploy")
    assert orch.add_environment(env) is env and orch.get_environment("staging") == env
    target = orch.target_for(env)
    assert isinstance(target, SSHTarget)
    [slot] = target.slots("api")
    assert (slot.host, slot.port) == ("10.0.0.5", 8000)
    assert [(h.spec.host, h.spec.port, h.user) for h in target._hosts.values()] == [("10.0.0.5", 2222, "deploy")]
    rec = orch.create_deployment("api-1", "1", "staging")
    assert rec.target_kind == "ssh"
    anyio.run(orch.aclose)
