"""`cicd-mcp report`: the insights report as one self-contained HTML file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]


def _cmd_report(args: argparse.Namespace) -> int:
    from engine.errors import NotFoundError
    from engine.insights.charts import render_report
    from engine.settings import get_settings
    from engine.store import insights as insights_repo
    from engine.store import open_store

    store = open_store(get_settings(PIPELINE_WORKSPACE=args.workspace).workspace)
    if args.pipeline and args.run is None and not insights_repo.pipeline_exists(store, args.pipeline):
        known = insights_repo.known_pipelines(store)
        raise NotFoundError(f"no pipeline {args.pipeline!r} is registered or has run here; known: "
                            + (", ".join(known) if known else "none"))
    html = render_report(store, args.pipeline, args.run)
    if args.out == "-":
        sys.stdout.write(html)
    else:
        Path(args.out).write_text(html, encoding="utf-8")
        print(f"report written to {args.out} ({len(html)} bytes)")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("report", help="HTML report: Gantt of a run, duration trend, health (inline SVG)")
    p.add_argument("pipeline", nargs="?")
    p.add_argument("--run", help="the run to chart (default: the newest of the pipeline)")
    p.add_argument("--out", default="report.html", help="output file, or - for stdout")
    p.set_defaults(func=_cmd_report)
