"""GitHub Actions export: a pipeline as a workflow file; what cannot be expressed is a warning."""

from __future__ import annotations

import math
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
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


# What the engine's runner puts in a job's environment, as GitHub expressions.
_CONTEXT = {"CICD_BRANCH": "${{ github.ref_name }}", "CICD_EVENT": "${{ github.event_name }}",
            "CICD_RUN_ID": "${{ github.run_id }}", "CICD_PIPELINE": "${{ github.workflow }}",
            "CICD_WORKSPACE": "${{ github.workspace }}"}
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def _env_value(value: str, values: Mapping[str, str], job: str, warnings: list[str]) -> str:
    """A job variable as GitHub writes it: the runner interpolates `${NAME}` in variables before the
    job starts; GitHub does not, so each reference becomes its value or expression now."""
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("matrix."):
            return "${{ " + name + " }}"
        if name in values:
            return _REF.sub(one, values[name])
        if name in _CONTEXT:
            return _CONTEXT[name]
        warnings.append(f"job {job}: ${{{name}}} in a variable is not expanded by GitHub Actions")
        return m.group(0)

    return _REF.sub(one, value)


def _project_dir(plan: PipelinePlan) -> str | None:
    """The pipeline's `source:` directory relative to the repository the workflow will live in
    (the git work tree holding it, else the pipeline file's directory); None when it is the root."""
    if plan.source_dir is None:
        return None
    root: Path | None = None
    try:
        out = subprocess.run(["git", "-C", str(plan.source_dir), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=10, check=False)
        if out.returncode == 0 and out.stdout.strip():
            root = Path(out.stdout.strip()).resolve()
    except (OSError, subprocess.TimeoutExpired):
        root = None
    if root is None and plan.spec_path:
        root = Path(plan.spec_path).resolve().parent
    if root is None or not plan.source_dir.resolve().is_relative_to(root):
        return None
    rel = plan.source_dir.resolve().relative_to(root).as_posix()
    return None if rel in ("", ".") else rel


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
    project = _project_dir(plan)
    out_jobs: dict[str, Any] = {}
    for job in jobs:
        out_jobs[ids[job.name]] = _export_job(job, plan, ids, by_name, variable_names, warnings, project)
    workflow["jobs"] = out_jobs
    header = (f"# Exported by cicd-mcp from pipeline {spec.name!r}.\n"
              + "".join(f"# warning: {w}\n" for w in warnings))
    return dump_yaml(workflow, header), warnings


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _export_job(job: BaseJob, plan: PipelinePlan, ids: Mapping[str, str], by_name: Mapping[str, BaseJob],
                variable_names: frozenset[str], warnings: list[str], project: str | None) -> dict[str, Any]:
    jp = job.plan
    out: dict[str, Any] = {"name": job.name, "runs-on": "ubuntu-latest"}
    if job.needs:
        out["needs"] = [ids[n] for n in job.needs]
    values = {**{k: str(_plain(v)) for k, v in plan.spec.variables.items()}, **jp.variables}
    step_if: str | None = None
    if jp.condition is not None:
        names = variable_names | frozenset(jp.variables)
        try:
            if _reads_matrix(jp.condition.tree):
                # GitHub decides a job's if: before the matrix exists: every step carries it instead.
                step_if = condition_to_github(jp.condition.tree, lambda n: github_name(n, names))
                warnings.append(f"job {job.name}: if: {jp.condition.text!r} reads the matrix, which a GitHub job's "
                                "if: cannot: it is on each step (the job runs and its steps are skipped)")
            else:
                # A job's if: sees no `env`: the pipeline's variables are constants, written as such.
                out["if"] = condition_to_github(jp.condition.tree, lambda n: _job_if_name(n, names, values))
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
        out["strategy"] = {"fail-fast": job.plan.fail_fast, "matrix": matrix}
        if job.plan.max_parallel:
            out["strategy"]["max-parallel"] = job.plan.max_parallel
    env: dict[str, Any] = {k: _env_value(str(_plain(v)), values, job.name, warnings)
                           for k, v in jp.variables.items()}
    for key in job.matrix or {}:
        env.setdefault(key, "${{ matrix." + key + " }}")
    for secret in plan.spec.secrets:
        env[secret] = "${{ secrets." + secret + " }}"
    commands = job_commands(job, plan, warnings)
    script = "\n".join(commands) if commands is not None else \
        f"echo 'job {job.name}: its standard build could not be exported' >&2\nexit 1"
    context = {**_CONTEXT, "CICD_JOB": job.name, "CICD_STAGE": job.stage.name}
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
            # The engine puts an artifact at its path relative to the job's working directory, from
            # the root of the workspace (the project directory): so does this download.
            with_["path"] = _in_wd([glob_root(source.plan.artifacts)], project)[0]
            step["with"] = with_
            steps.append(step)
    run_step: dict[str, Any] = {"name": "run", "shell": jp.shell, "run": _matrix_refs(script)}
    wd = _join(project, jp.working_directory)
    if wd:
        run_step["working-directory"] = wd
    steps.append(run_step)
    if jp.artifacts:
        steps.append({
            "name": "upload artifacts", "uses": "actions/upload-artifact@v4",
            "with": {
                "name": ids[job.name] + ("-${{ strategy.job-index }}" if job.matrix else ""),
                "path": "\n".join(_in_wd(jp.artifacts, wd)),
                "if-no-files-found": "warn",
            },
        })
    if step_if is not None:
        for step in steps:
            step["if"] = step_if
    out["steps"] = steps
    return out


def _join(*parts: str | None) -> str | None:
    kept = [p.strip("/") for p in parts if p and p.strip("/") not in ("", ".")]
    return "/".join(kept) or None


def _reads_matrix(node: tuple[Any, ...]) -> bool:
    if node[0] == "name":
        return str(node[1]).startswith("matrix.")
    return any(_reads_matrix(n) for n in node[1:] if isinstance(n, tuple))


def _job_if_name(name: str, variables: frozenset[str], values: Mapping[str, str]) -> str:
    head, _, rest = name.partition(".")
    key = rest if head == "vars" else name
    if key in values and (head == "vars" or name in variables):
        return "'" + values[key].replace("'", "''") + "'"
    return github_name(name, variables)


def _in_wd(paths: list[str], wd: str | None) -> list[str]:
    return [f"{wd.rstrip('/')}/{p}" if wd else p for p in paths]
