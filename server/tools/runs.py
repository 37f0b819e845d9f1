"""run_pipeline, get_run, get_job_logs, cancel_run: thin calls into engine.pipeline."""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations

from engine.errors import NotFoundError
from server.gate import Confirmed, state_of
from server.models import (
    CancelRunInput,
    CancelRunOutput,
    GetJobLogsInput,
    GetJobLogsOutput,
    GetRunInput,
    JobLog,
    ListRunsInput,
    ListRunsOutput,
    RunBrief,
    RunningJob,
    RunOutput,
    RunPipelineInput,
    WaitForRunInput,
    WaitForRunOutput,
)
from server.tools._budget import max_chars, server_cap
from server.tools._errors import (
    did_you_mean,
    missing_config_file,
    parse_since,
    pipeline_lookup,
    tool_errors,
    unknown_pipeline,
)
from server.tools._follow import follow, progress_of, running_jobs
from server.tools._paths import confined_config_path
from server.tools._present import FAILED_STATUSES, clip, log_uri, present_run
from server.tools._registry import ToolSpec
from server.trust import Level

if TYPE_CHECKING:
    # Types only: the pipeline engine loads on the first call that needs it (AppState.manager).
    from engine.pipeline.manager import PipelineManager
    from server.state import AppState

__all__ = ["SPECS"]

log = logging.getLogger(__name__)

LOGS_BUDGET_BYTES = 256 * 1024   # all logs of one get_job_logs call together, whatever the budget
PER_JOB_MIN = 700                # below this a log says too little: fewer jobs are read instead
MAX_LINE_CHARS = 2000


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _caller_name(ctx: Context) -> str:
    from server.gate import server_of

    try:
        return server_of(ctx).caller(ctx).name
    except Exception:  # noqa: BLE001 - a name for a message only
        return "the caller"


async def run_pipeline(args: RunPipelineInput, ctx: Context, confirmed: Confirmed) -> RunOutput:
    """Run a pipeline for real, in a runner process that outlives this call and the session. wait=true
    returns at the end, with progress and failed jobs' log tails; wait=false returns the run id at once."""
    state = state_of(ctx)
    budget = max_chars(args.max_chars)
    with tool_errors(state, args.variables.items()):
        manager = state.manager
        # A file from the call is confined to the config roots (server/tools/_paths.py); a name is looked up.
        source = confined_config_path(args.config_path, state.settings) if args.config_path else args.pipeline
        assert source is not None
        if args.config_path and (missing := missing_config_file(str(source))):
            raise NotFoundError(missing)
        variables = dict(args.variables)
        if args.environment is not None:
            variables["CICD_ENVIRONMENT"] = args.environment
        # The environments the trust gate decided on: a pipeline file changed since to deploy elsewhere is refused.
        allowed = confirmed.targets
        with pipeline_lookup(args.pipeline, manager.list_pipelines):
            run_id, pid = await anyio.to_thread.run_sync(
                lambda: manager.start_detached(str(source), variables, run_id=_new_run_id(), environments=allowed))
        if not args.wait:
            run = await anyio.to_thread.run_sync(manager.get_run, run_id)
            out = await anyio.to_thread.run_sync(lambda: present_run(run, manager, budget=budget))
            out.summary += (f"; runs on in runner process {pid} whatever happens to this session: wait with "
                            + call_text("wait_for_run", run_id=run_id, timeout=30))
            return out
        try:
            followed = await follow(manager, run_id, progress_of(ctx), hub=state.run_changes)
        except anyio.get_cancelled_exc_class():
            if args.cancel_on_disconnect:
                who = _caller_name(ctx)
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(
                        lambda: manager.cancel_run(run_id, f"cancelled by {who}: the call was cancelled and "
                                                           "cancel_on_disconnect was set"))
            raise
        return await anyio.to_thread.run_sync(lambda: present_run(followed.run, manager, budget=budget))


async def wait_for_run(args: WaitForRunInput, ctx: Context) -> WaitForRunOutput:
    """Wait up to `timeout` seconds for a run to end, instead of polling: the state, what changed,
    the running jobs' last lines, and whether to call again."""
    state = state_of(ctx)
    with tool_errors(state):
        manager = state.manager
        deadline = time.monotonic() + args.timeout
        followed = await follow(manager, args.run_id, progress_of(ctx), deadline=deadline, seed=True,
                                hub=state.run_changes)
        run = followed.run
        counts: dict[str, int] = {}
        for job in run.jobs.values():
            counts[str(job.status)] = counts.get(str(job.status), 0) + 1
        done = sum(n for s, n in counts.items() if s in ("succeeded", "failed", "timed_out", "cancelled", "skipped"))
        running = [RunningJob(name=name, last_line=line, seconds=round(secs, 1) if secs is not None else None)
                   for name, line, secs in running_jobs(run)]
        failed = [n for n, j in run.jobs.items() if str(j.status) in FAILED_STATUSES]
        if followed.finished:
            took = f" in {run.duration:.1f}s" if run.duration is not None else ""
            summary = f"run {run.run_id} {run.status}{took}; {done}/{len(run.jobs)} jobs done"
            if failed:
                summary += "; failed: " + ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else "")
                summary += "; logs: " + call_text("get_job_logs", run_id=run.run_id, failed_only=True)
            if run.reason and str(run.status) != "succeeded" and not run.reason.startswith("failed jobs:"):
                summary += f"; {clip(run.reason, 300)}"
            hint = None
        else:
            summary = (f"run {run.run_id} still {run.status} after {args.timeout:g}s: {done}/{len(run.jobs)} jobs "
                       f"done, {len(running)} running; call again")
            hint = call_text("wait_for_run", run_id=run.run_id, timeout=args.timeout)
        return WaitForRunOutput(
            summary=summary, run_id=run.run_id, status=str(run.status), finished=followed.finished,
            call_again=not followed.finished, next_call=hint, changes=followed.changes[-200:],
            jobs=counts, running=running, failed_jobs=failed, reason=clip(run.reason, 300),
        )


def _list_runs(manager: PipelineManager, args: ListRunsInput) -> ListRunsOutput:
    if args.pipeline is not None and args.pipeline not in manager.list_pipelines():
        raise NotFoundError(unknown_pipeline(args.pipeline, manager.list_pipelines()))
    since = parse_since(args.since) if args.since else None
    before: tuple[float, str] | None = None
    if args.cursor:
        try:
            at, _, rid = args.cursor.partition("/")
            before = (float(at), rid)
        except ValueError:
            from engine.errors import InputError

            raise InputError(f"cursor {args.cursor!r} is not one this tool returned (use next_cursor as given)"
                             ) from None
    rows = manager.list_runs(args.pipeline, limit=1000, status=args.status)
    picked: list[RunBrief] = []
    next_cursor = None
    for run in rows:
        if since is not None and run.created_at < since:
            break
        if before is not None and (run.created_at, run.run_id) >= before:
            continue
        if len(picked) == args.limit:
            last = picked[-1]
            next_cursor = f"{last.created_ts!r}/{last.run_id}"
            break
        picked.append(RunBrief(
            run_id=run.run_id, pipeline=run.pipeline, status=str(run.status),
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.created_at)), created_ts=run.created_at,
            duration=round(run.duration, 3) if run.duration is not None else None, reason=clip(run.reason, 200),
        ))
    what = " ".join(x for x in (args.status or "", "runs", f"of {args.pipeline}" if args.pipeline else "") if x)
    summary = f"{len(picked)} {what}, newest first" + (f" since {args.since}" if args.since else "")
    if next_cursor:
        summary += "; more: " + call_text("list_runs", pipeline=args.pipeline, status=args.status, since=args.since,
                                          limit=args.limit, cursor=next_cursor)
    return ListRunsOutput(summary=summary, runs=picked, next_cursor=next_cursor)


async def list_runs(args: ListRunsInput, ctx: Context) -> ListRunsOutput:
    """Recorded runs, newest first, by pipeline, status or `since`; page with `cursor`. Finds run ids."""
    state = state_of(ctx)
    with tool_errors(state):
        return await anyio.to_thread.run_sync(_list_runs, state.manager, args)


async def get_run(args: GetRunInput, ctx: Context) -> RunOutput:
    """A run's state now: status, each job's status, exit code and duration, failed jobs' log tails."""
    state = state_of(ctx)
    with tool_errors(state):
        manager = state.manager
        run = await anyio.to_thread.run_sync(manager.get_run, args.run_id)
        return await anyio.to_thread.run_sync(lambda: present_run(run, manager, budget=max_chars(args.max_chars)))


def call_text(tool: str, **arguments: Any) -> str:
    """The exact call an agent makes to get something, as it would write it."""
    return f"{tool}({json.dumps({k: v for k, v in arguments.items() if v is not None}, ensure_ascii=False)})"


def _job_logs(manager: PipelineManager, args: GetJobLogsInput, budget: int) -> GetJobLogsOutput:
    run = manager.get_run(args.run_id)
    if args.job is not None:
        if args.job not in run.jobs:
            from engine.errors import NotFoundError

            raise NotFoundError(f"run {args.run_id} has no job {args.job!r}; jobs: " + ", ".join(run.jobs)
                                + did_you_mean(args.job, list(run.jobs)))
        names = [args.job]
    else:
        names = list(run.jobs)
    if args.failed_only:
        names = [n for n in names if str(run.jobs[n].status) in FAILED_STATUSES]
    # The log texts share what the budget leaves after the frame (about 300 characters a job);
    # JSON escaping costs up to a tenth more.
    room = min(int(budget * 0.8) - 400, LOGS_BUDGET_BYTES)
    readable = max(1, room // PER_JOB_MIN)
    read, omitted = names[:readable], names[readable:]
    per_job = max(min(room, PER_JOB_MIN - 300), room // max(1, len(read)) - 300)
    line_chars = max(120, min(MAX_LINE_CHARS, per_job // 3))
    forward = args.head is not None or args.offset is not None or args.byte_offset is not None
    logs = []
    for name in read:
        piece = manager.read_log(
            args.run_id, name, tail=args.tail, grep=args.grep, max_lines=args.head or args.tail,
            max_bytes=per_job, head=args.head if forward else None, offset=args.offset,
            byte_offset=args.byte_offset, timestamps=args.timestamps, line_chars=line_chars,
        )
        more = None
        if forward and (piece.next_offset is not None or piece.next_byte_offset is not None):
            more = (call_text("get_job_logs", run_id=args.run_id, job=name, offset=piece.next_offset,
                              head=args.head or 200, timestamps=None if args.timestamps else False)
                    if piece.next_offset is not None else
                    call_text("get_job_logs", run_id=args.run_id, job=name, byte_offset=piece.next_byte_offset,
                              head=args.head or 200, timestamps=None if args.timestamps else False))
        elif not forward and args.grep is None and piece.byte_start > 0:
            before = max(0, piece.byte_start - per_job)
            more = call_text("get_job_logs", run_id=args.run_id, job=name, byte_offset=before, head=args.tail,
                             timestamps=None if args.timestamps else False) + " (the part just before)"
        elif args.grep is not None and piece.truncated:
            more = call_text("get_job_logs", run_id=args.run_id, job=name, grep=args.grep, tail=5000,
                             max_chars=server_cap()) + " (more matches), or a narrower pattern"
        if piece.lines_cut:
            more = (more + "; " if more else "") + (f"long lines are cut to ~{line_chars} chars: a larger max_chars "
                                                    "keeps more of each")
        logs.append(JobLog(
            job=name, status=str(run.jobs[name].status), text=piece.text, lines_returned=piece.lines_returned,
            truncated=piece.truncated or piece.lines_cut > 0, note=piece.note, size_bytes=piece.size_bytes,
            byte_start=piece.byte_start, next_offset=piece.next_offset, next_byte_offset=piece.next_byte_offset,
            more=more, log_uri=log_uri(args.run_id, name),
        ))
    cut = sum(1 for item in logs if item.truncated)
    summary = f"{len(logs)} job log(s) of run {args.run_id}"
    if args.grep:
        summary += f" filtered by /{args.grep}/"
    if cut:
        summary += f"; {cut} not whole (each log's `note` and `more` say what is left and how to read it)"
    if omitted:
        summary += (f"; {len(omitted)} job(s) not read (output limit): ask for them one by one, e.g. "
                    + call_text("get_job_logs", run_id=args.run_id, job=omitted[0]))
    if not logs:
        summary += " (no job matched)"
    return GetJobLogsOutput(summary=summary, run_id=args.run_id, logs=logs, jobs_omitted=omitted)


async def get_job_logs(args: GetJobLogsInput, ctx: Context) -> GetJobLogsOutput:
    """A run's job logs, bounded: the last `tail` lines, a page (`head` from `offset`), or `grep`
    matches; one job, all, or the failed ones. A cut says how to read the rest."""
    state = state_of(ctx)
    with tool_errors(state):
        return await anyio.to_thread.run_sync(_job_logs, state.manager, args, max_chars(args.max_chars))


async def cancel_run(args: CancelRunInput, ctx: Context) -> CancelRunOutput:
    """Stop a run: its jobs' processes are killed and it ends cancelled."""
    state = state_of(ctx)
    with tool_errors(state):
        manager = state.manager
        # In the loop's thread: a run of this process is cancelled through its task group.
        requested = manager.cancel_run(args.run_id, f"cancelled by {_caller_name(ctx)} (cancel_run)")
        run = await anyio.to_thread.run_sync(manager.get_run, args.run_id)
        summary = (f"run {args.run_id}: cancellation requested (status now {run.status})" if requested
                   else f"run {args.run_id} had already ended ({run.status}); nothing to cancel")
        return CancelRunOutput(summary=summary, run_id=args.run_id, cancel_requested=requested,
                               status=str(run.status))


def _run_environments(arguments: dict[str, Any], state: AppState) -> frozenset[str]:
    """Where a run lands, for the trust gate: the `environment` argument and every deploy stage of the
    pipeline, loaded as the tool will load it.

    Raises:
        InputError, SpecError, NotFoundError: no pipeline given, or it cannot be read (the gate refuses).
    """
    from engine.errors import InputError

    found = {arguments["environment"]} if isinstance(arguments.get("environment"), str) else set()
    config, name = arguments.get("config_path"), arguments.get("pipeline")
    source = confined_config_path(config, state.settings) if isinstance(config, str) and config else name
    if not isinstance(source, str) or not source:
        raise InputError("give config_path or pipeline")
    with pipeline_lookup(name if isinstance(name, str) and not config else None, state.manager.list_pipelines):
        return frozenset(found | state.manager.environments_of(source))


_PIPELINE = ("engine.pipeline.manager",)

SPECS = [
    ToolSpec(
        name="run_pipeline", fn=run_pipeline, input_model=RunPipelineInput, title="Run a pipeline",
        description=run_pipeline.__doc__ or "",
        annotations=ToolAnnotations(title="Run a pipeline", read_only_hint=False, destructive_hint=True,
                                    idempotent_hint=False, open_world_hint=True),
        default_level=Level.TRUSTED, requires=_PIPELINE,
        environment=_run_environments,
    ),
    ToolSpec(
        name="get_run", fn=get_run, input_model=GetRunInput, title="Get a run",
        description=get_run.__doc__ or "",
        annotations=ToolAnnotations(title="Get a run", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=False),
        default_level=Level.UNTRUSTED, requires=_PIPELINE,
    ),
    ToolSpec(
        name="get_job_logs", fn=get_job_logs, input_model=GetJobLogsInput, title="Read job logs",
        description=get_job_logs.__doc__ or "",
        annotations=ToolAnnotations(title="Read job logs", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=False),
        default_level=Level.UNTRUSTED, requires=_PIPELINE,
    ),
    ToolSpec(
        name="cancel_run", fn=cancel_run, input_model=CancelRunInput, title="Cancel a run",
        description=cancel_run.__doc__ or "",
        annotations=ToolAnnotations(title="Cancel a run", read_only_hint=False, destructive_hint=True,
                                    idempotent_hint=True, open_world_hint=False),
        default_level=Level.TRUSTED, requires=_PIPELINE,
    ),
]


SPECS += [
    ToolSpec(
        name="wait_for_run", fn=wait_for_run, input_model=WaitForRunInput, title="Wait for a run",
        description=wait_for_run.__doc__ or "",
        annotations=ToolAnnotations(title="Wait for a run", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=False),
        default_level=Level.UNTRUSTED, requires=_PIPELINE,
    ),
    ToolSpec(
        name="list_runs", fn=list_runs, input_model=ListRunsInput, title="List runs",
        description=list_runs.__doc__ or "",
        annotations=ToolAnnotations(title="List runs", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=False),
        default_level=Level.UNTRUSTED, requires=_PIPELINE,
    ),
]
