"""The wire contract: one pydantic input and one output model per tool.

Clients get `inputSchema`/`outputSchema` from these and `tool_manifests/` is generated from
them, so a field's `description` is written for the model reading it. Every output starts
with `summary`, a short text an LLM can read without parsing the rest.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = [
    "CallModuleFunctionInput",
    "CallModuleFunctionOutput",
    "CancelRunInput",
    "CancelRunOutput",
    "FailedJob",
    "GetJobLogsInput",
    "GetJobLogsOutput",
    "GetRunInput",
    "JobLog",
    "JobSummary",
    "PipelineHealth",
    "PipelineHealthInput",
    "PipelineHealthOutput",
    "RunOutput",
    "RunPipelineInput",
]

RunId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"),
    Field(description="A run id."),
]
PipelineName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"),
    Field(description="A pipeline's `name:`."),
]
JobName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256),
    Field(description="e.g. test or lint[py=3.11]"),
]
Environment = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
    Field(description="e.g. staging"),
]


class _In(BaseModel):
    # strict: `"wait": "yes"` or `"limit": "10"` is refused with the type expected, never guessed.
    # defer_build: validators are built on a tool's first call, not at every server start.
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    max_chars: int | None = Field(
        default=None, ge=500, le=1_000_000,
        description="Cap on this result's size in characters (default 8000; the server's cap applies).",
    )


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


# -- runs -----------------------------------------------------------------------------------------


class RunPipelineInput(_In):
    config_path: str | None = Field(
        default=None,
        description="A pipeline YAML file on the server. Or `pipeline`.",
        max_length=4096,
    )
    pipeline: PipelineName | None = Field(
        default=None, description="A known pipeline, by name. Or `config_path`."
    )
    variables: dict[str, str] = Field(
        default_factory=dict,
        description="Override the pipeline's `variables:`.",
    )
    wait: bool = Field(
        default=True,
        description="false: return the run id at once (then wait_for_run).",
    )
    environment: Environment | None = Field(
        default=None,
        description="Where it deploys, if it does.",
    )

    cancel_on_disconnect: bool = Field(
        default=False,
        description="Cancelling this call cancels the run.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> RunPipelineInput:
        if (self.config_path is None) == (self.pipeline is None):
            raise ValueError("give exactly one of config_path (a YAML file) or pipeline (a known pipeline's name)")
        return self


class JobSummary(_Out):
    name: str
    stage: str
    status: str = Field(description="pending, running, retrying, succeeded, failed, timed_out, cancelled, skipped.")
    attempts: int
    exit_code: int | None = None
    duration: float | None = Field(default=None, description="Seconds, all attempts.")
    reason: str | None = Field(default=None, description="Why it failed or was skipped.")
    deployment: dict[str, Any] | None = Field(
        default=None, description="A deploy stage's deployment: deployment_id, status, rolled_back, version.")


class FailedJob(_Out):
    name: str
    status: str
    reason: str | None = None
    exit_code: int | None = None
    log_tail: str = Field(description="The last lines of the job's log.")
    log_note: str = Field(description="What the tail leaves out and how to read the rest.")
    log_uri: str = Field(description="MCP resource with the whole log.")


class RunOutput(_Out):
    summary: str
    run_id: str
    pipeline: str
    status: str = Field(description="queued, running, succeeded, failed, cancelled or interrupted.")
    reason: str | None = None
    duration: float | None = Field(default=None, description="Seconds.")
    jobs: list[JobSummary] = Field(
        default_factory=list, description="Jobs in run order; unsuccessful ones kept first when cut."
    )
    jobs_omitted: int = Field(default=0, description="Jobs left out of `jobs` (the resource has them all).")
    failed_jobs: list[FailedJob] = Field(
        default_factory=list, description="Failed or timed-out jobs with the tail of their logs."
    )
    failed_jobs_omitted: int = Field(default=0, description="Failed jobs left out of `failed_jobs`.")
    resource_uri: str = Field(description="MCP resource with the whole run.")


class GetRunInput(_In):
    run_id: RunId


class GetJobLogsInput(_In):
    run_id: RunId
    job: JobName | None = Field(default=None, description="Omit for every job.")
    tail: int = Field(default=100, ge=1, le=5000, description="Last N lines.")
    head: int | None = Field(
        default=None, ge=1, le=5000,
        description="Instead: N lines from `offset` or `byte_offset`.",
    )
    offset: int | None = Field(default=None, ge=0, description="Line number (0-based).")
    byte_offset: int | None = Field(
        default=None, ge=0, description="A page's `next_byte_offset`."
    )
    grep: str | None = Field(
        default=None, max_length=512, description="Only lines matching this regex."
    )
    failed_only: bool = Field(default=False, description="Only failed jobs.")
    timestamps: bool = Field(default=True)

    @model_validator(mode="after")
    def _one_position(self) -> GetJobLogsInput:
        if self.offset is not None and self.byte_offset is not None:
            raise ValueError("give at most one of offset (a line number) or byte_offset")
        if self.grep is not None and (self.head or self.offset is not None or self.byte_offset is not None):
            raise ValueError("grep reads the whole log: it does not combine with head, offset or byte_offset")
        return self


class JobLog(_Out):
    job: str
    status: str
    text: str
    lines_returned: int = Field(description="Lines in `text`.")
    truncated: bool = Field(description="True when the log has more than `text` (see `note`).")
    note: str = Field(description="What was cut and how much.")
    size_bytes: int = Field(default=0, description="Size of the whole log.")
    byte_start: int = Field(default=0, description="Where `text` starts in the log.")
    next_offset: int | None = Field(default=None, description="Line to pass as `offset` for the next page.")
    next_byte_offset: int | None = Field(default=None, description="Byte to pass as `byte_offset` for the next page.")
    more: str | None = Field(default=None, description="The exact call that reads what was left out.")
    log_uri: str


class GetJobLogsOutput(_Out):
    summary: str
    run_id: str
    logs: list[JobLog]
    jobs_omitted: list[str] = Field(
        default_factory=list, description="Jobs not read because the output limit was reached; ask for them one by one."
    )


class WaitForRunInput(_In):
    run_id: RunId
    timeout: float = Field(default=30, gt=0, le=45, description="Seconds, at most 45.")


class RunningJob(_Out):
    name: str
    last_line: str = Field(description="The last line the job printed.")
    seconds: float | None = Field(default=None, description="Running for this long.")


class WaitForRunOutput(_Out):
    summary: str
    run_id: str
    status: str
    finished: bool
    call_again: bool = Field(description="True while the run goes on: call wait_for_run again.")
    next_call: str | None = Field(default=None, description="The call to make next.")
    changes: list[str] = Field(default_factory=list, description="Jobs that started or ended during this wait.")
    jobs: dict[str, int] = Field(default_factory=dict, description="Jobs by status.")
    running: list[RunningJob] = Field(default_factory=list)
    failed_jobs: list[str] = Field(default_factory=list)
    reason: str | None = None


class ListRunsInput(_In):
    pipeline: PipelineName | None = None
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"] | None = None
    since: str | None = Field(default=None, max_length=40, description="ISO 8601 date or time.")
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=200, description="The last page's `next_cursor`.")


class RunBrief(_Out):
    run_id: str
    pipeline: str
    status: str
    created: str = Field(description="UTC, ISO 8601.")
    created_ts: float
    duration: float | None = None
    reason: str | None = None


class ListRunsOutput(_Out):
    summary: str
    runs: list[RunBrief]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page.")


class CancelRunInput(_In):
    run_id: RunId


class CancelRunOutput(_Out):
    summary: str
    run_id: str
    cancel_requested: bool = Field(description="True when the run was still going and has been told to stop.")
    status: str


# -- health and performance (computed by engine.insights from stored runs) -----------------------


class PipelineHealthInput(_In):
    pipeline_name: PipelineName | None = Field(default=None, description="Omit for all.")
    time_range_days: float = Field(default=7, gt=0, le=3650)


class PipelineHealth(_Out):
    pipeline: str
    status: Literal["healthy", "degraded", "failing", "unknown"] = Field(
        description="failing: the last two runs failed or under half succeed; degraded: the last run "
        "failed, under 90% succeed, a job passes only on retry, or runs are getting slower; unknown: no "
        "finished runs in the window."
    )
    reasons: list[str] = Field(description="Why the status is what it is, in words.")
    window_days: float
    runs: int = Field(description="Finished runs in the window.")
    succeeded: int
    failed: int = Field(description="Failed or interrupted.")
    cancelled: int
    success_rate: float | None = Field(default=None, description="succeeded / (succeeded + failed), 0..1.")
    failure_streak: int = Field(description="Failed runs since the last success.")
    last_run_id: str | None = None
    last_status: str | None = None
    last_finished_at: float | None = Field(default=None, description="Unix time.")
    last_duration: float | None = Field(default=None, description="Seconds.")
    mean_time_to_recovery: float | None = Field(default=None, description="Seconds.")
    flaky_jobs: list[str] = Field(default_factory=list, description="Jobs that passed only on a retry.")
    duration_trend: str | None = Field(default=None, description="increasing, decreasing, stable, ...")


class PipelineHealthOutput(_Out):
    summary: str
    pipelines: list[PipelineHealth]


class AnalyzePerformanceInput(_In):
    pipeline_name: PipelineName
    time_range_days: float = Field(default=7, gt=0, le=3650)
    target_improvement: float = Field(default=0.2, gt=0, lt=1, description="Wanted speed-up, 0.2 = 20%.")


class DurationStats(_Out):
    runs: int
    mean: float = Field(description="Seconds.")
    median: float = Field(description="Seconds.")
    p95: float = Field(description="Seconds.")


class SuggestionOut(_Out):
    kind: str
    title: str
    detail: str
    jobs: list[str]
    estimated_saving: float = Field(description="Mean seconds saved per run, from replaying recorded runs.")
    estimated_duration: float = Field(description="Mean run seconds with this change alone.")
    effort: str


class AnalyzePerformanceOutput(_Out):
    summary: str
    pipeline: str
    status: str = Field(description="ok, unknown_pipeline or no_runs_in_window.")
    message: str
    window_days: float
    runs: dict[str, int] = Field(description="Runs in the window by status.")
    duration: DurationStats | None = Field(default=None, description="Of the succeeded runs.")
    trend: str | None = Field(default=None, description="Duration trend, with why.")
    critical_path: list[str] = Field(default_factory=list, description="Jobs on the newest run's critical path.")
    slowest_jobs: list[str] = Field(default_factory=list, description="Jobs by mean duration, slowest first.")
    flaky_jobs: list[str] = Field(default_factory=list)
    suggestions: list[SuggestionOut] = Field(default_factory=list, description="Ranked by seconds saved.")
    target_improvement: float
    reaches_target: bool | None = Field(default=None, description="Do the suggestions together reach it?")
    estimated_duration: float | None = Field(default=None, description="Mean run seconds, all applied.")
    report_uri: str


# -- compat ---------------------------------------------------------------------------------------


class CallModuleFunctionInput(_In):
    module: Literal["ci_cd_automation"]
    function: Literal["run_pipeline", "manage_deployments", "handle_rollback", "optimize_pipeline_performance"]
    arguments: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("arguments", "args"),
        description="As for the tool it maps to (run_pipeline, deploy, execute_rollback, analyze_performance); "
        "`args` is accepted too (the original design's name).",
    )


class CallModuleFunctionOutput(_Out):
    summary: str
    tool: str = Field(description="The first-class tool the call was served by.")
    result: dict[str, Any]
    status: Literal["success", "failure", "running"] = Field(
        default="success", description="The original design's status: success, failure, or running for work "
        "still going on (our own status is in `result`).")
    deployment_id: str | None = Field(default=None, description="The deployment concerned, for handle_rollback.")
    run_id: str | None = Field(default=None, description="The run concerned.")

    # The original design's agent code reads result["deployment_id"]: present even when None.
    ALWAYS_PRESENT: ClassVar[tuple[str, ...]] = ("deployment_id", "run_id")


# -- deployments ----------------------------------------------------------------------------------


class DeployInput(_In):
    version: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
        description="e.g. 1.4.2",
    )
    environment: Environment = Field(
        description="Defined in `config_path` or registered earlier."
    )
    artifacts: list[str] = Field(
        default_factory=list, max_length=100,
        description="Release directories/files on the server, or images.",
    )
    name: str | None = Field(
        default=None, max_length=128, description="Default <service>-<version>."
    )
    service: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", description="Default: the environment's."
    )
    strategy: Literal["rolling", "blue_green", "canary", "recreate"] | None = Field(
        default=None, description="Default: the environment's."
    )
    strategy_options: dict[str, Any] = Field(
        default_factory=dict, description="e.g. canary {steps: [10, 50, 100]}."
    )
    rollback_on_failure: bool | None = Field(
        default=None, description="Put the last good version back on failure."
    )
    config_path: str | None = Field(
        default=None, max_length=4096,
        description="A deployment config YAML.",
    )


class InstanceOut(_Out):
    slot: str
    host: str
    port: int | None = None
    version: str | None = None
    color: str | None = None
    alive: bool


class DeployOutput(_Out):
    summary: str
    deployment_id: str
    name: str
    environment: str
    service: str
    version: str
    previous_version: str | None = None
    strategy: str
    status: str = Field(description="success, failure, rolled_back or rollback_failed.")
    reason: str | None = None
    duration: float | None = Field(default=None, description="Seconds.")
    instances: list[InstanceOut] = Field(default_factory=list)
    log_tail: list[str] = Field(default_factory=list, description="The last lines of the deployment's log.")
    log_note: str
    resource_uri: str


# -- rollbacks ------------------------------------------------------------------------------------

RollbackStrategyName = Literal["immediate", "rolling", "blue_green", "canary", "manual"]


class CreateRollbackPlanInput(_In):
    deployment_id: str = Field(min_length=1, max_length=128, description="Id or name.")
    strategy: RollbackStrategyName | None = Field(
        default=None, description="manual: a runbook for a person."
    )
    reason: str = Field(default="", max_length=2000)
    to_version: str | None = Field(
        default=None, max_length=128,
        description="Default: the last one verified healthy before it.",
    )


class PlanStepOut(_Out):
    name: str
    action: str
    targets: list[str]
    timeout: float = Field(description="Seconds one attempt may take.")
    retries: int
    estimate: float = Field(description="Expected seconds.")


class RollbackPlanOutput(_Out):
    summary: str
    plan_id: str
    deployment_id: str
    environment: str
    service: str
    strategy: str
    from_version: str
    to_version: str
    executable: bool = Field(description="False for a manual plan: follow `runbook`.")
    estimated_duration: float = Field(description="Seconds.")
    estimate_basis: str = Field(description="timeouts, measured (past rollbacks) or both.")
    steps: list[PlanStepOut]
    runbook: str | None = None
    notes: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list, description="Non-empty: executing needs force=true.")


class ExecuteRollbackInput(_In):
    deployment_id: str | None = Field(
        default=None, max_length=128,
        description="Id or name: its newest plan (or a new one).",
    )
    plan_id: str | None = Field(default=None, max_length=128)
    force: bool = Field(default=False, description="Run a plan that has warnings.")

    @model_validator(mode="after")
    def _one_ref(self) -> ExecuteRollbackInput:
        if (self.deployment_id is None) == (self.plan_id is None):
            raise ValueError("give exactly one of deployment_id or plan_id")
        return self


class StepResultOut(_Out):
    name: str
    action: str
    status: str = Field(description="pending, running, done or failed.")
    attempts: int
    duration: float | None = None
    detail: str | None = None


class RollbackExecutionOutput(_Out):
    summary: str
    execution_id: str
    plan_id: str
    deployment_id: str
    environment: str
    service: str
    strategy: str
    from_version: str
    to_version: str
    status: str = Field(description="completed or failed.")
    failed_step: str | None = None
    errors: list[str] = Field(default_factory=list)
    duration: float = Field(description="Seconds.")
    steps: list[StepResultOut]
    skipped_steps: list[str] = Field(default_factory=list, description="Done earlier (a resumed execution).")
    already_completed_at: str | None = Field(default=None, description="Set when this call found it done.")


# -- validation -----------------------------------------------------------------------------------


class ValidatePipelineInput(_In):
    config_path: str | None = Field(default=None, max_length=4096, description="A YAML file on the server.")
    yaml: str | None = Field(default=None, max_length=200_000, description="Or the YAML text.")
    pipeline: PipelineName | None = Field(default=None, description="Or a known pipeline's name.")

    @model_validator(mode="after")
    def _one_source(self) -> ValidatePipelineInput:
        if sum(v is not None for v in (self.config_path, self.yaml, self.pipeline)) != 1:
            raise ValueError("give exactly one of config_path (a YAML file), yaml (the text) or pipeline (a name)")
        return self


class PipelineIssue(_Out):
    where: str = Field(description="file:line:column")
    field: str | None = None
    message: str


class PlannedJob(_Out):
    name: str
    stage: str
    needs: list[str] = Field(default_factory=list)
    runs_on: str | None = None
    deploys_to: str | None = None
    commands: int


class ValidatePipelineOutput(_Out):
    summary: str
    valid: bool
    pipeline: str | None = None
    errors: list[PipelineIssue] = Field(default_factory=list)
    jobs: list[PlannedJob] = Field(default_factory=list)
    waves: list[list[str]] = Field(default_factory=list, description="Jobs that can run together, in order.")
    secrets: list[str] = Field(default_factory=list, description="Secrets the run will need.")


# -- services -------------------------------------------------------------------------------------


class _ServiceIn(_In):
    environment: Environment
    service: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
                                description="Default: the environment's.")
    config_path: str | None = Field(default=None, max_length=4096,
                                    description="A deployment config YAML.")


class EnvironmentStatusInput(_ServiceIn):
    deployments: int = Field(default=5, ge=0, le=50, description="Recent deployments listed.")


class InstanceStatus(_Out):
    slot: str
    address: str
    version: str | None = None
    color: str | None = None
    alive: bool = Field(description="The process/container runs.")
    answers: bool | None = Field(default=None, description="Accepts TCP connections now.")
    ref: str | None = Field(default=None, description="pid, container or pod.")
    deployment_id: str | None = None
    since: str | None = Field(default=None, description="When its deployment finished (UTC).")


class DeploymentBrief(_Out):
    deployment_id: str
    version: str
    status: str
    strategy: str
    created: str
    reason: str | None = None


class EnvironmentStatusOutput(_Out):
    summary: str
    environment: str
    service: str
    live_versions: list[str] = Field(description="Versions running now (read from the world).")
    recorded_live_version: str | None = Field(default=None, description="Last version verified live.")
    instances: list[InstanceStatus]
    lock_holder: str | None = None
    last_deployments: list[DeploymentBrief] = Field(default_factory=list)


class StopServiceInput(_ServiceIn):
    pass


class StopServiceOutput(_Out):
    summary: str
    environment: str
    service: str
    stopped: list[str] = Field(description="Slots stopped.")
    still_running: list[str] = Field(default_factory=list)
    still_answering: list[str] = Field(default_factory=list, description="Addresses that still accept connections.")


class GetServiceLogsInput(_ServiceIn):
    slot: str | None = Field(default=None, max_length=256, description="One instance; default all.")
    max_bytes: int = Field(default=4000, ge=200, le=200_000, description="Per instance.")


class ServiceLog(_Out):
    slot: str
    version: str | None = None
    alive: bool
    text: str
    note: str


class GetServiceLogsOutput(_Out):
    summary: str
    environment: str
    service: str
    logs: list[ServiceLog]
