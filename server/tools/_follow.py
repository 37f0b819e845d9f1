"""Following a run from the store: what changed, a heartbeat, and progress for the client.

A run goes on in its own runner process (engine.pipeline._detached); a tool call that waits
for it (run_pipeline with wait=true, wait_for_run) reads its state from the store a few
times a second, or, where the store announces changes (PostgreSQL), when the run changed.
Every job that started or finished since the last look is one progress notification, so no
finish event is lost however quickly jobs pass; between changes a heartbeat every HEARTBEAT
seconds names the running jobs and the last line each printed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from mcp.server.mcpserver import Context

from engine.pipeline.logs import cut_line, tail_lines

if TYPE_CHECKING:
    from engine.pipeline.manager import PipelineManager
    from engine.pipeline.results import PipelineRun
    from engine.store.notify import Hub

__all__ = ["HEARTBEAT", "Followed", "follow", "last_line", "progress_of", "running_jobs"]

HEARTBEAT = 3.0       # seconds between heartbeats (the contract: at most 5)
POLL = 0.25
QUIET = 5.0           # seconds a waiter woken by changes reads the run again anyway
_FINISHED_JOB = ("succeeded", "failed", "timed_out", "cancelled", "skipped")

Report = Callable[[float, float | None, str], Awaitable[None]]


def progress_of(ctx: Context) -> Report:
    """Progress notifications to the caller (a no-op unless it sent a progress token)."""
    async def report(progress: float, total: float | None, message: str) -> None:
        await ctx.report_progress(progress, total, message)

    return report


@dataclass
class Followed:
    run: PipelineRun
    changes: list[str] = field(default_factory=list)
    finished: bool = False


def last_line(path: str | None, limit: int = 160) -> str:
    """The last line a job printed (timestamp left out), cut to `limit` characters."""
    if not path or not Path(path).is_file():
        return ""
    try:
        lines, _ = tail_lines(Path(path), 1, max_bytes=4096)
    except OSError:
        return ""
    line = lines[-1] if lines else ""
    if len(line) > 25 and line[4] == "-" and line[10] == "T" and line[23] == "Z":
        line = line[25:]
    return cut_line(line, limit)


def running_jobs(run: PipelineRun, limit: int = 10) -> list[tuple[str, str, float | None]]:
    """(job, last line, seconds running) of the running jobs, at most `limit`."""
    now = time.time()
    out = []
    for job in run.jobs.values():
        if str(job.status) in ("running", "retrying"):
            since = now - job.started_at if job.started_at else None
            out.append((job.name, last_line(job.log_path), since))
            if len(out) >= limit:
                break
    return out


async def follow(manager: PipelineManager, run_id: str, report: Report | None, *,
                 deadline: float | None = None, seed: bool = False, hub: Hub | None = None) -> Followed:
    """Watch run `run_id` until it finishes (or `deadline`, a monotonic time), reporting every job
    that starts or finishes and a heartbeat meanwhile; with `seed`, what happened before the first
    look is not reported as a change. Cancelling the caller stops the watching, not the run.

    With `hub` listening (a PostgreSQL store), the run is read again when it changes, from
    any process; otherwise every POLL seconds."""
    seen: dict[str, str] = {}
    changes: list[str] = []
    last_report = time.monotonic()
    beats = 0
    progress = 0.0
    first = True
    while True:
        armed = hub.arm(run_id) if hub is not None else None   # before the read: no change is missed
        run = await anyio.to_thread.run_sync(manager.get_run, run_id)
        total = len(run.jobs) or None
        done = sum(1 for j in run.jobs.values() if str(j.status) in _FINISHED_JOB)
        news: list[tuple[str, bool]] = []   # (message, is a finish)
        for name, job in run.jobs.items():
            status = str(job.status)
            before = seen.get(name)
            seen[name] = status
            if before == status or (first and (seed or status == "pending")):
                continue
            if status in ("running", "retrying"):
                news.append((f"{name} {'started' if status == 'running' else 'retrying'}", False))
            elif status in _FINISHED_JOB:
                if before in (None, "pending") and status != "skipped":
                    # Started and ended between two looks (or before the first one).
                    news.append((f"{name} started", False))
                extra = f" (exit {job.exit_code})" if job.exit_code not in (None, 0) else ""
                took = f" in {job.duration:.1f}s" if job.duration is not None else ""
                news.append((f"{name} {status}{took}{extra}", True))
        first = False
        changes.extend(message for message, _ in news)
        if report is not None and news:
            count = done - sum(1 for _, finish in news if finish)
            for message, finish in news:
                count += finish
                progress = max(progress, float(count))
                await report(progress, total, message)
            last_report, beats = time.monotonic(), 0
        if run.status.finished:
            if report is not None:
                took = f" in {run.duration:.1f}s" if run.duration is not None else ""
                await report(float(total or 0), total, f"run {run_id} {run.status}{took}")
            return Followed(run, changes, True)
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return Followed(run, changes, False)
        if report is not None and now - last_report >= HEARTBEAT:
            beats += 1
            busy = running_jobs(run)
            what = "; ".join(f"{name} ({secs:.0f}s): {line}" if secs is not None else f"{name}: {line}"
                             for name, line, secs in busy) or f"{run.status}, no job running"
            # Progress must grow with each notification: a heartbeat adds a fraction below the next job.
            beat = done + (0.5 - 0.5 / (beats + 1)) if total and done < total else float(done)
            progress = max(progress, beat)
            await report(progress, total, f"{done}/{total or 0} jobs done; running: {what}")
            last_report = now
        if hub is not None and armed is not None and hub.listening:
            # Woken by the run's next change; the heartbeat and the deadline still bound the wait.
            wait = min(HEARTBEAT - (now - last_report) if report is not None else QUIET, QUIET)
            wait = max(0.0, wait if deadline is None else min(wait, deadline - now))
            await hub.wait(armed, wait, poll=POLL)
        else:
            await anyio.sleep(POLL if deadline is None else max(0.0, min(POLL, deadline - now)))
