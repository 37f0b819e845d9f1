"""Pipeline files: what is accepted, and every refusal names file, line, column and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import NotFoundError, SpecError
from engine.spec.model import load_pipeline

ISSUE_EXAMPLE = """\
name: main-build
trigger: {branches: [main, develop], events: [push, pull_request]}
variables: {PY: python3}
secrets: [PYPI_TOKEN]
defaults: {timeout: 600, retry: {max: 0}}
stages:
  - name: build
    jobs:
      - name: build-python
        language: python
        commands: ["${PY} -m pip wheel . -w dist"]
        artifacts: {paths: ["dist/*.whl"]}
  - name: test
    depends_on: [build]
    jobs:
      - name: unit-tests
        commands: ["${PY} -m pytest -m unit"]
        retry: {max: 2, when: [timeout, infrastructure]}
        timeout: 300
      - name: lint
        commands: ["ruff check ."]
        allow_failure: true
        if: "branch == 'main'"
        matrix: {py: ["3.11", "3.12"]}
        depends_on: [build-python]
"""


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_issue_example_expands_to_a_job_graph(tmp_path: Path) -> None:
    plan = load_pipeline(write(tmp_path, ISSUE_EXAMPLE))
    assert plan.name == "main-build"
    assert list(plan.jobs) == ["build-python", "unit-tests", "lint[py=3.11]", "lint[py=3.12]"]
    assert plan.jobs["unit-tests"].needs == ["build-python"]
    assert plan.jobs["unit-tests"].retry.max == 2
    assert plan.jobs["unit-tests"].retry.when == ["timeout", "infrastructure"]
    assert plan.jobs["unit-tests"].timeout == 300
    assert plan.jobs["build-python"].timeout == 600  # from defaults
    assert plan.jobs["lint[py=3.12]"].matrix == {"py": "3.12"}
    assert plan.jobs["lint[py=3.11]"].allow_failure


def test_original_spellings_are_aliases() -> None:
    plan = load_pipeline({"name": "p", "stages": [{"name": "s", "jobs": [
        {"name": "a", "commands": ["true"]},
        {"name": "b", "commands": ["true"], "dependencies": ["a"], "retry_count": 3},
    ]}]})
    assert plan.jobs["b"].needs == ["a"]
    assert plan.jobs["b"].retry.max == 3


def test_stages_follow_each_other_unless_told_otherwise() -> None:
    plan = load_pipeline({"name": "p", "stages": [
        {"name": "one", "jobs": [{"name": "a", "commands": ["true"]}, {"name": "b", "commands": ["true"]}]},
        {"name": "two", "jobs": [{"name": "c", "commands": ["true"]}]},
        {"name": "three", "depends_on": [], "jobs": [{"name": "d", "commands": ["true"]}]},
        {"name": "four", "depends_on": ["one"], "jobs": [{"name": "e", "commands": ["true"]},
                                                     {"name": "f", "commands": ["true"], "depends_on": ["c"]}]},
    ]})
    assert plan.jobs["c"].needs == ["a", "b"]
    assert plan.jobs["d"].needs == []
    assert plan.jobs["e"].needs == ["a", "b"]
    assert plan.jobs["f"].needs == ["c"]


def test_dependency_on_a_matrix_job_means_all_of_it() -> None:
    plan = load_pipeline({"name": "p", "stages": [{"name": "s", "jobs": [
        {"name": "t", "commands": ["true"], "matrix": {"os": ["a", "b"], "py": [1, 2]}},
        {"name": "u", "commands": ["true"], "depends_on": ["t"]},
    ]}]})
    assert plan.jobs["u"].needs == ["t[os=a,py=1]", "t[os=a,py=2]", "t[os=b,py=1]", "t[os=b,py=2]"]


# (file text, expected fragments of the message: each must appear)
INVALID = [
    ("name: p\nstages:\n  - name: s\n    jobs:\n      - name: a\n        commands: [x]\n        timout: 5\n",
     ["pipeline.yaml:7:9", "stages[0].jobs[0].timout", "unknown field 'timout'", "did you mean 'timeout'"]),
    ("name: p\nstages:\n  - name: s\n    jobs:\n      - name: a\n        commands: x\n",
     ["pipeline.yaml:6:19", "stages[0].jobs[0].commands", "valid list"]),
    ("name: p\nstages:\n  - name: s\n    jobs:\n      - name: a\n        commands: [x]\n        timeout: soon\n",
     ["pipeline.yaml:7:18", "stages[0].jobs[0].timeout", "number"]),
    ("name: p\nstages:\n  - name: s\n    jobs:\n      - {name: a, commands: [x]}\n      - {name: a, commands: [y]}\n",
     ["pipeline.yaml:6:16", "duplicate job name 'a'"]),
    ("name: p\nstages:\n  - name: s\n    jobs:\n      - {name: a, commands: [x], depends_on: [nope]}\n",
     ["pipeline.yaml:5:47", "'nope' names no job or stage", "jobs: a", "stages: s"]),
    ("name: p\nstages:\n  - name: s\n    jobs:\n      - {name: a, commands: [x], depends_on: [b]}\n"
     "      - {name: b, commands: [x], depends_on: [c]}\n      - {name: c, commands: [x], depends_on: [a]}\n",
     ["pipeline.yaml:5:46", "dependency cycle: a -> b -> c -> a"]),
    ("name: p\nstages:\n  - name: s\n    jobs:\n      - {name: a, commands: [x], if: \"branch = 'main'\"}\n",
     ["pipeline.yaml:5:38", "stages[0].jobs[0].if", "unexpected character '='"]),
    ("name: p\nstages:\n  - name: s\n    jobs:\n      - {name: a, commands: [x], if: \"brunch == 'main'\"}\n",
     ["unknown name 'brunch'", "branch"]),
    ("name: p\nstages:\n  - name: s\n    jobs:\n      - {name: a, commands: [x], if: \"deploy()\"}\n",
     ["unknown function deploy()"]),
    ("name: p\nstages:\n  - name: s\n    jobs:\n      - name: a\n        commands: [x]\n        commands: [y]\n",
     ["pipeline.yaml:7:9", "duplicate key 'commands'"]),
    ("name: p\nstages:\n  - name: s\n    jobs:\n      - name: a\n        commands: [x\n",
     ["pipeline.yaml:", "invalid YAML"]),
    ("name: p\nstages: []\n", ["pipeline.yaml:2:9", "stages", "at least 1"]),
    ("name: 'bad name!'\nstages:\n  - name: s\n    jobs: [{name: a, commands: [x]}]\n",
     ["pipeline.yaml:1:7", "name", "pattern"]),
    ("name: p\nstages:\n  - name: s\n    jobs: [{name: a}]\n", ["needs commands"]),
    ("name: p\nstages:\n  - name: s\n    jobs: [{name: a, commands: [x], retry: {max: 99}}]\n",
     ["stages[0].jobs[0].retry.max", "less than or equal to 10"]),
    ("name: p\nstages:\n  - name: s\n    jobs: [{name: a, commands: [x], retry: {when: [sometimes]}}]\n",
     ["stages[0].jobs[0].retry.when[0]", "'failure', 'timeout' or 'infrastructure'"]),
    ("name: p\nstages:\n  - name: s\n    jobs: [{name: a, commands: [x], artifacts: [../escape]}]\n",
     ["inside the job workspace"]),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
     ["alias bomb"]),
    ("- just\n- a list\n", ["a pipeline is a mapping"]),
    ("name: p\nstages:\n  - name: s\n    jobs: [{name: a, commands: [x], matrix: {py: []}}]\n", ["has no values"]),
]


@pytest.mark.parametrize(("text", "fragments"), INVALID, ids=[f"case{i}" for i in range(len(INVALID))])
def test_invalid_pipelines_are_refused_with_where_and_what(tmp_path: Path, text: str, fragments: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        load_pipeline(write(tmp_path, text))
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_a_pipeline_without_name_is_named_after_its_file_and_refused_elsewhere(tmp_path: Path) -> None:
    text = "stages:\n  - name: s\n    jobs: [{name: a, commands: [x]}]\n"
    (tmp_path / "nightly.yaml").write_text(text)
    assert load_pipeline(tmp_path / "nightly.yaml").name == "nightly"   # as GitHub Actions names workflows
    with pytest.raises(SpecError, match="missing required field 'name'"):
        load_pipeline(text)
    (tmp_path / "not a name!.yaml").write_text(text)
    with pytest.raises(SpecError, match="missing required field 'name'"):
        load_pipeline(tmp_path / "not a name!.yaml")


ORIGINAL = """\
name: main-build
trigger:
  branches: [main, develop]
  events: [push, pull_request]
stages:
  - name: build
    jobs:
      - name: build-python
        language: python
        commands: ["uv sync --all-extras", "uv run black --check src/", "uv run ruff check src/"]
  - name: test
    depends_on: [build]
    jobs:
      - name: unit-tests
        commands: ["uv run pytest -m unit"]
      - name: integration-tests
        commands: ["uv run pytest -m integration"]
  - name: deploy
    depends_on: [test]
    environment: staging
    strategy: rolling
    rollback_on_failure: true
"""


def test_a_stage_with_an_environment_and_no_jobs_is_a_deploy_stage() -> None:
    plan = load_pipeline(ORIGINAL)
    deploy = plan.jobs["deploy"]
    assert deploy.deploy_stage and deploy.commands == [] and deploy.stage == "deploy"
    assert deploy.needs == ["unit-tests", "integration-tests"]
    assert (deploy.environment, deploy.strategy) == ("staging", "rolling")
    assert deploy.deploy is not None and deploy.deploy.rollback_on_failure is True
    assert not any(j.deploy_stage for n, j in plan.jobs.items() if n != "deploy")
    assert plan.environments == ["staging"]
    no_rollback = load_pipeline(ORIGINAL.replace("rollback_on_failure: true", "rollback_on_failure: false"))
    assert no_rollback.jobs["deploy"].deploy is not None
    assert no_rollback.jobs["deploy"].deploy.rollback_on_failure is False


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ("  - name: s\n", "a stage needs `jobs`"),
        ("  - name: s\n    strategy: rolling\n    jobs: [{name: a, commands: [x]}]\n", "need an environment"),
        ("  - name: s\n    rollback_on_failure: true\n    jobs: [{name: a, commands: [x]}]\n", "need an environment"),
    ],
)
def test_a_stage_without_jobs_needs_an_environment(stage: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_pipeline("name: p\nstages:\n" + stage)


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"name: p\xff\xfe\n")
    with pytest.raises(SpecError, match="not valid UTF-8"):
        load_pipeline(path)


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        load_pipeline(tmp_path / "nope.yaml")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = "name: p\nstages:\n  - name: s\n    jobs:\n      - {name: a, commands: [x], timout: 1, retyr: 2}\n"
    with pytest.raises(SpecError) as info:
        load_pipeline(write(tmp_path, text))
    assert len(info.value.issues) == 2
