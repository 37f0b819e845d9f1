"""Pipeline files: YAML -> checked models -> an expanded job graph.

`load_pipeline(path_or_dict)` refuses invalid input before anything runs, naming the
file, line, column and field path of every problem it finds: unknown fields, wrong
types, duplicate names, dependencies on nothing (with what exists), cycles (with the
cycle), bad `if:` expressions.

Semantics, as users know them from GitLab CI and GitHub Actions:
- The graph is at job level. A job's own `depends_on` (GitLab's `needs`) names jobs or
  stages and replaces the stage ordering for that job; otherwise it depends on every job
  of its stage's `depends_on` stages; a stage without `depends_on` follows the stage
  before it (GitLab's stage order), the first stage depends on nothing.
- `matrix` expands a job into one job per combination, named ``lint[py=3.11]``; a
  dependency on ``lint`` means all of them.
- Original spellings are accepted: `dependencies` for `depends_on`, `retry_count: N`
  for `retry: {max: N}`.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import ExpressionError, SpecError, SpecIssue
from engine.spec import dag
from engine.spec.expr import Condition, parse_condition
from engine.spec.yamlpos import Positions, load_yaml

__all__ = [
    "EXECUTOR_KINDS",
    "LANGUAGES",
    "ArtifactsSpec",
    "DefaultsSpec",
    "DeploySpec",
    "JobPlan",
    "JobSpec",
    "PipelinePlan",
    "PipelineSpec",
    "ResourcesSpec",
    "RetrySpec",
    "ServiceSpec",
    "StageSpec",
    "TriggerSpec",
    "deploy_environments",
    "expand",
    "load_pipeline",
    "parse_pipeline",
]

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
_NAME = re.compile(NAME_RE)
VAR_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
IMAGE_RE = r"^[a-z0-9][a-z0-9._/:@\-]{0,254}$"
MAX_MATRIX_JOBS = 256
MAX_JOBS = 5000
LANGUAGES = frozenset({"go", "javascript", "python", "rust"})
"""Languages whose standard build a `language:` job runs (engine.build has one builder for each)."""
EXECUTOR_KINDS = frozenset({"sandbox", "local", "docker", "ssh", "kubernetes"})
"""Executors a job may name in `runs_on:` (engine.pipeline.executors.EXECUTORS has one factory for each);
`ssh:<pool>` names a pool of the ssh executor."""
_POOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")
_QUANTITY_RE = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
FailureClass = Literal["failure", "timeout", "infrastructure"]
Scalar = str | int | float | bool


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class RetrySpec(_Model):
    max: int = Field(0, ge=0, le=10, description="Extra attempts after the first.")
    when: list[FailureClass] = Field(
        default_factory=lambda: list[FailureClass](["failure", "timeout", "infrastructure"]),
        description="Failure classes that are retried: failure (non-zero exit), timeout, infrastructure "
        "(the process could not be started or supervised).",
    )
    backoff: float = Field(1.0, ge=0, le=600, description="Seconds before the 1st retry; doubles after each.")

    @model_validator(mode="before")
    @classmethod
    def _int_shorthand(cls, value: Any) -> Any:
        return {"max": value} if isinstance(value, int) and not isinstance(value, bool) else value


class ArtifactsSpec(_Model):
    paths: list[str] = Field(default_factory=list, description="Globs relative to the job workspace.")

    @model_validator(mode="before")
    @classmethod
    def _list_shorthand(cls, value: Any) -> Any:
        return {"paths": value} if isinstance(value, list) else value

    @field_validator("paths")
    @classmethod
    def _relative(cls, paths: list[str]) -> list[str]:
        for p in paths:
            if p.startswith("/") or ".." in Path(p).parts:
                raise ValueError(f"artifact path {p!r} must stay inside the job workspace")
        return paths


class ResourcesSpec(_Model):
    """What a job asks of the machine that runs it (Kubernetes quantities: cpu "500m", memory "1Gi")."""

    cpu: str | None = Field(None, pattern=_QUANTITY_RE, description="CPU request and limit (e.g. 500m, 2).")
    memory: str | None = Field(None, pattern=_QUANTITY_RE, description="Memory request and limit (e.g. 512Mi).")


class TriggerSpec(_Model):
    branches: list[str] = Field(default_factory=list)
    events: list[str] = Field(default_factory=list)


class DefaultsSpec(_Model):
    timeout: float | None = Field(None, gt=0, le=7 * 24 * 3600, description="Job timeout in seconds.")
    retry: RetrySpec = Field(default_factory=RetrySpec)


class ServiceSpec(_Model):
    """A container started beside a job (GitLab's and GitHub's services), reachable by its alias."""

    image: str = Field(pattern=IMAGE_RE)
    alias: str | None = Field(None, pattern=NAME_RE, description="Host name; default: the image's last name part.")

    @model_validator(mode="before")
    @classmethod
    def _str_shorthand(cls, value: Any) -> Any:
        return {"image": value} if isinstance(value, str) else value

    @property
    def host(self) -> str:
        return self.alias or self.image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


class JobSpec(_Model):
    name: str = Field(pattern=NAME_RE)
    commands: list[str] = Field(default_factory=list, max_length=1000)
    language: str | None = None
    depends_on: list[str] | None = Field(None, validation_alias=AliasChoices("depends_on", "dependencies"))
    retry: RetrySpec | None = None
    retry_count: int | None = Field(None, ge=0, le=10, exclude=True)
    timeout: float | None = Field(None, gt=0, le=7 * 24 * 3600, description="Seconds.")
    allow_failure: bool = False
    if_: str | None = Field(None, alias="if")
    matrix: dict[str, list[Scalar]] | None = None
    variables: dict[str, str | int | float | bool] = Field(
        default_factory=dict, validation_alias=AliasChoices("variables", "env")
    )
    artifacts: ArtifactsSpec | None = None
    working_directory: str | None = None
    shell: Literal["bash", "sh"] | None = None
    runs_on: str | None = Field(None, description="Executor kind that runs the job; default: PIPELINE_EXECUTOR "
                                "(docker when the job names an image).")
    network: bool | None = Field(None, description="false: the job runs without network (sandbox, docker); "
                                 "default: the pipeline's.")
    image: str | None = Field(None, pattern=IMAGE_RE, description="Container image the job runs in (docker or "
                              "kubernetes executor); never pulled by the docker executor.")
    services: list[ServiceSpec] = Field(default_factory=list, max_length=20,
                                        description="Containers started beside the job, reachable by alias.")
    git: bool = Field(False, description="The job's workspace holds the source's .git (git describe, git log).")
    resources: ResourcesSpec | None = None
    fail_fast: bool = Field(False, description="When one of the job's matrix combinations fails, the others still "
                            "queued or running are cancelled (GitHub Actions' strategy.fail-fast).")
    max_parallel: int | None = Field(None, ge=1, le=1024, description="At most this many of the job's matrix "
                                     "combinations run at once (GitHub Actions' strategy.max-parallel).")
    matrix_group: str | None = Field(None, pattern=NAME_RE, description="Jobs naming the same group are one "
                                     "matrix for fail_fast and max_parallel (default: the job's own name); the "
                                     "GitHub Actions import sets it for jobs it expands one per combination.")

    @model_validator(mode="after")
    def _check(self) -> JobSpec:
        if self.image and self.runs_on not in (None, "docker", "kubernetes"):
            raise ValueError(f"image needs the docker or kubernetes executor, not runs_on: {self.runs_on}")
        if self.services and self.runs_on not in (None, "docker"):
            raise ValueError(f"services need the docker executor, not runs_on: {self.runs_on}")
        if self.retry is not None and self.retry_count is not None:
            raise ValueError("give either retry or retry_count, not both")
        if not self.commands and not self.language:
            raise ValueError("a job needs commands (or a language whose standard build it runs)")
        if not self.commands and self.language and self.language != "auto":
            # Checked here, not when the job starts: an unknown language must refuse the file before anything runs.
            if self.language not in LANGUAGES:
                raise ValueError(f"unknown build language {self.language!r}; known: "
                                 f"{', '.join(sorted(LANGUAGES))}, or auto")
        return self

    @field_validator("runs_on")
    @classmethod
    def _runs_on(cls, kind: str | None) -> str | None:
        base, colon, pool = (kind or "").partition(":")
        if kind is not None and colon and base == "ssh" and _POOL_RE.match(pool):
            return kind
        if kind is not None and kind not in EXECUTOR_KINDS:
            raise ValueError(f"unknown executor {kind!r} for runs_on; known: {', '.join(sorted(EXECUTOR_KINDS))}")
        return kind

    @field_validator("matrix")
    @classmethod
    def _matrix(cls, m: dict[str, list[Scalar]] | None) -> dict[str, list[Scalar]] | None:
        if m is None:
            return m
        for key, values in m.items():
            if not re.match(VAR_RE, key):
                raise ValueError(f"matrix key {key!r} must be a variable name")
            if not values:
                raise ValueError(f"matrix key {key!r} has no values")
        combos = 1
        for values in m.values():
            combos *= len(values)
        if combos > MAX_MATRIX_JOBS:
            raise ValueError(f"matrix expands to {combos} jobs; at most {MAX_MATRIX_JOBS}")
        return m

    @field_validator("working_directory")
    @classmethod
    def _wd(cls, wd: str | None) -> str | None:
        if wd is not None and (wd.startswith("/") or ".." in Path(wd).parts):
            raise ValueError("working_directory must be a relative path inside the job workspace")
        return wd

    @property
    def effective_retry(self) -> RetrySpec | None:
        if self.retry_count is not None:
            return RetrySpec(max=self.retry_count)
        return self.retry


class DeploySpec(_Model):
    """How a job of a deploy stage deploys, once its commands succeeded."""

    config: str | None = Field(None, description="Deployment config file (environments), relative to the pipeline "
                               "file; default: environments already registered in the workspace (a stage without "
                               "jobs first looks for deployment_config.yaml beside the pipeline, then at "
                               "PIPELINE_CONFIG_PATH).")
    service: str | None = Field(None, pattern=NAME_RE, description="Service name; default: the environment's.")
    version: str = Field("${CICD_RUN_ID}", description="Version to deploy; ${VAR} is interpolated.")
    artifact: str = Field(".", description="Directory or file in the job workspace that is deployed (artifacts of "
                          "the jobs it depends on are placed there).")
    rollback_on_failure: bool | None = Field(None, description="Put the previous version back when the deploy "
                                             "fails; default: the environment's, else ROLLBACK_AUTO_TRIGGER.")
    options: dict[str, Any] = Field(default_factory=dict, description="Strategy options (batch_size, steps, ...).")

    @field_validator("artifact")
    @classmethod
    def _inside(cls, artifact: str) -> str:
        if artifact.startswith("/") or ".." in Path(artifact).parts:
            raise ValueError("the artifact must be a path inside the job workspace")
        return artifact


class StageSpec(_Model):
    """A stage: jobs, optionally deploying to an `environment`.

    A stage with `environment:` and no `jobs` is a deploy stage: it deploys the artifacts of
    the stages it depends on (engine.pipeline._deploy_stage), as the original design wrote it.
    """

    name: str = Field(pattern=NAME_RE)
    depends_on: list[str] | None = Field(None, validation_alias=AliasChoices("depends_on", "dependencies"))
    jobs: list[JobSpec] = Field(default_factory=list, description="Required unless the stage has an environment.")
    environment: str | None = Field(None, pattern=NAME_RE,
                                    description="Each job of this stage deploys to this environment; without "
                                    "jobs, the stage deploys the artifacts of the stages it depends on.")
    strategy: str | None = Field(None, description="Deploy strategy: recreate, rolling, blue_green, canary.")
    rollback_on_failure: bool | None = Field(None, description="Put the previous version back when the deploy "
                                             "fails (default: deploy.rollback_on_failure, else the environment's, else "
                                             "ROLLBACK_AUTO_TRIGGER).")
    deploy: DeploySpec | None = None

    @model_validator(mode="after")
    def _deploy_needs_environment(self) -> StageSpec:
        if (self.deploy is not None or self.strategy is not None or self.rollback_on_failure is not None) \
                and self.environment is None:
            raise ValueError("deploy, strategy and rollback_on_failure need an environment")
        if not self.jobs and self.environment is None:
            raise ValueError("a stage needs `jobs` (or an `environment:` to deploy to, which makes it a "
                             "deploy stage)")
        return self

    @property
    def deploys_only(self) -> bool:
        """A deploy stage: an environment and no jobs."""
        return not self.jobs and self.environment is not None

    @property
    def deploy_spec(self) -> DeploySpec:
        spec = self.deploy or DeploySpec()
        if self.rollback_on_failure is not None:
            spec = spec.model_copy(update={"rollback_on_failure": self.rollback_on_failure})
        return spec


class PipelineSpec(_Model):
    name: str = Field(pattern=NAME_RE)
    description: str | None = None
    trigger: TriggerSpec = Field(default_factory=TriggerSpec)
    variables: dict[str, str | int | float | bool] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list)
    defaults: DefaultsSpec = Field(default_factory=DefaultsSpec)
    stages: list[StageSpec] = Field(min_length=1)
    fail_fast: bool = False
    timeout: float | None = Field(None, gt=0, le=7 * 24 * 3600, description="Whole-run timeout in seconds.")
    max_workers: int | None = Field(None, ge=1, le=1024)
    network: bool = Field(True, description="false: jobs run without network unless a job says otherwise.")
    source: str | None = Field(
        ".", description="Directory copied into each job's workspace, relative to the file; null for none."
    )

    @field_validator("variables")
    @classmethod
    def _var_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if not re.match(VAR_RE, key):
                raise ValueError(f"variable name {key!r} must match {VAR_RE}")
        return v

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, v: list[str]) -> list[str]:
        for key in v:
            if not re.match(VAR_RE, key):
                raise ValueError(f"secret name {key!r} must match {VAR_RE}")
        return v


# -- the expanded, executable graph -------------------------------------------------------------

@dataclass(frozen=True)
class JobPlan:
    name: str                       # expanded name
    base_name: str
    stage: str
    commands: list[str]
    language: str | None
    needs: list[str]                # expanded names
    retry: RetrySpec
    timeout: float | None
    allow_failure: bool
    condition: Condition | None
    matrix: dict[str, str]
    variables: dict[str, str]
    artifacts: list[str]
    working_directory: str | None
    shell: str
    environment: str | None = None
    strategy: str | None = None
    deploy: DeploySpec | None = None
    deploy_config: str | None = None     # absolute path of the deployment config, if any
    runs_on: str | None = None           # executor kind; None: the runner's default
    deploy_stage: bool = False           # a stage without jobs that deploys its dependencies' artifacts
    network: bool = True
    image: str | None = None
    services: tuple[tuple[str, str], ...] = ()   # (image, alias)
    git: bool = False
    resources: dict[str, str] = field(default_factory=dict)   # cpu, memory
    group: str = ""                      # its matrix group (fail_fast, max_parallel): its own name by default
    fail_fast: bool = False              # a failure cancels the group's other jobs
    max_parallel: int | None = None      # at most this many of the group's jobs at once


@dataclass(frozen=True)
class PipelinePlan:
    spec: PipelineSpec
    jobs: dict[str, JobPlan]        # in a topological order
    source_dir: Path | None
    spec_path: str | None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def graph(self) -> dict[str, list[str]]:
        return {n: list(j.needs) for n, j in self.jobs.items()}

    @property
    def environments(self) -> list[str]:
        """The environments a run deploys to (deploy stages, and jobs of stages with `environment:`), in
        order: what the trust gate must decide on before a run starts."""
        return list(dict.fromkeys(j.environment for j in self.jobs.values() if j.environment is not None))

    def spec_json(self) -> str:
        return json.dumps(self.spec.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=True)


_CONTEXT_NAMES = ("branch", "event", "pipeline", "provider", "ref", "run_id")


def _matrix_name(base: str, combo: Mapping[str, Scalar]) -> str:
    return f"{base}[" + ",".join(f"{k}={_scalar(v)}" for k, v in combo.items()) + "]"


def _scalar(v: Scalar) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def expand(spec: PipelineSpec, pos: Positions | None = None, *, spec_path: str | None = None) -> PipelinePlan:
    """Expand matrices, resolve dependencies, check the graph and the conditions.

    Raises:
        SpecError: duplicate names, unknown dependencies, cycles, bad expressions.
    """
    pos = pos or Positions(spec_path or "<pipeline>")
    issues: list[SpecIssue] = []
    stage_names: dict[str, int] = {}
    base_jobs: dict[str, list[str]] = {}          # base name -> expanded names
    stage_jobs: dict[str, list[str]] = {}
    where: dict[str, tuple[int, int]] = {}        # base name -> (stage index, job index)
    all_stage_names = {s.name for s in spec.stages}

    for si, stage in enumerate(spec.stages):
        if stage.name in stage_names:
            issues.append(pos.issue(("stages", si, "name"), f"duplicate stage name {stage.name!r}"))
        stage_names.setdefault(stage.name, si)
        stage_jobs.setdefault(stage.name, [])
        for ji, job in enumerate(stage.jobs):
            if job.name in base_jobs:
                issues.append(pos.issue(("stages", si, "jobs", ji, "name"), f"duplicate job name {job.name!r}"))
                continue
            if job.name in all_stage_names:
                issues.append(pos.issue(("stages", si, "jobs", ji, "name"),
                                        f"job name {job.name!r} is also a stage name; names must be unique"))
            names = [job.name]
            if job.matrix:
                keys = list(job.matrix)
                names = [_matrix_name(job.name, dict(zip(keys, combo, strict=True)))
                         for combo in itertools.product(*(job.matrix[k] for k in keys))]
            base_jobs[job.name] = names
            stage_jobs[stage.name].extend(names)
            where[job.name] = (si, ji)
        if stage.deploys_only:
            # Its one job is named after it (no job may be named as a stage, so it is unique).
            stage_jobs[stage.name].append(stage.name)
    total = sum(len(v) for v in base_jobs.values())
    if total > MAX_JOBS:
        issues.append(pos.issue(("stages",), f"the pipeline expands to {total} jobs; at most {MAX_JOBS}"))
    if issues:
        raise SpecError(issues)

    expanded_names = {n for names in base_jobs.values() for n in names}

    def resolve(refs: list[str], path: tuple[str | int, ...], self_name: str | None) -> list[str]:
        out: list[str] = []
        for i, ref in enumerate(refs):
            if ref == self_name:
                issues.append(pos.issue((*path, i), f"{ref!r} depends on itself"))
            elif ref in base_jobs:
                out.extend(base_jobs[ref])
            elif ref in expanded_names:
                out.append(ref)
            elif ref in stage_jobs:
                out.extend(stage_jobs[ref])
            else:
                known_jobs = ", ".join(sorted(base_jobs)) or "none"
                known_stages = ", ".join(s.name for s in spec.stages)
                issues.append(pos.issue((*path, i), f"{ref!r} names no job or stage; jobs: {known_jobs}; "
                                                    f"stages: {known_stages}"))
        return list(dict.fromkeys(out))

    stage_deps: dict[str, list[str]] = {}
    for si, stage in enumerate(spec.stages):
        if stage.depends_on is not None:
            deps: list[str] = []
            for i, ref in enumerate(stage.depends_on):
                if ref == stage.name:
                    issues.append(pos.issue(("stages", si, "depends_on", i), f"stage {ref!r} depends on itself"))
                elif ref in stage_jobs:
                    deps.extend(stage_jobs[ref])
                elif ref in base_jobs:
                    deps.extend(base_jobs[ref])
                else:
                    issues.append(pos.issue(("stages", si, "depends_on", i),
                                            f"{ref!r} names no stage; stages: "
                                            + ", ".join(s.name for s in spec.stages)))
            stage_deps[stage.name] = deps
        else:
            stage_deps[stage.name] = stage_jobs[spec.stages[si - 1].name] if si > 0 else []

    variables = {k: _scalar(v) for k, v in spec.variables.items()}
    jobs: dict[str, JobPlan] = {}
    default_retry = spec.defaults.retry
    for si, stage in enumerate(spec.stages):
        for ji, job in enumerate(stage.jobs):
            jpath: tuple[str | int, ...] = ("stages", si, "jobs", ji)
            if job.depends_on is not None:
                needs = resolve(job.depends_on, (*jpath, "depends_on"), job.name)
            else:
                needs = list(stage_deps[stage.name])
            job_vars = {k: _scalar(v) for k, v in job.variables.items()}
            issues.extend(pos.issue((*jpath, "variables", key), f"variable name {key!r} must match {VAR_RE}")
                          for key in job_vars if not re.match(VAR_RE, key))
            matrix_keys = list(job.matrix or {})
            condition = None
            if job.if_ is not None:
                known = {*_CONTEXT_NAMES, *variables, *job_vars, *spec.secrets}
                try:
                    condition = parse_condition(job.if_, known, prefixes=("env.", "vars.", "matrix.", "secrets."))
                except ExpressionError as exc:
                    issues.append(pos.issue((*jpath, "if"), str(exc)))
            combos: list[dict[str, Scalar]] = [{}]
            if job.matrix:
                combos = [dict(zip(matrix_keys, c, strict=True))
                          for c in itertools.product(*(job.matrix[k] for k in matrix_keys))]
            for combo in combos:
                name = _matrix_name(job.name, combo) if combo else job.name
                jobs[name] = JobPlan(
                    name=name, base_name=job.name, stage=stage.name, commands=list(job.commands),
                    language=job.language, needs=[n for n in needs if n != name],
                    retry=job.effective_retry or default_retry,
                    timeout=job.timeout if job.timeout is not None else spec.defaults.timeout,
                    allow_failure=job.allow_failure, condition=condition,
                    matrix={k: _scalar(v) for k, v in combo.items()}, variables=job_vars,
                    artifacts=list(job.artifacts.paths) if job.artifacts else [],
                    working_directory=job.working_directory, shell=job.shell or "bash",
                    environment=stage.environment, strategy=stage.strategy,
                    deploy=stage.deploy_spec if stage.environment else None,
                    deploy_config=_deploy_config(stage, spec_path),
                    runs_on=job.runs_on or ("docker" if job.image or job.services else None),
                    network=spec.network if job.network is None else job.network, image=job.image,
                    services=tuple((sv.image, sv.host) for sv in job.services), git=job.git,
                    resources=job.resources.model_dump(exclude_none=True) if job.resources else {},
                    group=job.matrix_group or job.name, fail_fast=job.fail_fast, max_parallel=job.max_parallel,
                )
        if stage.deploys_only:
            jobs[stage.name] = JobPlan(
                name=stage.name, base_name=stage.name, stage=stage.name, commands=[], language=None,
                needs=list(stage_deps[stage.name]), retry=RetrySpec(), timeout=spec.defaults.timeout,
                allow_failure=False, condition=None, matrix={}, variables={}, artifacts=[],
                working_directory=None, shell="bash", environment=stage.environment, strategy=stage.strategy,
                deploy=stage.deploy_spec, deploy_config=_deploy_config(stage, spec_path), deploy_stage=True,
                group=stage.name,
            )
    if issues:
        raise SpecError(issues)
    graph = {n: j.needs for n, j in jobs.items()}
    cycle = dag.find_cycle(graph)
    if cycle:
        first = next((jobs[n].base_name for n in cycle if jobs[n].base_name in where), None)
        if first is None:  # only deploy stages in the cycle: name the first one's depends_on
            si = next(i for i, s in enumerate(spec.stages) if s.name == cycle[0])
            raise SpecError([pos.issue(("stages", si, "depends_on"), "dependency cycle: " + " -> ".join(cycle))])
        si, ji = where[first]
        raise SpecError([pos.issue(("stages", si, "jobs", ji, "depends_on"),
                                   "dependency cycle: " + " -> ".join(cycle))])
    order = dag.topological_order(graph)
    source_dir: Path | None = None
    if spec.source is not None and spec_path is not None:
        source_dir = (Path(spec_path).parent / spec.source).resolve()
    elif spec.source is not None and spec.source != ".":
        source_dir = Path(spec.source).resolve()
    if source_dir is not None and not source_dir.is_dir():
        # Found now rather than when the first job's workspace is prepared: nothing may run.
        raise SpecError([pos.issue(("source",), f"source directory {str(source_dir)!r} does not exist or is "
                                               "not a directory (it is relative to the pipeline file; null for none)")])
    return PipelinePlan(spec=spec, jobs={n: jobs[n] for n in order}, source_dir=source_dir, spec_path=spec_path)


def _deploy_config(stage: StageSpec, spec_path: str | None) -> str | None:
    if stage.deploy is None or stage.deploy.config is None:
        return None
    path = Path(stage.deploy.config)
    if not path.is_absolute() and spec_path is not None:
        path = Path(spec_path).parent / path
    return str(path.resolve())


def parse_pipeline(data: Any, pos: Positions | None = None) -> PipelineSpec:
    """Validate plain data as a PipelineSpec, mapping pydantic's errors to file:line:col.

    Raises:
        SpecError: every problem found.
    """
    pos = pos or Positions("<pipeline>")
    if not isinstance(data, dict):
        raise SpecError([pos.issue((), f"a pipeline is a mapping with name and stages, not {type(data).__name__}")])
    if "stages" not in data:
        # Not a pipeline at all (a system file, say): refused without quoting a line of it, as the
        # unknown-field messages below would.
        raise SpecError([pos.issue((), "not a pipeline file: missing required field 'stages' (a pipeline is a "
                                       "mapping with name and stages); its content is not shown")])
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        issues = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message = f"unknown field {loc[-1]!r}" + _suggest(loc, data)
            elif err["type"] == "missing":
                message = f"missing required field {loc[-1]!r}"
            # Union types report one error per branch with the branch type in loc; keep the data path.
            loc = tuple(p for p in loc if isinstance(p, int) or not _is_type_tag(p))
            issues.append(pos.issue(loc, message, key=err["type"] == "extra_forbidden"))
        # One message per field path is enough.
        seen: set[str] = set()
        unique = [i for i in issues if not (str(i) in seen or seen.add(str(i)))]  # type: ignore[func-returns-value]
        raise SpecError(unique) from None


def _is_type_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in {"str", "int", "float", "bool", "list[...]", "dict[...]"}
                                      or part.startswith(("list[", "dict[", "function-")))


def _suggest(loc: tuple[Any, ...], data: Any) -> str:
    import difflib

    depth = len([p for p in loc if not isinstance(p, int)])
    model: type[BaseModel] = PipelineSpec
    if depth >= 2 and loc[0] == "stages":
        model = StageSpec
    if depth >= 3 and len(loc) > 2 and loc[2] == "jobs":
        model = JobSpec
    known = [f.alias or name for name, f in model.model_fields.items()]
    match = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return f"; did you mean {match[0]!r}?" if match else "; known fields: " + ", ".join(sorted(known))


def load_pipeline(source: str | Path | Mapping[str, Any], *, roots: Sequence[Path] | None = None) -> PipelinePlan:
    """Load, check and expand a pipeline from a file path, YAML text or a mapping. A file is opened
    once; with `roots`, the opened file must lie under one of them (engine/_confined.py).

    Raises:
        SpecError: anything wrong with it, with file:line:col and field path.
        NotFoundError: the file does not exist.
        InputError: the file lies outside `roots`.
    """
    from engine._confined import read_confined

    if isinstance(source, Mapping):
        pos = Positions("<pipeline>")
        spec = parse_pipeline(dict(source), pos)
        return expand(spec, pos)
    path = Path(source)
    if isinstance(source, str) and "\n" in source:
        data, pos = load_yaml(source, "<pipeline>")
        return expand(parse_pipeline(data, pos), pos)
    raw, real = read_confined(path, roots)
    data, pos = load_yaml(raw, str(path))
    if isinstance(data, dict) and "name" not in data and _NAME.match(path.stem):
        # As GitHub Actions names a workflow without `name:`: after its file.
        data = {"name": path.stem, **data}
    return expand(parse_pipeline(data, pos), pos, spec_path=str(real))


def deploy_environments(plan: PipelinePlan) -> frozenset[str]:
    """The environments a run of `plan` deploys to (deploy stages, and jobs of stages with
    `environment:`). Pure: what a run would change, for whoever decides before it starts (the
    server's trust gate)."""
    return frozenset(plan.environments)
