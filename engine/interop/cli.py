"""`cicd-mcp export`: a pipeline as a GitHub Actions workflow or a GitLab CI file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]


def _cmd_export(args: argparse.Namespace) -> int:
    from engine.interop import export_pipeline

    text, warnings = export_pipeline(args.pipeline, args.format)
    if args.out in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{args.format} workflow written to {args.out}", file=sys.stderr)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("export", help="write a pipeline as a GitHub Actions or GitLab CI file")
    p.add_argument("pipeline")
    p.add_argument("--format", required=True, choices=["github-actions", "gitlab-ci"])
    p.add_argument("--out", "-o", help="output file (default: stdout)")
    p.set_defaults(func=_cmd_export)
