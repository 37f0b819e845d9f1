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

__all__ = ["build_parser", "main", "new_parser", "run_command", "version"]

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
                               event=args.event, skip_unsupported=args.skip_unsupported,
                               fail_fast=not args.no_fail_fast)
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
    if args.quiet:
        for r in runs:
            print(r.run_id)
        return 0
    if not runs:
        print("no runs yet")
        return 0
    rows = [("RUN ID", "STARTED", "PIPELINE", "STATUS", "DURATION", "REASON")]
    rows += [(r.run_id, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at)), r.pipeline,
              r.status.value, _fmt_duration(r.duration), r.reason or "") for r in runs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
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


def version() -> str:
    """The installed distribution's version; a checkout used through PYTHONPATH has none."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("cicd-mcp")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _Version(argparse.Action):
    # argparse's own "version" action formats its text when the parser is built; this one asks
    # importlib.metadata only when --version is given, which keeps `cicd-mcp serve` start-up lean.
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"cicd-mcp {version()}")
        parser.exit()


def new_parser() -> argparse.ArgumentParser:
    """The top-level `cicd-mcp` parser and its options, without commands."""
    parser = argparse.ArgumentParser(
        prog="cicd-mcp", description="CI/CD automation for people and AI agents: run pipelines, read their "
        "runs and logs, report, and serve it all to MCP clients (`cicd-mcp serve`).")
    parser.add_argument("--version", action=_Version)
    parser.add_argument("--workspace", default=os.environ.get("PIPELINE_WORKSPACE"),
                        help="state directory (default: $PIPELINE_WORKSPACE or ~/.local/share/cicd-mcp)")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser()
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    p.add_argument("--no-fail-fast", action="store_true",
                   help="a failure cancels nothing: every job runs to its end (default: the pipeline's fail_fast "
                        "and its matrices' — a GitHub Actions matrix fails fast unless it says fail-fast: false)")
    p.add_argument("--allow-empty", action="store_true",
                   help="exit 0 when every job was skipped (default: a run in which nothing ran exits 1)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("runs", help="list recent runs, newest first")
    p.add_argument("pipeline", nargs="?", help="only this pipeline's runs")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p.add_argument("--json", action="store_true", help="a JSON array")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="only the run ids, one a line (RUN_ID=$(cicd-mcp runs -q --limit 1) is the newest)")
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


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command: the one place where its expected failures become an exit status.

    A CicdError is a one-line message and status 2; Ctrl-C is 130; a reader that stopped reading
    (`cicd-mcp audit --json | head`) ends the command quietly with status 141, as SIGPIPE would.
    """
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe is found here, not at interpreter exit where it prints a traceback
        return code
    except CicdError as exc:
        print(f"cicd-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cicd-mcp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that flush has nowhere to fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
