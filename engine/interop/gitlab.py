"""GitLab CI: export a pipeline as a `.gitlab-ci.yml`.

Stages stay stages; the job graph is written with `needs:` on every job (an empty list
for jobs that wait for nothing), so GitLab runs the same DAG the engine does. A job's
artifacts reach every job downstream of it: GitLab only hands artifacts down `needs`
edges, so ancestors that made artifacts are added to `needs` with `artifacts: true`
(they are upstream anyway, so the graph does not change).
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from collections.abc import Mapping
from typing import Any

from engine.interop._common import BaseJob, base_jobs, dump_yaml, job_commands, to_plan
from engine.interop._expr import Unsupported, condition_to_gitlab
from engine.spec.model import PipelinePlan, PipelineSpec

__all__ = ["export_gitlab_ci"]

# Top-level keywords a job may not be called.
_RESERVED = {"image", "services", "stages", "types", "before_script", "after_script", "variables", "cache",
             "include", "default", "workflow", "pages"}
_WHEN = {"failure": "script_failure", "timeout": "stuck_or_timeout_failure",
         "infrastructure": "runner_system_failure"}
_SOURCES = {"push": "push", "manual": "web", "merge_request": "merge_request_event",
            "pull_request": "merge_request_event", "schedule": "schedule", "api": "api", "trigger": "trigger"}
_GITLAB_MAX_RETRY = 2


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _branch_regex(patterns: list[str]) -> str:
    parts = []
    for pattern in patterns:
        # fnmatch gives (?s:...)\Z; GitLab wants a RE2 /.../ without those.
        rx = fnmatch.translate(pattern).removeprefix("(?s:").removesuffix(")\\Z")
        parts.append(rx.replace("/", "\\/"))
    return "/^(" + "|".join(parts) + ")$/"


def export_gitlab_ci(
    source: PipelineSpec | PipelinePlan | str | os.PathLike[str] | Mapping[str, Any],
) -> tuple[str, list[str]]:
    """The pipeline as a `.gitlab-ci.yml` (YAML text), and what could not be expressed.

    Raises:
        SpecError: the pipeline is invalid.
        NotFoundError: the pipeline file does not exist.
    """
    plan = to_plan(source)
    spec = plan.spec
    warnings: list[str] = []
    jobs = base_jobs(plan)
    names: dict[str, str] = {}
    for job in jobs:
        name = job.name
        if name in _RESERVED:
            name = f"{name}-job"
            warnings.append(f"job {job.name}: renamed {name!r} ({job.name!r} is a GitLab CI keyword)")
        names[job.name] = name
    by_name = {j.name: j for j in jobs}

    doc: dict[str, Any] = {"stages": [s.name for s in spec.stages]}
    if spec.variables:
        doc["variables"] = {k: _plain(v) for k, v in spec.variables.items()}
    rules: list[str] = []
    if spec.trigger.branches:
        rules.append(f"$CI_COMMIT_BRANCH =~ {_branch_regex(spec.trigger.branches)}")
    if spec.trigger.events:
        sources = []
        for event in spec.trigger.events:
            if event in _SOURCES:
                sources.append(_SOURCES[event])
            else:
                warnings.append(f"trigger event {event!r} has no GitLab pipeline source; it was left out")
        if sources:
            rules.append("(" + " || ".join(f'$CI_PIPELINE_SOURCE == "{s}"' for s in sources) + ")")
    if rules:
        doc["workflow"] = {"rules": [{"if": " && ".join(rules)}]}
    if spec.fail_fast:
        warnings.append("fail_fast: GitLab CI has no run-wide fail fast; the other jobs keep running")
    if spec.timeout:
        warnings.append(f"timeout: the whole-run timeout ({spec.timeout:g}s) has no GitLab CI equivalent")
    if spec.max_workers:
        warnings.append(f"max_workers: {spec.max_workers} concurrent jobs has no GitLab CI equivalent")
    warnings.extend(f"secret {secret}: define it as a masked CI/CD variable in the GitLab project"
                    for secret in spec.secrets)
    for job in jobs:
        doc[names[job.name]] = _export_job(job, plan, names, by_name, frozenset(spec.variables), warnings)
    header = (f"# Exported by cicd-mcp from pipeline {spec.name!r}.\n"
              + "".join(f"# warning: {w}\n" for w in warnings))
    return dump_yaml(doc, header), warnings


def _export_job(job: BaseJob, plan: PipelinePlan, names: Mapping[str, str], by_name: Mapping[str, BaseJob],
                variables: frozenset[str], warnings: list[str]) -> dict[str, Any]:
    jp = job.plan
    out: dict[str, Any] = {"stage": job.stage.name}
    needs: list[Any] = [names[n] for n in job.needs]
    needs.extend({"job": names[a], "artifacts": True} for a in job.ancestors
                 if a not in job.needs and by_name[a].plan.artifacts)
    out["needs"] = needs
    if len(needs) > 50:
        warnings.append(f"job {job.name}: {len(needs)} needs; GitLab allows 50 by default")
    if jp.condition is not None:
        try:
            if_text, when = condition_to_gitlab(jp.condition.tree, variables | frozenset(jp.variables))
        except Unsupported as exc:
            warnings.append(f"job {job.name}: if: {jp.condition.text!r} was not exported: {exc}")
        else:
            rule: dict[str, Any] = {"if": if_text} if if_text else {}
            rule["when"] = when
            out["rules"] = [rule] if if_text is None else [rule, {"when": "never"}]
    if job.matrix:
        out["parallel"] = {"matrix": [{k: [_plain(v) for v in vs] for k, vs in job.matrix.items()}]}
        if job.plan.fail_fast or job.plan.max_parallel:
            warnings.append(f"job {job.name}: GitLab CI's parallel:matrix has no fail_fast or max_parallel; "
                            "every combination runs, all at once")
    if jp.variables:
        out["variables"] = {k: _plain(v) for k, v in jp.variables.items()}
    commands = job_commands(job, plan, warnings)
    if commands is None:
        commands = [f"echo 'job {job.name}: its standard build could not be exported' >&2", "exit 1"]
    # Matrix values are plain variables in GitLab.
    commands = [re.sub(r"\$\{matrix\.([A-Za-z_][A-Za-z0-9_]*)\}", r"${\1}", c) for c in commands]
    if jp.working_directory:
        commands = [f'mkdir -p "$CI_PROJECT_DIR/{jp.working_directory}"',
                    f'cd "$CI_PROJECT_DIR/{jp.working_directory}"', *commands]
    out["script"] = commands
    if jp.timeout:
        minutes = math.ceil(jp.timeout / 60)
        if minutes * 60 != jp.timeout:
            warnings.append(f"job {job.name}: timeout {jp.timeout:g}s rounded up to {minutes} minutes")
        out["timeout"] = f"{minutes}m"
    if jp.allow_failure:
        out["allow_failure"] = True
    if jp.retry.max:
        retries = min(jp.retry.max, _GITLAB_MAX_RETRY)
        if retries < jp.retry.max:
            warnings.append(f"job {job.name}: retry max {jp.retry.max} lowered to {retries} (GitLab's limit)")
        if jp.retry.backoff:
            warnings.append(f"job {job.name}: retry backoff ({jp.retry.backoff:g}s) is not supported by "
                            "GitLab")
        out["retry"] = {"max": retries, "when": [_WHEN[w] for w in jp.retry.when]}
    if jp.artifacts:
        wd = jp.working_directory
        paths = [f"{wd.rstrip('/')}/{p}" if wd else p for p in jp.artifacts]
        out["artifacts"] = {"paths": paths}
    if job.stage.environment:
        out["environment"] = {"name": job.stage.environment}
        if job.stage.strategy:
            warnings.append(f"job {job.name}: deploy strategy {job.stage.strategy!r} is not expressible; the "
                            f"job only declares environment {job.stage.environment!r}")
    return out
