"""Honest outcomes: a run in which no job ran is `skipped`, never `succeeded`; a job skipped by its
condition skips the jobs that need it without failing the run (GitHub Actions' rule)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.errors import InvalidTransition
from engine.pipeline.manager import PipelineManager
from engine.pipeline.states import RUN_TRANSITIONS, RunStatus, check_run_move


def _pipeline(*jobs: dict[str, Any]) -> dict[str, Any]:
    return {"name": "p", "stages": [{"name": "s", "jobs": list(jobs)}]}


def test_every_job_skipped_is_a_skipped_run(tmp_path: Path) -> None:
    run = PipelineManager(tmp_path / "ws").run_pipeline(_pipeline(
        {"name": "a", "commands": ["true"], "if": "branch == 'release'"},
        {"name": "b", "commands": ["true"], "depends_on": ["a"]},
    ), branch="main")
    assert run.status == RunStatus.SKIPPED
    assert run.reason == "nothing ran: every job was skipped"
    assert run.jobs["b"].reason == "needed job a was skipped"


def test_a_skipped_job_skips_its_dependents_and_the_run_still_succeeds(tmp_path: Path) -> None:
    run = PipelineManager(tmp_path / "ws").run_pipeline(_pipeline(
        {"name": "build", "commands": ["true"]},
        {"name": "release", "commands": ["true"], "depends_on": ["build"], "if": "branch == 'release'"},
        {"name": "announce", "commands": ["true"], "depends_on": ["release"]},
    ), branch="main")
    assert run.status == RunStatus.SUCCEEDED
    assert {n: j.status.value for n, j in run.jobs.items()} == {
        "build": "succeeded", "release": "skipped", "announce": "skipped"}


@pytest.mark.parametrize("old", list(RunStatus))
def test_skipped_is_final_and_reached_only_from_running(old: RunStatus) -> None:
    assert RunStatus.SKIPPED.finished
    if old == RunStatus.RUNNING:
        assert check_run_move("r", old, RunStatus.SKIPPED) == RunStatus.SKIPPED
    else:
        assert RunStatus.SKIPPED not in RUN_TRANSITIONS[old]
        with pytest.raises(InvalidTransition):
            check_run_move("r", old, RunStatus.SKIPPED)
