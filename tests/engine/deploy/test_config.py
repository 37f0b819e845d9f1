"""Deployment config: the issue's example loads as written; bad input names file:line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.deploy import Environment, EnvironmentType
from engine.deploy.config import HttpCheck, load_deployment_config
from engine.deploy.targets.local import LocalTargetConfig
from engine.errors import NotFoundError, SpecError

# The issue's example, byte for byte (a YAML file so that no line-length rule can bend it).
ISSUE_EXAMPLE = (Path(__file__).parent / "data" / "issue_example.yaml").read_text()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_issue_example_loads_as_written(tmp_path: Path) -> None:
    config = load_deployment_config(write(tmp_path, ISSUE_EXAMPLE))
    (env,) = config.environments
    assert env.name == "dev" and env.type is EnvironmentType.DEVELOPMENT and env.service_name == "dev"
    assert isinstance(env.target, LocalTargetConfig) and env.target.ports == [18101, 18102]
    assert env.target.colors() == {"blue": [18101, 18102], "green": [18201, 18202]}
    (check,) = env.health_checks
    assert isinstance(check, HttpCheck) and check.retries == 10 and check.interval == 0.2
    # it round-trips through JSON (environments are stored for other processes)
    assert Environment.model_validate(env.model_dump(mode="json")) == env


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        ("  - name: dev\n    colour: red\n", "deploy.yaml:3:13: environments[0].colour", "Extra inputs"),
        (
            "  - name: dev\n    target: {kind: local, ports: [1]}\n",
            "deploy.yaml:3:13: environments[0].target.command",
            "Field required",
        ),
        (
            "  - name: dev\n    target:\n      kind: local\n      command: x\n      ports: [80, 70000]\n",
            "deploy.yaml:6:19: environments[0].target.ports[1]",
            "less than or equal to 65535",
        ),
        (
            "  - name: dev\n    target: {kind: ftp}\n",
            "deploy.yaml:3:20: environments[0].target.kind",
            "unknown target kind 'ftp'",
        ),
        (
            "  - name: dev\n    target: {kind: local, command: 'x {prot}', ports: [1]}\n",
            "environments[0].target",
            "unknown placeholder {prot}",
        ),
        (
            "  - name: dev\n    health_checks:\n      - {type: smoke}\n",
            "deploy.yaml:4:9: environments[0].health_checks[0]",
            "'smoke'",
        ),
        (
            "  - name: dev\n    health_checks:\n      - {type: http, url: 'ftp://x'}\n",
            "environments[0].health_checks[0].url",
            "http://",
        ),
        (
            "  - name: dev\n    health_checks:\n      - {type: command}\n",
            "environments[0].health_checks[0].command",
            "Field required",
        ),
        (
            "  - name: dev\n    pre_deploy_hooks: [{cmd: x}]\n",
            "environments[0].pre_deploy_hooks[0].cmd",
            "Extra",
        ),
        ("  - name: dev\n    type: prod\n", "deploy.yaml:3:11: environments[0].type", "development"),
        ("  - name: dev\n  - name: dev\n", "environments", "defined twice"),
        (
            "  - name: dev\n    router: {kind: nginx, listen: 80}\n",
            "environments[0].router.conf",
            "Field required",
        ),
    ],
)
def test_invalid_config_names_file_line_and_field(tmp_path: Path, body: str, where: str, message: str) -> None:
    path = write(tmp_path, "environments:\n" + body)
    with pytest.raises(SpecError) as err:
        load_deployment_config(path)
    text = str(err.value)
    assert where in text and message in text, text


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, "environments:\n  - name: dev\n    colour: red\n    target: {kind: local}\n")
    with pytest.raises(SpecError) as err:
        load_deployment_config(path)
    fields = {i.field for i in err.value.issues}
    assert {
        "environments[0].colour",
        "environments[0].target.command",
        "environments[0].target.ports",
    } <= fields


def test_yaml_syntax_errors_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"deploy.yaml:3:1: invalid YAML"):
        load_deployment_config(write(tmp_path, "environments:\n  - name: [dev\n"))
    with pytest.raises(NotFoundError):
        load_deployment_config(tmp_path / "nope.yaml")


def test_environments_in_code_validate_their_target_by_kind() -> None:
    env = Environment(name="x", target={"kind": "local", "command": "run {port}", "ports": [5]})  # type: ignore[arg-type]
    assert isinstance(env.target, LocalTargetConfig)
    with pytest.raises(ValidationError, match="target.ports: Field required"):
        Environment(name="x", target={"kind": "local", "command": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="blue and green ports overlap"):
        Environment(
            name="x",
            target={
                "kind": "local",
                "command": "x",
                "ports": [1, 2],  # type: ignore[arg-type]
                "color_port_offset": 1,
            },
        )
