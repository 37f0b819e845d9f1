"""GitHub Actions export: a pipeline as a workflow file; what cannot be expressed is a warning."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

from engine.interop._common import BaseJob, base_jobs, dump_yaml, glob_root, job_commands, to_plan
from engine.interop._expr import Unsupported, condition_to_github, github_name
from engine.spec.model import PipelinePlan, PipelineSpec

__all__ = ["export_github_actions"]

_EVENTS = {"manual": "workflow_dispatch", "merge_request": "pull_request"}


def _job_ids(jobs: list[BaseJob], warnings: list[str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    for job in jobs:
        candidate = re.sub(r"[^A-Za-z0-9_-]", "-", job.name)
        if not re.match(r"[A-Za-z_]", candidate):
            candidate = "_" + candidate
        base, n = candidate, 2
        while candidate in ids.values():
            candidate, n = f"{base}-{n}", n + 1
        if candidate != job.name:
            warnings.append(f"job {job.name}: renamed {candidate!r} (GitHub job ids allow letters, digits, "
                            "- and _)")
        ids[job.name] = candidate
    return ids


def _matrix_refs(text: str) -> str:
    return re.sub(r"\$\{matrix\.([A-Za-z_][A-Za-z0-9_]*)\}", r"${{ matrix.\1 }}", text)


def export_github_actions(
    source: PipelineSpec | PipelinePlan | str | os.PathLike[str] | Mapping[str, Any],
) -> tuple[str, list[str]]:
    """The pipeline as a GitHub Actions workflow (YAML text), and what could not be expressed.

    Raises:
        SpecError: the pipeline is invalid.
        NotFoundError: the pipeline file does not exist.
    """
    plan = to_plan(source)
    spec = plan.spec
    warnings: list[str] = []
    jobs = base_jobs(plan)
    ids = _job_ids(jobs, warnings)
    by_name = {j.name: j for j in jobs}
    variable_names = frozenset(spec.variables)

    on: dict[str, Any] = {}
    for event in spec.trigger.events or ["push", "manual"]:
        on[_EVENTS.get(event, event)] = {}
    if spec.trigger.branches:
        on.setdefault("push", {})["branches"] = list(spec.trigger.branches)
        if "pull_request" in on:
            on["pull_request"]["branches"] = list(spec.trigger.branches)
    if "schedule" in on:
        warnings.append("trigger event `schedule` needs a cron line in GitHub Actions; add it by hand")
    if spec.fail_fast:
        warnings.append("fail_fast: GitHub Actions has no run-wide fail fast; the other jobs keep running")
    if spec.timeout:
        warnings.append(f"timeout: the whole-run timeout ({spec.timeout:g}s) has no GitHub Actions "
                        "equivalent")
    if spec.max_workers:
        warnings.append(f"max_workers: {spec.max_workers} concurrent jobs has no GitHub Actions equivalent")

    workflow: dict[str, Any] = {"name": spec.name, "on": on}
    if spec.variables:
        workflow["env"] = {k: _plain(v) for k, v in spec.variables.items()}
    out_jobs: dict[str, Any] = {}
    for job in jobs:
        out_jobs[ids[job.name]] = _export_job(job, plan, ids, by_name, variable_names, warnings)
    workflow["jobs"] = out_jobs
    header = (f"# Exported by cicd-mcp from pipeline {spec.name!r}.\n"
              + "".join(f"# warning: {w}\n" for w in warnings))
    return dump_yaml(workflow, header), warnings


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _export_job(job: BaseJob, plan: PipelinePlan, ids: Mapping[str, str], by_name: Mapping[str, BaseJob],
                variable_names: frozenset[str], warnings: list[str]) -> dict[str, Any]:
    jp = job.plan
    out: dict[str, Any] = {"name": job.name, "runs-on": "ubuntu-latest"}
    if job.needs:
        out["needs"] = [ids[n] for n in job.needs]
    if jp.condition is not None:
        names = variable_names | frozenset(jp.variables)
        try:
            out["if"] = condition_to_github(jp.condition.tree, lambda n: github_name(n, names))
        except Unsupported as exc:
            warnings.append(f"job {job.name}: if: {jp.condition.text!r} was not exported: {exc}")
    if job.stage.environment:
        out["environment"] = job.stage.environment
        if job.stage.strategy:
            warnings.append(f"job {job.name}: deploy strategy {job.stage.strategy!r} is not expressible; the "
                            f"job only declares environment {job.stage.environment!r}")
    if jp.timeout:
        minutes = math.ceil(jp.timeout / 60)
        if minutes * 60 != jp.timeout:
            warnings.append(f"job {job.name}: timeout {jp.timeout:g}s rounded up to {minutes} minutes")
        out["timeout-minutes"] = minutes
    if jp.allow_failure:
        out["continue-on-error"] = True
    if jp.retry.max:
        warnings.append(f"job {job.name}: retry (max {jp.retry.max}) is not supported by GitHub Actions")
    if job.matrix:
        matrix = {k: [_plain(v) for v in vs] for k, vs in job.matrix.items()}
        out["strategy"] = {"fail-fast": False, "matrix": matrix}
    env: dict[str, Any] = {k: _plain(v) for k, v in jp.variables.items()}
    for key in job.matrix or {}:
        env.setdefault(key, "${{ matrix." + key + " }}")
    for secret in plan.spec.secrets:
        env[secret] = "${{ secrets." + secret + " }}"
    commands = job_commands(job, plan, warnings)
    script = "\n".join(commands) if commands is not None else \
        f"echo 'job {job.name}: its standard build could not be exported' >&2\nexit 1"
    context = {"CICD_BRANCH": "${{ github.ref_name }}", "CICD_EVENT": "${{ github.event_name }}",
               "CICD_RUN_ID": "${{ github.run_id }}", "CICD_PIPELINE": "${{ github.workflow }}",
               "CICD_JOB": job.name, "CICD_STAGE": job.stage.name,
               "CICD_WORKSPACE": "${{ github.workspace }}"}
    env.update({k: v for k, v in context.items() if k in script})
    if env:
        out["env"] = env
    steps: list[dict[str, Any]] = [{"uses": "actions/checkout@v4"}]
    for ancestor in job.ancestors:
        source = by_name[ancestor]
        if source.plan.artifacts:
            step: dict[str, Any] = {"name": f"artifacts of {ancestor}",
                                    "uses": "actions/download-artifact@v4"}
            with_: dict[str, Any] = {"name": ids[ancestor]}
            if source.matrix:   # one artifact per matrix job, merged back into one tree
                with_ = {"pattern": f"{ids[ancestor]}-*", "merge-multiple": True}
            with_["path"] = glob_root(_in_wd(source.plan.artifacts, source.plan.working_directory))
            step["with"] = with_
            steps.append(step)
    run_step: dict[str, Any] = {"name": "run", "shell": jp.shell, "run": _matrix_refs(script)}
    if jp.working_directory:
        run_step["working-directory"] = jp.working_directory
    steps.append(run_step)
    if jp.artifacts:
        steps.append({
            "name": "upload artifacts", "uses": "actions/upload-artifact@v4",
            "with": {
                "name": ids[job.name] + ("-${{ strategy.job-index }}" if job.matrix else ""),
                "path": "\n".join(_in_wd(jp.artifacts, jp.working_directory)),
                "if-no-files-found": "warn",
            },
        })
    out["steps"] = steps
    return out


def _in_wd(paths: list[str], wd: str | None) -> list[str]:
    return [f"{wd.rstrip('/')}/{p}" if wd else p for p in paths]
