"""A deploy stage: a stage with `environment:` and no jobs, as the original design wrote it.

It deploys the artifacts of the jobs it depends on (the stages named in its `depends_on`,
or the stage before it) to its environment, with its strategy and `rollback_on_failure`,
through the deployment engine (`engine.deploy.deploy_artifacts`). The artifacts are
gathered at their relative paths into one release directory, which is what is deployed.

The environment comes from the deployment config: `deploy: {config: ...}` when given,
else `deployment_config.yaml` beside the pipeline file, else the one PIPELINE_CONFIG_PATH
points at (the file, or `deployment_config.yaml` in that directory or beside that file),
else an environment of that name registered in the workspace earlier. A stage whose
environment none of these defines fails when it runs, naming where it looked: the file
loads without a deployment config, so that a pipeline can be checked anywhere.
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import CicdError, NotFoundError
from engine.events import Event
from engine.pipeline.logs import LogWriter
from engine.pipeline.results import ArtifactRecord
from engine.pipeline.states import JobStatus
from engine.settings import Settings, get_settings
from engine.spec.model import JobPlan
from engine.store.base import Store

__all__ = ["CONFIG_FILE_NAME", "DeployStageOutcome", "deployment_config_candidates", "run_deploy_stage"]

CONFIG_FILE_NAME = "deployment_config.yaml"
Emit = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class DeployStageOutcome:
    status: JobStatus
    reason: str | None
    deployment: dict[str, Any] | None  # deployment_id, status, rolled_back, ... (None: nothing was deployed)


def deployment_config_candidates(
    explicit: str | None, spec_path: str | None, settings: Settings
) -> list[Path]:
    """Where a deploy stage looks for its deployment config, in order (see the module docstring)."""
    if explicit is not None:
        return [Path(explicit)]
    out: list[Path] = []
    if spec_path is not None:
        out.append(Path(spec_path).parent / CONFIG_FILE_NAME)
    configured = settings.PIPELINE_CONFIG_PATH
    if configured is not None:
        configured = configured.expanduser()
        if configured.is_dir():
            out.append(configured / CONFIG_FILE_NAME)
        else:
            out.append(configured.parent / CONFIG_FILE_NAME)
    return list(dict.fromkeys(p.resolve() for p in out))


def _gather(artifacts: Sequence[ArtifactRecord], release_dir: Path) -> int:
    if release_dir.exists():
        shutil.rmtree(release_dir)
    release_dir.mkdir(parents=True)
    for art in artifacts:
        dest = release_dir / art.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(art.stored_path, dest)
    return len(artifacts)


async def run_deploy_stage(
    plan: JobPlan,
    *,
    spec_path: str | None,
    run_id: str,
    store: Store,
    workspace_root: Path,
    release_dir: Path,
    artifacts: Sequence[ArtifactRecord],
    version: str,
    writer: LogWriter,
    emit: Emit,
    settings: Settings | None = None,
) -> DeployStageOutcome:
    """Deploy the dependencies' `artifacts` as `version` (interpolated by the runner) to the stage's
    environment; never raises for a failed deploy.

    Raises:
        OSError: the release directory cannot be written (an infrastructure failure of the job).
    """
    from engine.deploy import deploy_artifacts

    assert plan.environment is not None and plan.deploy is not None
    d = plan.deploy
    settings = settings or get_settings()
    if not artifacts:
        why = (f"nothing to deploy: the jobs {', '.join(plan.needs) or '(none)'} this stage depends on kept no "
               "artifacts; declare `artifacts:` on the jobs whose output is deployed")
        writer.note(why)
        return DeployStageOutcome(JobStatus.FAILED, why, None)
    count = _gather(artifacts, release_dir)
    candidates = deployment_config_candidates(plan.deploy_config, spec_path, settings)
    config = next((c for c in candidates if c.is_file()), None)
    writer.note(f"deploying {count} artifact(s) of {', '.join(plan.needs)} as version {version} to "
                f"{plan.environment}" + (f" ({plan.strategy})" if plan.strategy else "")
                + (f"; environments from {config}" if config else "; environments registered in the workspace"))

    async def forward(event: Event) -> None:
        writer.note(f"deploy: {event.message}")
        await emit(f"deploy_{event.kind}", f"{plan.name}: {event.message}")

    try:
        result = await deploy_artifacts(
            workspace_root, plan.environment, d.service, version, [str(release_dir)], plan.strategy, forward,
            config_path=config, run_id=run_id, rollback_on_failure=d.rollback_on_failure, store=store, **d.options,
        )
    except NotFoundError as exc:
        if config is not None or "environment" not in str(exc):
            why = f"deploy refused: {exc}"
        else:
            looked = ", ".join(str(c) for c in candidates) or "(no pipeline file, PIPELINE_CONFIG_PATH unset)"
            why = (f"deploy stage {plan.name!r}: environment {plan.environment!r} is not defined: no deployment "
                   f"config found (looked for {looked}) and none of that name is registered in the workspace; "
                   f"add {CONFIG_FILE_NAME} with `environments: [{{name: {plan.environment}, ...}}]` beside the "
                   "pipeline, or set PIPELINE_CONFIG_PATH")
        writer.note(why)
        return DeployStageOutcome(JobStatus.FAILED, why, None)
    except CicdError as exc:
        writer.note(f"deploy refused: {exc}")
        return DeployStageOutcome(JobStatus.FAILED, f"deploy refused: {exc}", None)
    status = str(result.status)
    rolled_back = status == "rolled_back"
    deployment = {
        "deployment_id": result.deployment_id, "environment": result.environment, "service": result.service,
        "version": result.version, "previous_version": result.previous_version, "strategy": result.strategy,
        "status": status, "rolled_back": rolled_back, "reason": result.reason, "duration": result.duration,
    }
    writer.note(f"deployment {result.deployment_id}: {status}" + (" (the previous version was put back)"
                                                                  if rolled_back else ""))
    if result.ok:
        return DeployStageOutcome(JobStatus.SUCCEEDED, None, deployment)
    return DeployStageOutcome(
        JobStatus.FAILED, f"deployment {result.deployment_id} {status}: {result.reason or status}", deployment
    )
