"""How engine results reach the wire: output models within a budget, and progress.

Every long text is bounded (`clip` says how much it cut); a run lists at most
MAX_JOBS_LISTED jobs and MAX_FAILED_LISTED failed ones with their log tails, and points at the
resource that holds the rest. Progress callbacks turn engine events into MCP progress
notifications (a no-op unless the client sent a progress token).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from mcp.server.mcpserver import Context

from engine.events import Event
from server.models import (
    DeployOutput,
    FailedJob,
    InstanceOut,
    JobSummary,
    PipelineHealth,
    PlanStepOut,
    RollbackExecutionOutput,
    RollbackPlanOutput,
    RunOutput,
    StepResultOut,
)

if TYPE_CHECKING:
    # Types only: these engine modules load when a tool first needs them, not at start-up.
    from engine.deploy.orchestrator import DeploymentResult
    from engine.insights.models import PipelineHealth as EngineHealth
    from engine.pipeline.manager import PipelineManager
    from engine.pipeline.results import PipelineRun
    from engine.rollback import RollbackExecution, RollbackPlan

__all__ = [
    "FAILED_STATUSES",
    "clip",
    "iso",
    "log_uri",
    "present_deployment",
    "present_execution",
    "present_health",
    "present_plan",
    "present_run",
    "run_progress",
    "step_progress",
]

FAILED_STATUSES = ("failed", "timed_out")
TAIL_LINES = 20
MAX_JOBS_LISTED = 300        # a 5,000-job matrix must not become a 1 MB tool result
MAX_FAILED_LISTED = 20
MAX_REASON = 2000
DEPLOY_LOG_LINES = 30
MAX_RUNBOOK = 20_000
DEFAULT_BUDGET = 8000


def iso(ts: float | None) -> str | None:
    """A Unix time as UTC ISO 8601 to the second (what an agent compares and quotes)."""
    import time

    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def clip(text: str | None, limit: int = MAX_REASON) -> str | None:
    """Bound a free-text field; say how much was cut."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f" ... ({len(text) - limit} more characters cut; see the job's log)"


# -- progress ----------------------------------------------------------------------------------

ProgressCallback = Callable[[Event], Awaitable[None]]


def run_progress(ctx: Context) -> ProgressCallback:
    """A pipeline's events as progress: jobs done of jobs in the run."""
    async def on_event(event: Event) -> None:
        await ctx.report_progress(event.done, event.total or None, event.message)

    return on_event


def step_progress(ctx: Context) -> ProgressCallback:
    """A deployment's or rollback's events as progress: steps so far, of a total not known ahead."""
    count = 0

    async def on_event(event: Event) -> None:
        nonlocal count
        count += 1
        await ctx.report_progress(count, None, event.message)

    return on_event


# -- runs --------------------------------------------------------------------------------------


def run_uri(run_id: str) -> str:
    return f"cicd://runs/{run_id}"


def log_uri(run_id: str, job: str) -> str:
    return f"cicd://runs/{run_id}/logs/{quote(job, safe='')}"


def present_run(run: PipelineRun, manager: PipelineManager, *, cap: bool = True,
                budget: int = DEFAULT_BUDGET) -> RunOutput:
    """A run as the wire sees it, within `budget` characters: its jobs in brief (unsuccessful
    ones first when they do not all fit; all of them when `cap` is off), failed jobs with log
    tails that share what the budget leaves, each long line cut in the middle."""
    jobs = [
        JobSummary(name=j.name, stage=j.stage, status=str(j.status), attempts=j.attempts,
                   exit_code=j.exit_code, duration=round(j.duration, 3) if j.duration is not None else None,
                   reason=clip(j.reason, 300 if cap else MAX_REASON), deployment=j.deployment)
        for j in run.jobs.values()
    ]
    counts: dict[str, int] = {}
    for brief in jobs:
        counts[brief.status] = counts.get(brief.status, 0) + 1
    failed_names = [n for n, j in run.jobs.items() if str(j.status) in FAILED_STATUSES]
    max_failed = min(MAX_FAILED_LISTED, max(1, budget // 900)) if cap else MAX_FAILED_LISTED
    shown_failed = failed_names[:max_failed]
    # A job line costs about 130 characters; the failed jobs' tails get at least half the budget.
    max_jobs = min(MAX_JOBS_LISTED, max(5, (budget // 2 - 400) // 130)) if cap else len(jobs)
    listed = jobs
    if len(jobs) > max_jobs:
        keep = {id(b) for b in sorted(jobs, key=lambda b: b.status == "succeeded")[:max_jobs]}
        listed = [b for b in jobs if id(b) in keep]
    used = 600 + 130 * len(listed)
    per_tail = max(300, (budget - used) * 8 // 10 // max(1, len(shown_failed)) - 350) if cap else 64 * 1024
    failed: list[FailedJob] = []
    for name in shown_failed:
        piece = manager.read_log(run.run_id, name, tail=TAIL_LINES, max_bytes=per_tail, timestamps=False,
                                 line_chars=max(100, min(500, per_tail // 3)))
        j = run.jobs.get(name)
        note = piece.note
        if piece.truncated or piece.lines_cut:
            note += (f"; more: get_job_logs({{\"run_id\": \"{run.run_id}\", \"job\": \"{name}\", \"tail\": 200, "
                     f"\"timestamps\": false}}) or the resource {log_uri(run.run_id, name)}?offset=0&limit=200")
        failed.append(FailedJob(
            name=name, status=str(j.status) if j else "failed", reason=clip(j.reason, 300) if j else None,
            exit_code=j.exit_code if j else None, log_tail=piece.text, log_note=note,
            log_uri=log_uri(run.run_id, name),
        ))
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    took = f" in {run.duration:.1f}s" if run.duration is not None else ""
    summary = f"run {run.run_id} of {run.pipeline}: {run.status}{took}" + (f" ({tally})" if tally else "")
    if failed_names:
        summary += "; failed: " + ", ".join(failed_names[:10]) + (" ..." if len(failed_names) > 10 else "")
    if run.reason and str(run.status) != "succeeded" and not str(run.reason).startswith("failed jobs:"):
        summary += f"; {clip(run.reason, 300)}"
    if len(listed) < len(jobs) or len(shown_failed) < len(failed_names):
        summary += (f"; {len(jobs) - len(listed)} job(s) and {len(failed_names) - len(shown_failed)} failed log "
                    f"tail(s) left out: all jobs are in the resource {run_uri(run.run_id)}, any log via get_job_logs")
    return RunOutput(
        summary=summary, run_id=run.run_id, pipeline=run.pipeline, status=str(run.status),
        reason=clip(run.reason, 300 if cap else MAX_REASON),
        duration=round(run.duration, 3) if run.duration is not None else None, jobs=listed,
        jobs_omitted=len(jobs) - len(listed), failed_jobs=failed,
        failed_jobs_omitted=max(0, len(failed_names) - len(shown_failed)), resource_uri=run_uri(run.run_id),
    )


# -- deployments -------------------------------------------------------------------------------


def deployment_uri(deployment_id: str) -> str:
    return f"cicd://deployments/{deployment_id}"


def present_deployment(result: DeploymentResult) -> DeployOutput:
    logs = [clip(line, 500) or "" for line in result.logs]
    tail = logs[-DEPLOY_LOG_LINES:]
    cut = len(logs) - len(tail)
    note = (f"last {len(tail)} of {len(logs)} log lines; the whole record is the resource"
            if cut else f"whole log ({len(logs)} lines)")
    was = f" (was {result.previous_version})" if result.previous_version else ""
    summary = (f"deployment {result.deployment_id} of {result.service} {result.version}{was} to "
               f"{result.environment} ({result.strategy}): {result.status} in {result.duration:.1f}s")
    if result.reason and str(result.status) != "success":
        summary += f"; {clip(result.reason, 300)}"
    return DeployOutput(
        summary=summary, deployment_id=result.deployment_id, name=result.name, environment=result.environment,
        service=result.service, version=result.version, previous_version=result.previous_version,
        strategy=result.strategy, status=str(result.status), reason=clip(result.reason), duration=result.duration,
        instances=[InstanceOut(slot=i.slot, host=i.host, port=i.port, version=i.version, color=i.color,
                               alive=i.alive) for i in result.instances],
        log_tail=tail, log_note=note, resource_uri=deployment_uri(result.deployment_id),
    )


# -- rollbacks ---------------------------------------------------------------------------------


def present_plan(plan: RollbackPlan) -> RollbackPlanOutput:
    how = "executable" if plan.executable else "manual: follow the runbook"
    summary = (f"plan {plan.plan_id}: {plan.strategy.value} rollback of {plan.service} in {plan.environment} "
               f"from {plan.from_version} to {plan.to_version}, {len(plan.steps)} step(s), "
               f"~{plan.estimated_duration:.0f}s ({plan.estimate_basis}); {how}")
    if plan.warnings:
        summary += f". WARNING: {plan.warnings[0]}"
    return RollbackPlanOutput(
        summary=summary, plan_id=plan.plan_id, deployment_id=plan.deployment_id, environment=plan.environment,
        service=plan.service, strategy=plan.strategy.value, from_version=plan.from_version,
        to_version=plan.to_version, executable=plan.executable, estimated_duration=plan.estimated_duration,
        estimate_basis=plan.estimate_basis,
        steps=[PlanStepOut(name=s.name, action=s.action, targets=list(s.targets), timeout=s.timeout,
                           retries=s.retries, estimate=s.estimate) for s in plan.steps],
        runbook=clip(plan.runbook, MAX_RUNBOOK), notes=list(plan.notes), warnings=list(plan.warnings),
    )


def present_execution(x: RollbackExecution) -> RollbackExecutionOutput:
    done_at = iso(x.finished_at) if x.replayed and x.finished_at else None
    if done_at:
        summary = (f"rollback {x.execution_id} of {x.service} in {x.environment} to {x.to_version}: already "
                   f"completed at {done_at} (nothing done now); its result: {len(x.completed_steps)}/"
                   f"{len(x.steps)} steps done in {x.duration:.1f}s")
    else:
        summary = (f"rollback {x.execution_id} of {x.service} in {x.environment} to {x.to_version}: {x.status} "
                   f"in {x.duration:.1f}s ({len(x.completed_steps)}/{len(x.steps)} steps done)")
    if x.failed_step:
        summary += f"; failed at {x.failed_step}"
    if x.errors:
        summary += f"; {clip(x.errors[-1], 300)}"
    return RollbackExecutionOutput(
        summary=summary, execution_id=x.execution_id, plan_id=x.plan_id, deployment_id=x.deployment_id,
        environment=x.environment, service=x.service, strategy=x.strategy, from_version=x.from_version,
        to_version=x.to_version, status=x.status, failed_step=x.failed_step,
        errors=[clip(e) or "" for e in x.errors], duration=x.duration,
        steps=[StepResultOut(name=s.name, action=s.action, status=s.status, attempts=s.attempts, duration=s.duration,
                             detail=clip(s.detail)) for s in x.steps],
        skipped_steps=list(x.skipped_steps), already_completed_at=done_at,
    )


# -- health ------------------------------------------------------------------------------------


def present_health(h: EngineHealth) -> PipelineHealth:
    last = h.last_run
    trend = None
    if h.duration_trend is not None:
        trend = f"{h.duration_trend.verdict}: {h.duration_trend.reason}"
    return PipelineHealth(
        pipeline=h.pipeline, status=h.status, reasons=list(h.reasons), window_days=h.window_days, runs=h.runs,
        succeeded=h.succeeded, failed=h.failed, cancelled=h.cancelled, success_rate=h.success_rate,
        failure_streak=h.failure_streak, last_run_id=last.run_id if last else None,
        last_status=last.status if last else None, last_finished_at=last.finished_at if last else None,
        last_duration=last.duration.value if last and last.duration else None,
        mean_time_to_recovery=h.mean_time_to_recovery.value if h.mean_time_to_recovery else None,
        flaky_jobs=[f.job for f in h.flaky_jobs], duration_trend=trend,
    )
