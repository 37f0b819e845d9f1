"""The engine's command line: run pipelines, list runs, read logs, plus the insights and interop commands.

`build_parser()` is what the `cicd-mcp` entry point extends with the server's commands; the
engine itself never imports the server.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from engine.errors import CicdError, InputError

__all__ = ["build_parser", "main"]

_STATUS_MARK = {
    "succeeded": "ok", "failed": "FAIL", "timed_out": "TIMEOUT", "cancelled": "CANCEL", "skipped": "skip",
    "running": "..", "pending": "", "retrying": "retry",
}

# Other packages add their subcommands here: module -> function(subparsers).
_EXTENSIONS = ("engine.insights.cli", "engine.interop.cli")


def _parse_vars(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--var {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        out[key] = value
    return out


def _manager(args: argparse.Namespace) -> Any:
    from engine.pipeline.manager import PipelineManager

    return PipelineManager(args.workspace, max_workers=getattr(args, "workers", None))


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def _cmd_run(args: argparse.Namespace) -> int:
    manager = _manager(args)
    tty = sys.stdout.isatty()
    start = time.monotonic()

    def on_event(event: Any) -> None:
        if args.quiet:
            return
        elapsed = time.monotonic() - start
        if event.kind in ("job_started", "job_finished", "job_retrying", "job_skipped"):
            mark = _STATUS_MARK.get(event.status or "", event.status or "")
            line = f"[{elapsed:7.1f}s] [{event.done:>3}/{event.total}] {mark:<7} {event.message}"
        else:
            line = f"[{elapsed:7.1f}s] {event.message}"
        if tty and event.status in ("failed", "timed_out"):
            line = f"\x1b[31m{line}\x1b[0m"
        elif tty and event.status == "succeeded":
            line = f"\x1b[32m{line}\x1b[0m"
        print(line, flush=True)

    run = manager.run_pipeline(args.pipeline, _parse_vars(args.var), on_event=on_event, branch=args.branch,
                               event=args.event, skip_unsupported=args.skip_unsupported)
    print()
    print(f"run {run.run_id}  pipeline {run.pipeline}  status {run.status.value}  "
          f"duration {_fmt_duration(run.duration)}")
    rows = [("JOB", "STAGE", "STATUS", "ATTEMPTS", "EXIT", "DURATION", "CPU", "PEAK RSS", "NOTE")]
    for job in run.jobs.values():
        status = job.status.value + (" (allowed)" if job.allow_failure and job.status.value == "failed" else "")
        exit_code = "" if job.exit_code is None else str(job.exit_code)
        rows.append((job.name, job.stage, status, str(job.attempts), exit_code,
                     _fmt_duration(job.duration), "" if job.cpu_seconds is None else f"{job.cpu_seconds:.2f}s",
                     "" if job.peak_rss_mb is None else f"{job.peak_rss_mb:.0f}MB", (job.reason or "")[:60]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for job in run.failed_jobs:
        tail = manager.read_log(run.run_id, job.name, tail=args.tail)
        print(f"\n--- {job.name}: last lines of its log ({tail.note}) ---")
        print(tail.text)
    arts = [a for j in run.jobs.values() for a in j.artifacts]
    if arts:
        print("\nartifacts:")
        for a in arts:
            print(f"  {a.job}: {a.path}  {a.size} bytes  sha256 {a.sha256[:16]}…")
    warnings = json.loads(run.context.get("import_warnings") or "[]")
    if warnings:
        print(f"\nimport warnings ({len(warnings)}):")
        for w in warnings:
            print(f"  warning: {w}")
    print(f"\nlogs: cicd-mcp logs {run.run_id} JOB    (workspace {manager.workspace})")
    if run.status.value == "skipped":
        print("nothing ran: every job was skipped" + ("" if args.allow_empty else
                                                     " (exit 1; --allow-empty accepts that)"), file=sys.stderr)
        return 0 if args.allow_empty else 1
    return 0 if run.status.value == "succeeded" else 1


def _cmd_runs(args: argparse.Namespace) -> int:
    manager = _manager(args)
    runs = manager.list_runs(args.pipeline, limit=args.limit)
    if args.json:
        print(json.dumps([{"run_id": r.run_id, "pipeline": r.pipeline, "status": r.status.value,
                           "created_at": r.created_at, "duration": r.duration, "reason": r.reason} for r in runs],
                         indent=2))
        return 0
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at))
        print(f"{r.run_id}  {when}  {r.pipeline:<24} {r.status.value:<12} {_fmt_duration(r.duration):>8}  "
              f"{r.reason or ''}")
    if not runs:
        print("no runs yet")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    manager = _manager(args)
    run = manager.get_run(args.run_id)
    print(json.dumps({
        "run_id": run.run_id, "pipeline": run.pipeline, "status": run.status.value, "reason": run.reason,
        "duration": run.duration, "context": run.context,
        "jobs": {n: {"status": j.status.value, "attempts": j.attempts, "exit_code": j.exit_code,
                     "reason": j.reason, "duration": j.duration, "needs": j.needs} for n, j in run.jobs.items()},
    }, indent=2))
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    manager = _manager(args)
    if args.tail is None and args.grep is None:
        from pathlib import Path

        from engine.store import runs

        log_path = runs.job_log_path(manager.store, args.run_id, args.job)
        if log_path is None:
            manager.read_log(args.run_id, args.job)  # raises NotFoundError with the known jobs
            return 1
        path = Path(log_path)
        if path.exists():
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 16), b""):
                    sys.stdout.buffer.write(block)
        return 0
    sl = manager.read_log(args.run_id, args.job, tail=args.tail, grep=args.grep, max_lines=args.tail or 10_000,
                          max_bytes=1 << 30)
    print(sl.text)
    if sl.truncated:
        print(f"({sl.note})", file=sys.stderr)
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    manager = _manager(args)
    if manager.cancel_run(args.run_id):
        print(f"run {args.run_id}: cancel requested")
        return 0
    print(f"run {args.run_id} had already ended")
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cicd-mcp", description="CI/CD automation for people and AI agents.")
    parser.add_argument("--workspace", default=os.environ.get("PIPELINE_WORKSPACE"),
                        help="state directory (default: $PIPELINE_WORKSPACE or ~/.local/share/cicd-mcp)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a pipeline file (or a registered pipeline by name)")
    p.add_argument("pipeline")
    p.add_argument("--var", action="append", default=[], metavar="K=V", help="set a variable (repeatable)")
    p.add_argument("--branch", help="branch for `if:` conditions (default: the source's git branch)")
    p.add_argument("--event", help="event for `if:` conditions (default: push for a GitHub Actions workflow, "
                                   "else manual)")
    p.add_argument("--workers", type=int, help="jobs at once (default: $PIPELINE_MAX_WORKERS)")
    p.add_argument("--tail", type=int, default=20, help="log lines shown for each failed job")
    p.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    p.add_argument("--skip-unsupported", action="store_true",
                   help="GitHub Actions workflows: skip jobs using actions that cannot run here (default: fail them)")
    p.add_argument("--allow-empty", action="store_true",
                   help="exit 0 when every job was skipped (default: a run in which nothing ran exits 1)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("runs", help="list recent runs")
    p.add_argument("pipeline", nargs="?")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_runs)

    p = sub.add_parser("show", help="one run as JSON")
    p.add_argument("run_id")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("logs", help="a job's log (whole, --tail N, or --grep PATTERN)")
    p.add_argument("run_id")
    p.add_argument("job")
    p.add_argument("--tail", type=int)
    p.add_argument("--grep")
    p.set_defaults(func=_cmd_logs)

    p = sub.add_parser("cancel", help="cancel a running run")
    p.add_argument("run_id")
    p.set_defaults(func=_cmd_cancel)

    for module in _EXTENSIONS:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            if exc.name and module.startswith(exc.name):
                continue  # that part is not installed
            raise
        add: Callable[[Any], None] = mod.add_commands
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CicdError as exc:
        print(f"cicd-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cicd-mcp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
