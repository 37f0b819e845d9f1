"""Operator variables and matrix values reach a job's commands as data, never as shell code."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.pipeline._workspace import RunPaths
from engine.pipeline.manager import PipelineManager

INJECTION = "1; touch x; $(touch y) `touch z`"


@pytest.mark.parametrize("executor", ["sandbox", "local"])
def test_a_variable_value_cannot_run_commands(tmp_path: Path, executor: str) -> None:
    manager = PipelineManager(tmp_path / "ws", max_workers=1)
    run = manager.run_pipeline({"name": "inject", "source": None, "variables": {"RELEASE": "0"}, "stages": [
        {"name": "s", "jobs": [
            {"name": "echo", "runs_on": executor, "variables": {"TAG": "v${RELEASE}"},
             "commands": ["echo release=${RELEASE} tag=${TAG}", "printf '%s\\n' \"${RELEASE}\" > value.txt"]}]}]},
        {"RELEASE": INJECTION})
    assert run.status.value == "succeeded", run.reason
    workspace = tmp_path / "ws" / "runs" / run.run_id / "jobs" / "echo" / "workspace"
    assert (workspace / "value.txt").read_text() == INJECTION + "\n"
    assert not {"x", "y", "z"} & {p.name for p in workspace.iterdir()}
    log = manager.read_log(run.run_id, "echo").text
    assert f"release={INJECTION} tag=v{INJECTION}" in log


def test_a_matrix_value_cannot_run_commands(tmp_path: Path) -> None:
    manager = PipelineManager(tmp_path / "ws", max_workers=1)
    run = manager.run_pipeline({"name": "inject-matrix", "source": None, "stages": [{"name": "s", "jobs": [
        {"name": "m", "matrix": {"v": ["a; touch m1", "$(touch m2)"]}, "variables": {"v": "shadow"},
         "commands": ["echo matrix=${matrix.v} var=${v}; touch done"]}]}]})
    assert run.status.value == "succeeded", run.reason
    for job in run.jobs:
        workspace = RunPaths(tmp_path / "ws" / "runs" / run.run_id, tmp_path).workspace(job)
        assert sorted(p.name for p in workspace.iterdir()) == ["done"]
    logs = "\n".join(manager.read_log(run.run_id, job).text for job in run.jobs)
    assert "matrix=a; touch m1 var=shadow" in logs
    assert "matrix=$(touch m2) var=shadow" in logs


def test_a_value_inside_single_quotes_is_still_the_value_and_still_data(tmp_path: Path) -> None:
    """`'${NAME}'` gave the value when values were pasted; it still does, without becoming code. A quote in a
    comment opens nothing."""
    manager = PipelineManager(tmp_path / "ws", max_workers=1)
    run = manager.run_pipeline({"name": "quoted", "source": None, "stages": [{"name": "s", "jobs": [
        {"name": "q", "runs_on": "local", "matrix": {"py": ["3.11"]},
         "commands": ["printf '%s\\n' 'v=${RELEASE} m=${matrix.py}' > single.txt  # don't ${RELEASE}",
                      "test -z '${EMPTY}' && echo empty > empty.txt"]}]}]},
        {"RELEASE": INJECTION + " 'q'", "EMPTY": ""})
    assert run.status.value == "succeeded", run.reason
    (job,) = run.jobs
    workspace = RunPaths(tmp_path / "ws" / "runs" / run.run_id, tmp_path).workspace(job)
    assert (workspace / "single.txt").read_text() == f"v={INJECTION} 'q' m=3.11\n"
    assert (workspace / "empty.txt").read_text() == "empty\n"
    assert not {"x", "y", "z"} & {p.name for p in workspace.iterdir()}
