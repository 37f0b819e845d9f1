"""Loads corpus files one by one as a user would run them, in a child process of the test.

Usage: python -m tests.reliability._load_worker WORKSPACE FILE...
Prints `start <file>` before each file and one JSON line after it, so the parent can tell
which file hung or crashed the process.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def _attempt(kind: str, path: Path, workspace: Path) -> None:
    if kind == "pipelines":
        from engine.pipeline.manager import PipelineManager

        PipelineManager(workspace).run_pipeline(str(path))
    else:
        from engine.deploy.orchestrator import DeploymentOrchestrator

        orch = DeploymentOrchestrator(str(path), workspace)
        orch.create_deployment("d", "1.0", "staging")
        orch.deploy("d")


def main(argv: list[str]) -> int:
    workspace = Path(argv[0])
    from engine.errors import CicdError

    for name in argv[1:]:
        path = Path(name)
        kind = path.parent.name
        print(f"start {name}", flush=True)
        record: dict[str, object] = {"file": name}
        try:
            _attempt(kind, path, workspace)
            record.update(outcome="accepted")
        except CicdError as exc:
            record.update(outcome="refused", error=type(exc).__name__, message=str(exc),
                          issues=[vars_of(i) for i in getattr(exc, "issues", [])])
        except BaseException as exc:  # noqa: BLE001 - the point is to report crashes
            record.update(outcome="crashed", error=type(exc).__name__, message=str(exc)[:2000],
                          traceback=traceback.format_exc()[-4000:])
        print(json.dumps(record), flush=True)
    return 0


def vars_of(issue: object) -> dict[str, object]:
    return {k: getattr(issue, k) for k in ("file", "line", "column", "field", "message")}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
