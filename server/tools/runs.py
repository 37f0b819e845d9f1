"""run_pipeline, get_run, get_job_logs, cancel_run: thin calls into engine.pipeline."""

from __future__ import annotations

import logging
import secrets
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus
from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations

from engine.events import Event
from server.gate import Confirmed, state_of
from server.models import (
    CancelRunInput,
    CancelRunOutput,
    GetJobLogsInput,
    GetJobLogsOutput,
    GetRunInput,
    JobLog,
    RunOutput,
    RunPipelineInput,
)
from server.state import AppState
from server.tools._errors import tool_errors
from server.tools._paths import confined_config_path
from server.tools._present import FAILED_STATUSES, log_uri, present_run, run_progress
from server.tools._registry import ToolSpec
from server.trust import Level

if TYPE_CHECKING:
    # Types only: the pipeline engine loads on the first call that needs it (AppState.manager).
    from engine.pipeline.manager import PipelineManager

__all__ = ["SPECS"]

log = logging.getLogger(__name__)

LOGS_BUDGET_BYTES = 256 * 1024   # all logs of one get_job_logs call together


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


async def run_pipeline(args: RunPipelineInput, ctx: Context, confirmed: Confirmed) -> RunOutput:
    """Run a pipeline (a YAML file on the server, or a known pipeline by name) for real: every job's
    commands run as processes, logs and results are stored. With wait=true (default) the call returns
    when the run ends and reports progress (job started/finished) meanwhile; cancelling the call cancels
    the run. With wait=false it returns the run id at once: follow with get_run / get_job_logs.
    Failed jobs come back with the tail of their logs."""
    state = state_of(ctx)
    with tool_errors(state, args.variables.items()):
        manager = state.manager
        # A file from the call is confined to the config roots (server/tools/_paths.py); a name is looked up.
        source = confined_config_path(args.config_path, state.settings) if args.config_path else args.pipeline
        assert source is not None
        variables = dict(args.variables)
        if args.environment is not None:
            variables["CICD_ENVIRONMENT"] = args.environment
        # The environments the trust gate decided on: a pipeline file changed since to deploy elsewhere is refused.
        allowed = confirmed.targets
        if args.wait:
            run = await manager.arun_pipeline(source, variables, on_event=run_progress(ctx), environments=allowed)
            return await anyio.to_thread.run_sync(present_run, run, manager)
        if state.background is None:
            raise RuntimeError("the server has no background task group (lifespan not running)")
        # Check the pipeline now so a bad file is this call's error, not a silent background failure.
        await anyio.to_thread.run_sync(partial(manager.create_pipeline, source, environments=allowed))
        run_id = _new_run_id()
        failure = await state.background.start(_background_run, manager, source, variables, run_id, allowed)
        if failure is not None:
            raise failure
        return await anyio.to_thread.run_sync(present_run, manager.get_run(run_id), manager)


async def _background_run(
    manager: PipelineManager, source: str, variables: dict[str, str], run_id: str,
    allowed: frozenset[str] | None, *, task_status: TaskStatus[BaseException | None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    started = False

    def on_event(event: Event) -> None:
        nonlocal started
        if not started:
            started = True
            task_status.started(None)

    try:
        await manager.arun_pipeline(source, variables, on_event=on_event, run_id=run_id, environments=allowed)
    except Exception as exc:  # noqa: BLE001 - reported to the caller or kept in the run's record
        if not started:
            task_status.started(exc)
        else:
            log.warning("background run %s ended with an error: %s", run_id, exc)
    if not started:
        task_status.started(None)


async def get_run(args: GetRunInput, ctx: Context) -> RunOutput:
    """The state of a run (live while it runs): status, every job's status/attempts/exit code/duration,
    and the last lines of each failed job's log. The whole run is also the resource cicd://runs/{run_id}."""
    state = state_of(ctx)
    with tool_errors(state):
        manager = state.manager
        run = await anyio.to_thread.run_sync(manager.get_run, args.run_id)
        return await anyio.to_thread.run_sync(present_run, run, manager)


def _job_logs(manager: PipelineManager, args: GetJobLogsInput) -> GetJobLogsOutput:
    run = manager.get_run(args.run_id)
    if args.job is not None:
        if args.job not in run.jobs:
            from engine.errors import NotFoundError

            raise NotFoundError(f"run {args.run_id} has no job {args.job!r}; jobs: " + ", ".join(run.jobs))
        names = [args.job]
    else:
        names = list(run.jobs)
    if args.failed_only:
        names = [n for n in names if str(run.jobs[n].status) in FAILED_STATUSES]
    logs = []
    budget = LOGS_BUDGET_BYTES
    omitted: list[str] = []
    for name in names:
        if budget <= 0:
            omitted.append(name)
            continue
        piece = manager.read_log(args.run_id, name, tail=args.tail, grep=args.grep, max_lines=args.tail,
                                 max_bytes=min(64 * 1024, budget))
        budget -= len(piece.text.encode())
        logs.append(JobLog(
            job=name, status=str(run.jobs[name].status), text=piece.text, lines_returned=piece.lines_returned,
            truncated=piece.truncated, note=piece.note, log_uri=log_uri(args.run_id, name),
        ))
    cut = sum(1 for item in logs if item.truncated)
    summary = f"{len(logs)} job log(s) of run {args.run_id}"
    if args.grep:
        summary += f" filtered by /{args.grep}/"
    if cut:
        summary += f"; {cut} cut (see each log's note)"
    if omitted:
        summary += f"; {len(omitted)} job(s) not read (output limit): ask for them one by one"
    if not logs:
        summary += " (no job matched)"
    return GetJobLogsOutput(summary=summary, run_id=args.run_id, logs=logs, jobs_omitted=omitted)


async def get_job_logs(args: GetJobLogsInput, ctx: Context) -> GetJobLogsOutput:
    """Read job logs of a run, bounded: the last `tail` lines, or only lines matching `grep` (a regex),
    for one job, all jobs, or only failed ones. Each log says whether and how much was cut; the whole
    log is the resource cicd://runs/{run_id}/logs/{job}."""
    state = state_of(ctx)
    with tool_errors(state):
        return await anyio.to_thread.run_sync(_job_logs, state.manager, args)


async def cancel_run(args: CancelRunInput, ctx: Context) -> CancelRunOutput:
    """Stop a running pipeline run: its jobs' processes are killed and the run ends as cancelled.
    Works for runs started by another process too (within about a second)."""
    state = state_of(ctx)
    with tool_errors(state):
        manager = state.manager
        # In the loop's thread: a run of this process is cancelled through its task group.
        requested = manager.cancel_run(args.run_id)
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
