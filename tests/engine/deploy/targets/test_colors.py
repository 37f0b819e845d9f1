"""Colour ports: one rule for every target kind (`targets.base.color_ports`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.deploy.targets.base import TargetContext, color_ports
from engine.deploy.targets.docker import DockerTargetConfig
from engine.deploy.targets.local import LocalTarget, LocalTargetConfig
from engine.deploy.targets.ssh import SSHTargetConfig
from engine.errors import InputError

CONFIGS: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "local": (LocalTargetConfig, {"kind": "local", "command": "serve {port}"}),
    "docker": (DockerTargetConfig, {"kind": "docker", "image": "app:1"}),
    "ssh": (SSHTargetConfig, {"kind": "ssh", "hosts": ["h1"], "deploy_path": "/srv", "command": "serve {port}"}),
}


@pytest.mark.parametrize("kind", CONFIGS)
@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"ports": [5000, 5001]}, {"blue": [5000, 5001], "green": [5100, 5101]}),
        ({"ports": [5000], "color_port_offset": 7}, {"blue": [5000], "green": [5007]}),
        ({"ports": [5000], "color_ports": {"blue": [6000], "green": [7000]}}, {"blue": [6000], "green": [7000]}),
        ({"ports": [5000], "color_ports": {"blue": [6000]}}, {"blue": [6000], "green": []}),
    ],
)
def test_every_target_kind_reads_colour_ports_alike(kind: str, settings: dict[str, Any],
                                                   expected: dict[str, list[int]]) -> None:
    model, base = CONFIGS[kind]
    assert model(**base, **settings).colors() == expected
    offset = settings.get("color_port_offset", 100)
    assert color_ports(settings["ports"], settings.get("color_ports"), offset) == expected


def test_a_colour_left_out_names_the_setting_when_it_is_wanted(tmp_path: Path) -> None:
    config = LocalTargetConfig(kind="local", command="serve {port}", ports=[5000], color_ports={"blue": [6000]})
    target = LocalTarget(config, TargetContext(environment="t", state_dir=tmp_path))
    assert [s.port for s in target.slots("web", "blue")] == [6000]
    with pytest.raises(InputError, match="color_ports.green"):
        target.slots("web", "green")
