"""Real recorded runs for the insights tests: real pipelines run by the real PipelineManager.

The jobs' work is short real processes (sleep, cat, files on disk). Recorded once per session."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.pipeline.manager import PipelineManager
from engine.pipeline.results import PipelineRun

RUNS = 3


def job(name: str, *commands: str, needs: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "commands": list(commands), "depends_on": needs or [], **extra}


def pipeline(name: str, *jobs: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "source": None, "max_workers": 4, "stages": [{"name": "main", "jobs": list(jobs)}]}


# integration is slow and on the critical path; every edge carries an artifact.
SLOW_PATH = pipeline(
    "slowpath",
    job("lint", "sleep 0.2", "echo ok > lint.txt", artifacts=["lint.txt"]),
    job("unit", "sleep 0.3", "echo ok > unit.xml", artifacts=["unit.xml"]),
    job("integration", "sleep 1.2", "echo ok > it.xml", artifacts=["it.xml"]),
    job("package", "cat lint.txt unit.xml it.xml", "sleep 0.1", needs=["lint", "unit", "integration"]),
)


def false_dep(name: str, *, with_edge: bool) -> dict[str, Any]:
    """test needs prepare, which hands it nothing (no artifacts); it really uses compile's app.bin."""
    return pipeline(
        name,
        job("prepare", "sleep 1.5"),
        job("compile", "sleep 0.2", "echo binary > app.bin", artifacts=["app.bin"]),
        job("test", "cat app.bin", "sleep 1.0", needs=["prepare", "compile"] if with_edge else ["compile"]),
    )


# flaky fails its first attempt in each run after half a second (marker file in its workspace).
FLAKY = pipeline(
    "flaky",
    job(
        "flaky",
        "if [ ! -e .tried ]; then touch .tried; sleep 0.5; exit 1; fi",
        "sleep 0.1",
        retry={"max": 2, "backoff": 0},
    ),
    job("stable", "sleep 0.1"),
)

BROKEN = pipeline("broken", job("compile", "echo 'error: missing semicolon' >&2", "exit 2"))


@dataclass
class Recorded:
    manager: PipelineManager
    runs: dict[str, list[PipelineRun]] = field(default_factory=dict)

    def mean_duration(self, name: str) -> float:
        # As stored: the figures the analysis reads.
        durations = [self.manager.get_run(r.run_id).duration or 0.0 for r in self.runs[name]]
        return sum(durations) / len(durations)


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    ws: Path = tmp_path_factory.mktemp("insights-ws")
    rec = Recorded(PipelineManager(ws, max_workers=4))
    for spec in (
        SLOW_PATH,
        false_dep("falsedep", with_edge=True),
        false_dep("falsedep-fixed", with_edge=False),
        FLAKY,
        BROKEN,
    ):
        name = spec["name"]
        count = 2 if name == "broken" else RUNS
        rec.runs[name] = [rec.manager.run_pipeline(spec) for _ in range(count)]
    return rec
