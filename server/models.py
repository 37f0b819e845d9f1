"""The wire contract: one pydantic input and one output model per tool.

Clients get `inputSchema`/`outputSchema` from these and `tool_manifests/` is generated from
them, so a field's `description` is written for the model reading it. Every output starts
with `summary`, a short text an LLM can read without parsing the rest.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

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
        description="Path of a pipeline YAML file on the server. Give this or `pipeline`.",
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
    jobs: list[JobSummary] = Field(default_factory=list)
    failed_jobs: list[FailedJob] = Field(
        default_factory=list, description="Failed or timed-out jobs with the tail of their logs."
    )
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


class CancelRunInput(_In):
    run_id: RunId


class CancelRunOutput(_Out):
    summary: str
    run_id: str
    cancel_requested: bool = Field(description="True when the run was still going and has been told to stop.")
    status: str


# -- health ---------------------------------------------------------------------------------------


class PipelineHealthInput(_In):
    pipeline_name: PipelineName | None = Field(default=None, description="One pipeline; omit for all of them.")


class PipelineHealth(_Out):
    pipeline: str
    status: Literal["healthy", "degraded", "failing", "unknown"] = Field(
        description="healthy: recent runs succeed; degraded: some fail; failing: most fail or the last "
        "several failed; unknown: no finished runs yet."
    )
    runs: int = Field(description="Finished runs considered (most recent first).")
    success_rate: float | None = Field(default=None, description="0..1 over the runs considered.")
    consecutive_failures: int
    last_status: str | None = None
    last_run_id: str | None = None
    last_finished_at: float | None = Field(default=None, description="Unix time.")
    median_duration: float | None = Field(default=None, description="Seconds, succeeded runs.")
    issues: list[str] = Field(default_factory=list, description="What is wrong, in words.")


class PipelineHealthOutput(_Out):
    summary: str
    pipelines: list[PipelineHealth]


# -- compat ---------------------------------------------------------------------------------------


class CallModuleFunctionInput(_In):
    module: Literal["ci_cd_automation"] = Field(description="The original design's module name.")
    function: Literal["run_pipeline", "manage_deployments", "handle_rollback", "optimize_pipeline_performance"]
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments of the function; the same as the first-class tool it maps to "
        "(run_pipeline, deploy, execute_rollback, analyze_performance).",
    )


class CallModuleFunctionOutput(_Out):
    summary: str
    tool: str = Field(description="The first-class tool the call was served by.")
    result: dict[str, Any]


# -- deployments ----------------------------------------------------------------------------------


class DeployInput(_In):
    version: str = Field(min_length=1, max_length=128, description="The version to deploy, e.g. 1.4.2.")
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
    service: str | None = Field(default=None, max_length=63, description="Service; default the environment's.")
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
        description="A deployment config YAML on the server defining environments (targets, health checks).",
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
