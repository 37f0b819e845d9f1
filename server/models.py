"""The wire contract: one pydantic input and one output model per tool.

Clients get `inputSchema`/`outputSchema` from these and `tool_manifests/` is generated from
them, so a field's `description` is written for the model reading it. Every output starts
with `summary`, a short text an LLM can read without parsing the rest.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

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
    Field(description="A run id as returned by run_pipeline or get_run."),
]
PipelineName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"),
    Field(description="A pipeline's name (its `name:` field)."),
]
JobName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256),
    Field(description="A job name as shown in the run, e.g. 'test' or 'lint[py=3.11]'."),
]
Environment = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
    Field(description="Target environment, e.g. staging or production."),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- runs -----------------------------------------------------------------------------------------


class RunPipelineInput(_In):
    config_path: str | None = Field(
        default=None,
        description="Path of a pipeline YAML file on the server. Give this or `pipeline`. When the server has a "
        "config root (PIPELINE_CONFIG_PATH), the file must lie under it or the workspace (symlinks followed).",
        max_length=4096,
    )
    pipeline: PipelineName | None = Field(
        default=None, description="Name of a pipeline already known to the server. Give this or `config_path`."
    )
    variables: dict[str, str] = Field(
        default_factory=dict,
        description="Variables for the run (override the pipeline's `variables:`). Secret values are masked.",
    )
    wait: bool = Field(
        default=True,
        description="true: return when the run has finished (progress is reported meanwhile). "
        "false: return the run id at once; follow it with get_run.",
    )
    environment: Environment | None = Field(
        default=None,
        description="The environment this run changes, if it deploys (e.g. production). Runs aimed at a "
        "protected environment need a human confirmation. Passed to the run as variable CICD_ENVIRONMENT.",
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
    job: JobName | None = Field(default=None, description="One job; omit for every job of the run.")
    tail: int = Field(default=100, ge=1, le=5000, description="Return at most this many lines from the end.")
    grep: str | None = Field(
        default=None, max_length=512, description="Only lines matching this regular expression (Python syntax)."
    )
    failed_only: bool = Field(default=False, description="Only jobs that failed or timed out.")


class JobLog(_Out):
    job: str
    status: str
    text: str
    lines_returned: int
    truncated: bool = Field(description="True when lines were left out (see `note`).")
    note: str = Field(description="What was cut and how much, or 'complete'.")
    log_uri: str


class GetJobLogsOutput(_Out):
    summary: str
    run_id: str
    logs: list[JobLog]
    jobs_omitted: list[str] = Field(
        default_factory=list, description="Jobs not read because the output limit was reached; ask for them one by one."
    )


class CancelRunInput(_In):
    run_id: RunId


class CancelRunOutput(_Out):
    summary: str
    run_id: str
    cancel_requested: bool = Field(description="True when the run was still going and has been told to stop.")
    status: str


# -- health and performance (computed by engine.insights from stored runs) -----------------------


class PipelineHealthInput(_In):
    pipeline_name: PipelineName | None = Field(default=None, description="One pipeline; omit for all of them.")
    time_range_days: float = Field(default=7, gt=0, le=3650, description="Look at runs of the last N days.")


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
    time_range_days: float = Field(default=7, gt=0, le=3650, description="Analyse runs of the last N days.")
    target_improvement: float = Field(
        default=0.2, gt=0, lt=1, description="Wanted speed-up as a fraction of the mean run time (0.2 = 20%)."
    )


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
    module: Literal["ci_cd_automation"] = Field(description="The original design's module name.")
    function: Literal["run_pipeline", "manage_deployments", "handle_rollback", "optimize_pipeline_performance"]
    arguments: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("arguments", "args"),
        description="Arguments of the function (also accepted as `args`, the original design's name); the same "
        "as the first-class tool it maps to (run_pipeline, deploy, execute_rollback, analyze_performance).",
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


# -- deployments ----------------------------------------------------------------------------------


class DeployInput(_In):
    version: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
        description="The version to deploy, e.g. 1.4.2: letters, digits, '.', '_', '-' (a Docker tag's characters), "
        "starting with a letter or digit.",
    )
    environment: Environment = Field(
        description="Environment to deploy to: one defined in `config_path` or registered earlier. Deploying "
        "to a protected environment (e.g. production) asks the user to confirm."
    )
    artifacts: list[str] = Field(
        default_factory=list, max_length=100,
        description="What to deploy: release directories/files on the server, or image references.",
    )
    name: str | None = Field(
        default=None, max_length=128, description="Name of this deployment; default <service>-<version>."
    )
    service: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", description="Service; default the environment's."
    )
    strategy: Literal["rolling", "blue_green", "canary", "recreate"] | None = Field(
        default=None, description="Rollout strategy; default the environment's (else DEPLOY_STRATEGY)."
    )
    strategy_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the strategy, e.g. canary {steps: [10, 50, 100]}."
    )
    rollback_on_failure: bool | None = Field(
        default=None, description="Put the previous verified version back if this one fails its health checks."
    )
    config_path: str | None = Field(
        default=None, max_length=4096,
        description="A deployment config YAML on the server defining environments (targets, health checks). When "
        "the server has a config root (PIPELINE_CONFIG_PATH), the file must lie under it or the workspace.",
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
    deployment_id: str = Field(min_length=1, max_length=128, description="The deployment to undo (id or name).")
    strategy: RollbackStrategyName | None = Field(
        default=None, description="How to put the old version back; default ROLLBACK_DEFAULT_STRATEGY. "
        "manual: a runbook for a person, not executable."
    )
    reason: str = Field(default="", max_length=2000, description="Why; kept with the plan and the history.")
    to_version: str | None = Field(
        default=None, max_length=128,
        description="Version to go back to; default the last one verified healthy before this deployment.",
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


class ExecuteRollbackInput(_In):
    deployment_id: str | None = Field(
        default=None, max_length=128,
        description="Roll this deployment back (id or name) with its newest plan, or a new default one.",
    )
    plan_id: str | None = Field(default=None, max_length=128, description="Execute this plan.")

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
