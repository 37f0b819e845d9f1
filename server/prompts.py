"""Prompts: ready-made starting points for the two tasks agents are asked most."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from server.gate import CicdServer

__all__ = ["register_prompts"]


def register_prompts(server: CicdServer) -> None:
    @server.prompt(name="diagnose_failed_run", title="Diagnose a failed run")
    def diagnose_failed_run(
        run_id: Annotated[str, Field(description="The run to diagnose (list_runs shows recent ones).")],
    ) -> str:
        """Find out why a pipeline run failed and what to change."""
        return (
            f"Pipeline run {run_id} did not succeed. Diagnose it:\n"
            f"1. Call get_run with run_id={run_id!r}; note each failed or timed-out job, its exit code and reason.\n"
            "2. For each failed job call get_job_logs with failed_only=true (raise `tail`, or use `grep` for "
            "'error|fail|Traceback', when the tail does not show the cause). A log's `note` says what was cut; "
            "the whole log is the resource in `log_uri`.\n"
            "3. Tell a job that failed on its own from one skipped or cancelled because something else failed.\n"
            "4. Answer with: the root cause (quote the log lines), whether it looks flaky (compare with "
            "pipeline_health), and the smallest change that fixes it. Do not re-run the pipeline unless asked."
        )

    @server.prompt(name="plan_safe_deploy", title="Plan a safe deployment")
    def plan_safe_deploy(
        service: Annotated[str, Field(description="The service to deploy, as named in the deployment config.")],
        version: Annotated[str, Field(description="The version to deploy, e.g. 1.4.2.")],
        environment: Annotated[str, Field(description="Where to deploy (default staging).")] = "staging",
    ) -> str:
        """Plan a deployment that can be rolled back, checking health first."""
        return (
            f"Plan the deployment of {service} version {version} to {environment}, safely:\n"
            "1. Call pipeline_health and check the pipeline that builds the service is healthy; if its last "
            "run failed, stop and say why (diagnose_failed_run).\n"
            "2. Prefer a strategy that keeps the old version serving until the new one is healthy (canary or "
            "blue-green for production, rolling elsewhere) and keep rollback_on_failure on.\n"
            "3. Before deploying, know how to go back: which version is live now, and the rollback plan "
            "(create_rollback_plan when the server offers it).\n"
            f"4. Deploying to {environment} may need the user's confirmation: say what will change first.\n"
            "5. After deploying, report the health checks and the version now live."
        )
