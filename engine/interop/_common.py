"""What the exporters share: the pipeline as base jobs with a base-level graph, YAML output."""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from engine.errors import CicdError
from engine.spec.model import JobPlan, PipelinePlan, PipelineSpec, StageSpec, expand, load_pipeline

__all__ = ["BaseJob", "base_jobs", "dump_yaml", "glob_root", "job_commands", "to_plan"]


def to_plan(source: PipelineSpec | PipelinePlan | str | os.PathLike[str] | Mapping[str, Any]) -> PipelinePlan:
    """Accept a spec, an expanded plan, a pipeline file path, YAML text or a mapping.

    Raises:
        SpecError: the pipeline is invalid.
        NotFoundError: the file does not exist.
    """
    if isinstance(source, PipelinePlan):
        return source
    if isinstance(source, PipelineSpec):
        return expand(source)
    if isinstance(source, Mapping):
        return load_pipeline(source)
    return load_pipeline(Path(source) if "\n" not in os.fspath(source) else os.fspath(source))


@dataclass(frozen=True)
class BaseJob:
    """A job as written (before matrix expansion), with its dependencies as base names."""

    name: str
    stage: StageSpec
    plan: JobPlan                       # the first expansion: every expansion shares all but the matrix
    needs: list[str]
    ancestors: list[str]                # every job it depends on, directly or not
    matrix: dict[str, list[Any]] | None


def base_jobs(plan: PipelinePlan) -> list[BaseJob]:
    """The plan's jobs before matrix expansion, in the spec's order."""
    first: dict[str, JobPlan] = {}
    for job in plan.jobs.values():
        first.setdefault(job.base_name, job)
    base_of = {name: job.base_name for name, job in plan.jobs.items()}
    needs = {base: list(dict.fromkeys(base_of[n] for n in job.needs)) for base, job in first.items()}

    def ancestors(base: str) -> list[str]:
        seen: dict[str, None] = {}
        todo = list(needs[base])
        while todo:
            n = todo.pop()
            if n not in seen:
                seen[n] = None
                todo.extend(needs[n])
        return [b for b in first if b in seen]

    out: list[BaseJob] = []
    for stage in plan.spec.stages:
        for spec_job in stage.jobs:
            job = first[spec_job.name]
            matrix = {k: list(v) for k, v in spec_job.matrix.items()} if spec_job.matrix else None
            out.append(BaseJob(name=spec_job.name, stage=stage, plan=job, needs=needs[spec_job.name],
                               ancestors=ancestors(spec_job.name), matrix=matrix))
    return out


def job_commands(job: BaseJob, plan: PipelinePlan, warnings: list[str]) -> list[str] | None:
    """The job's shell commands; for a `language:` job, its standard build. None when unknown."""
    if job.plan.commands:
        return list(job.plan.commands)
    from engine.build import standard_build_commands

    if plan.source_dir is None:
        warnings.append(f"job {job.name}: language {job.plan.language!r} needs the project directory to plan "
                        "its standard build, and the pipeline has none (load it from its file)")
        return None
    try:
        argvs = standard_build_commands(str(job.plan.language), plan.source_dir, python=sys.executable)
    except CicdError as exc:
        warnings.append(f"job {job.name}: cannot plan the {job.plan.language} standard build: {exc}")
        return None
    # The interpreter path is this machine's; the CI machine has its own `python`.
    return [shlex.join(["python" if a == sys.executable else a for a in argv]) for argv in argvs]


_GLOB = re.compile(r"[*?\[]")


def glob_root(patterns: list[str]) -> str:
    """The deepest directory every pattern lies under (upload-artifact keeps paths relative to it)."""
    roots: list[tuple[str, ...]] = []
    for pattern in patterns:
        parts = PurePosixPath(pattern).parts
        static: list[str] = []
        for part in parts[:-1]:
            if _GLOB.search(part):
                break
            static.append(part)
        roots.append(tuple(static))
    common: list[str] = []
    for column in zip(*roots, strict=False):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    return "/".join(common) or "."


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any, header: str) -> str:
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000,
                     allow_unicode=True)
    return header + body
