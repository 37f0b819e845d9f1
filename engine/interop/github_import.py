"""GitHub Actions import: a workflow file as a pipeline the engine runs for real.

Theory. A workflow job becomes one engine job whose commands are a small POSIX
script: each `run:` step is a block that runs the step's own shell in a subshell (so its
`working-directory`, `env` and `shell` stay its own, as on GitHub) and records a failure
in ``__cicd_failed`` instead of stopping; a step's `if:` is compiled to a shell test over
that flag (``success()``, ``failure()``, ``always()``) and the run's context; the last
command exits with the flag. Job-level `needs`, `strategy.matrix`, `if:`, `env`,
`timeout-minutes` and `continue-on-error` map onto the engine's own fields. Anything
else that would change what the job does makes the job *unsupported*: it fails with a
message naming what (or is skipped, with ``skip_unsupported``). Things that only change
where or how fast it runs are kept as warnings.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import NotFoundError, SpecError, SpecIssue
from engine.interop._expr import (
    FAILED_VAR,
    GithubNames,
    Unsupported,
    github_to_engine,
    github_to_shell,
    parse_github,
    substitute_github,
)
from engine.spec import dag
from engine.spec.model import NAME_RE, VAR_RE, PipelineSpec, expand, parse_pipeline
from engine.spec.yamlpos import Positions, load_yaml

__all__ = [
    "WorkflowImport",
    "import_github_workflow",
    "is_github_workflow",
    "load_github_workflow",
    "pipeline_data",
]

_NAME = re.compile(NAME_RE)
_VAR = re.compile(VAR_RE)
_JOB_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_CHECKOUT = re.compile(r"^actions/checkout@[\w.\-/]+$")
_UPLOAD = re.compile(r"^actions/upload-artifact@[\w.\-/]+$")
_DOWNLOAD = re.compile(r"^actions/download-artifact@[\w.\-/]+$")
_SHELLS = {
    # As GitHub runs them: an unnamed shell is `bash -e`, a named bash adds pipefail.
    None: ("bash", "--noprofile", "--norc", "-e", "-c"),
    "bash": ("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"),
    "sh": ("sh", "-e", "-c"),
    "python": ("python3", "-c"),
}
# Job keys that only change where or how it runs, or metadata: kept as warnings.
_HARMLESS_JOB_KEYS = {"name", "permissions", "concurrency", "outputs", "defaults", "environment"}


@dataclass
class WorkflowImport:
    """A workflow as a pipeline, with what did not carry over."""

    spec: PipelineSpec
    warnings: list[str] = field(default_factory=list)
    unsupported: dict[str, list[str]] = field(default_factory=dict)   # job -> reasons


def pipeline_data(spec: PipelineSpec) -> dict[str, Any]:
    """The spec as the plain mapping `PipelineManager.run_pipeline` and `load_pipeline` take."""
    data: dict[str, Any] = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def is_github_workflow(source: str | os.PathLike[str] | Mapping[str, Any]) -> bool:
    """True for a GitHub Actions workflow: a `.github/workflows/` file, or `on:` + `jobs:`, no `stages:`."""
    if isinstance(source, Mapping):
        return "jobs" in source and "stages" not in source and ("on" in source or "true" in source)
    path = Path(source)
    if ".github/workflows/" in path.resolve().as_posix() and path.suffix in (".yml", ".yaml"):
        return True
    try:
        data, _ = load_yaml(path.read_bytes(), str(path))
    except (OSError, SpecError):
        return False
    return isinstance(data, Mapping) and is_github_workflow(data)


def _workspace_root(path: Path) -> Path:
    parts = path.resolve().parts
    if len(parts) >= 3 and parts[-3:-1] == (".github", "workflows"):
        return Path(*parts[:-3])
    return path.resolve().parent


def _pipeline_name(data: Mapping[str, Any], path: Path) -> str:
    for candidate in (str(data.get("name") or ""), path.stem):
        cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "-", candidate).strip("-._")[:100]
        if cleaned and _NAME.match(cleaned):
            return cleaned
    return "workflow"


def _trigger(on: Any) -> dict[str, list[str]]:
    if isinstance(on, str):
        return {"events": [on], "branches": []}
    if isinstance(on, list):
        return {"events": [str(e) for e in on], "branches": []}
    events: list[str] = []
    branches: list[str] = []
    if isinstance(on, Mapping):
        for event, config in on.items():
            events.append(str(event))
            if isinstance(config, Mapping) and isinstance(config.get("branches"), list):
                branches.extend(str(b) for b in config["branches"])
    return {"events": events, "branches": list(dict.fromkeys(branches))}


def _scalar_env(raw: Any, where: tuple[str | int, ...], pos: Positions, issues: list[SpecIssue],
                names: GithubNames) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        issues.append(pos.issue(where, "env must be a mapping of NAME: value"))
        return {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not _VAR.match(str(key)):
            issues.append(pos.issue((*where, key), f"env name {key!r} must match {VAR_RE}", key=True))
            continue
        if isinstance(value, (Mapping, list)):
            issues.append(pos.issue((*where, key), "an env value must be a string, number or boolean"))
            continue
        text = "true" if value is True else "false" if value is False else "" if value is None else str(value)
        try:
            out[str(key)] = substitute_github(text, names, shell=False)
        except Unsupported as exc:
            issues.append(pos.issue((*where, key), str(exc)))
    return out


def _levels(graph: Mapping[str, list[str]]) -> dict[str, int]:
    level: dict[str, int] = {}

    def depth(node: str, trail: tuple[str, ...]) -> int:
        if node in level:
            return level[node]
        if node in trail:        # the engine reports the cycle, with its path, when it loads the spec
            return 0
        level[node] = 1 + max((depth(d, (*trail, node)) for d in graph[node]), default=-1)
        return level[node]

    for node in graph:
        depth(node, ())
    return level


class _JobImporter:
    """One workflow job -> one engine job dict (plus reasons it is unsupported, and warnings)."""

    def __init__(self, job_id: str, job: Mapping[str, Any], defaults: Mapping[str, Any], pos: Positions,
                 secrets: frozenset[str]) -> None:
        self.id = job_id
        self.job = job
        self.path: tuple[str | int, ...] = ("jobs", job_id)
        self.pos = pos
        self.reasons: list[str] = []
        self.artifacts: list[str] = []
        self.warnings: list[str] = []
        self.issues: list[SpecIssue] = []
        run_defaults = {**(defaults.get("run") or {}), **((job.get("defaults") or {}).get("run") or {})}
        self.default_shell = run_defaults.get("shell")
        self.default_wd = run_defaults.get("working-directory")
        self.matrix, renamed = self._matrix()
        self.names = GithubNames(matrix=renamed, secrets=secrets)

    def unsupported(self, where: tuple[str | int, ...], what: str) -> None:
        line, _ = self.pos.locate((*self.path, *where))
        self.reasons.append(f"{what} (line {line})" if line else what)

    def _matrix(self) -> tuple[dict[str, list[Any]] | None, dict[str, str]]:
        strategy = self.job.get("strategy")
        if strategy is None:
            return None, {}
        if not isinstance(strategy, Mapping):
            self.unsupported(("strategy",), "strategy must be a mapping")
            return None, {}
        matrix = strategy.get("matrix")
        for key in ("max-parallel",):
            if key in strategy:
                self.warnings.append(f"job {self.id}: strategy.{key} is not applied "
                                     "(PIPELINE_MAX_WORKERS is)")
        if not isinstance(matrix, Mapping):
            if matrix is not None:
                self.unsupported(("strategy", "matrix"),
                                 "a matrix computed by an expression is not supported")
            return None, {}
        out: dict[str, list[Any]] = {}
        renamed: dict[str, str] = {}
        for key, values in matrix.items():
            if key in ("include", "exclude"):
                self.unsupported(("strategy", "matrix", key), f"strategy.matrix.{key} is not supported")
                continue
            engine_key = re.sub(r"\W", "_", str(key))
            if not _VAR.match(engine_key):
                self.unsupported(("strategy", "matrix", key), f"matrix key {key!r} cannot be a variable name")
                continue
            plain = isinstance(values, list) and all(not isinstance(v, (Mapping, list)) for v in values)
            if not values or not plain:
                self.unsupported(("strategy", "matrix", key),
                                 f"matrix key {key!r} must list plain values (objects are not supported)")
                continue
            if engine_key != key:
                self.warnings.append(f"job {self.id}: matrix key {key!r} is {engine_key!r} in the engine "
                                     "(matrix keys are variable names)")
            renamed[str(key)] = engine_key
            out[engine_key] = [v if v is not None else "" for v in values]
        if out and strategy.get("fail-fast", True) and math.prod(len(v) for v in out.values()) > 1:
            self.warnings.append(f"job {self.id}: fail-fast is not applied: every matrix job runs to its end")
        return out or None, renamed

    def convert(self) -> dict[str, Any]:
        job = self.job
        out: dict[str, Any] = {"name": self.id}
        if "uses" in job:
            self.unsupported(("uses",), f"calls the reusable workflow {job['uses']!r}, which is not "
                                        "supported")
        for key in ("container", "services"):
            if key in job:
                self.unsupported((key,), f"`{key}:` is not supported (the job would not run in the same "
                                         "place)")
        self._runs_on()
        for key in _HARMLESS_JOB_KEYS & job.keys():
            if key == "environment":
                self.warnings.append(f"job {self.id}: environment {job[key]!r} is not applied locally "
                                     "(no protection rules or environment secrets)")
            elif key == "outputs":
                self.warnings.append(f"job {self.id}: outputs are not passed on; jobs reading them are "
                                     "reported unsupported")
        known = {"runs-on", "needs", "if", "env", "steps", "strategy", "timeout-minutes", "continue-on-error",
                 "uses", "with", "secrets", "container", "services", *_HARMLESS_JOB_KEYS}
        for key in job.keys() - known:
            self.unsupported((key,), f"job key `{key}:` is not supported")
        needs = job.get("needs", [])
        out["depends_on"] = [needs] if isinstance(needs, str) else list(needs or [])
        if self.matrix:
            out["matrix"] = self.matrix
        self._number("timeout-minutes", lambda v: out.__setitem__("timeout", float(v) * 60))
        cont = job.get("continue-on-error")
        if isinstance(cont, bool):
            out["allow_failure"] = cont
        elif cont is not None:
            self.unsupported(("continue-on-error",), f"continue-on-error: {cont!r} is not a plain boolean")
        if "if" in job:
            try:
                out["if"] = github_to_engine(parse_github(str(job["if"]), self.names))
            except Unsupported as exc:
                self.unsupported(("if",), f"if: {exc}")
        variables = _scalar_env(job.get("env"), (*self.path, "env"), self.pos, self.issues, self.names)
        # `K: ${{ matrix.K }}` says what the engine does anyway (matrix values are in the environment);
        # kept, it would shadow the matrix value with its own unexpanded text.
        out["variables"] = {k: v for k, v in variables.items() if v != "${matrix." + k + "}"}
        out["commands"] = self._steps()
        out["shell"] = "bash"
        if self.artifacts:
            out["artifacts"] = list(dict.fromkeys(self.artifacts))
        return out

    def _runs_on(self) -> None:
        labels = self.job.get("runs-on")
        values = labels if isinstance(labels, list) else [labels]
        for label in values:
            text = str(label)
            if "${{" in text and self.matrix:
                # The label comes from the matrix: every value it can take must be a Linux one.
                key = text.split("matrix.", 1)[-1].split("}", 1)[0].strip()
                engine_key = self.names.matrix.get(key, key)
                candidates = [str(v) for v in (self.matrix or {}).get(engine_key, [text])]
            else:
                candidates = [text]
            for candidate in candidates:
                if re.search(r"windows|macos", candidate, re.IGNORECASE):
                    self.unsupported(("runs-on",), f"runs-on {candidate!r}: only Linux jobs run locally")

    def _number(self, key: str, apply: Any, where: tuple[str | int, ...] = (), src: Any = None) -> None:
        src = self.job if src is None else src
        value = src.get(key)
        if value is None:
            return
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            apply(value)
        else:
            self.unsupported((*where, key), f"{key}: {value!r} is not a positive number")

    def _steps(self) -> list[str]:
        steps = self.job.get("steps")
        if "uses" in self.job:
            return []
        if not isinstance(steps, list) or not steps:
            self.unsupported(("steps",), "the job has no steps")
            return []
        commands = [f"{FAILED_VAR}=0"]
        for index, step in enumerate(steps):
            label = f"step {index + 1}"
            if not isinstance(step, Mapping):
                self.unsupported(("steps", index), f"{label} is not a mapping")
                continue
            if step.get("name"):
                label += f" ({step['name']})"
            if "uses" in step:
                uses = str(step["uses"])
                if _CHECKOUT.match(uses):
                    harmless = {"fetch-depth", "persist-credentials", "submodules", "lfs", "clean"}
                    extra = sorted(set((step.get("with") or {}).keys()) - harmless)
                    if extra:
                        self.unsupported(("steps", index, "with"),
                                         f"{label}: checkout with {', '.join(extra)} is not supported")
                    commands.append(f": {shlex.quote(label + ': ' + uses)}\n"
                                    "echo 'checkout: the local workspace is the checkout'")
                elif _UPLOAD.match(uses):
                    block = self._upload(index, label, step)
                    if block is not None:
                        commands.append(block)
                elif _DOWNLOAD.match(uses):
                    self.warnings.append(f"job {self.id}: {label}: the engine puts the artifacts of every "
                                         "job this one needs into the workspace, at the paths they were "
                                         "made at")
                    note = "download-artifact: artifacts of the needed jobs are in the workspace"
                    commands.append(f": {shlex.quote(label + ': ' + uses)}\necho {shlex.quote(note)}")
                else:
                    self.unsupported(("steps", index, "uses"),
                                     f"{label} uses {uses}, which is not supported locally (only run: "
                                     "steps, actions/checkout, actions/upload-artifact and "
                                     "actions/download-artifact)")
                continue
            if "run" not in step:
                self.unsupported(("steps", index), f"{label} has neither run: nor uses:")
                continue
            block = self._run_step(index, label, step)
            if block is not None:
                commands.append(block)
        commands.append(f'exit "${FAILED_VAR}"')
        return commands

    def _upload(self, index: int, label: str, step: Mapping[str, Any]) -> str | None:
        """upload-artifact becomes the job's artifact paths, collected when the job succeeds."""
        with_ = step.get("with") or {}
        raw = with_.get("path") if isinstance(with_, Mapping) else None
        if not isinstance(raw, str) or not raw.strip():
            self.unsupported(("steps", index, "with"), f"{label}: upload-artifact needs a `path:`")
            return None
        paths = [p.strip() for p in raw.splitlines() if p.strip()]
        for p in paths:
            if p.startswith(("/", "~", "!")) or ".." in Path(p).parts or "${{" in p:
                self.unsupported(("steps", index, "with", "path"),
                                 f"{label}: artifact path {p!r} must be a relative path or glob in the "
                                 "workspace")
                return None
        if "if" in step:
            self.warnings.append(f"job {self.id}: {label}: artifacts are collected when the job succeeds; "
                                 f"if: {step['if']!r} is not applied")
        self.artifacts.extend(paths)
        return f": {shlex.quote(label + ': ' + str(step['uses']))}\n" \
               f"echo {shlex.quote('upload-artifact: collected when the job succeeds: ' + ', '.join(paths))}"

    def _run_step(self, index: int, label: str, step: Mapping[str, Any]) -> str | None:
        where: tuple[str | int, ...] = ("steps", index)
        known = {"name", "id", "run", "if", "env", "shell", "working-directory", "continue-on-error",
                 "timeout-minutes"}
        for key in step.keys() - known:
            self.unsupported((*where, key), f"{label}: `{key}:` is not supported")
        shell = step.get("shell", self.default_shell)
        if shell not in _SHELLS:
            self.unsupported((*where, "shell"),
                             f"{label}: shell {shell!r} is not supported (bash, sh, python)")
            return None
        try:
            script = substitute_github(str(step["run"]), self.names, shell=True)
            env_words = []
            for key, value in (step.get("env") or {}).items():
                if not _VAR.match(str(key)):
                    raise Unsupported(f"env name {key!r} must match {VAR_RE}")
                text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
                env_words.append(f"{key}={_shell_value(substitute_github(text, self.names, shell=True))}")
            condition_text = step.get("if")
            node = parse_github(str(condition_text), self.names) if condition_text is not None else None
        except Unsupported as exc:
            self.unsupported(where, f"{label}: {exc}")
            return None
        test = f'[ "${FAILED_VAR}" = 0 ]'
        if node is not None:
            test = github_to_shell(node)
            if not _uses_status(node):
                test = f'{{ [ "${FAILED_VAR}" = 0 ] && {test}; }}'
        argv = list(_SHELLS[shell])
        timeout = step.get("timeout-minutes")
        if timeout is not None:
            if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
                self.unsupported((*where, "timeout-minutes"), f"{label}: timeout-minutes must be a number")
                return None
            argv = ["timeout", "-k", "5", f"{float(timeout) * 60:g}", *argv]
        wd = step.get("working-directory", self.default_wd)
        inner = " ".join(shlex.quote(a) for a in argv) + " " + shlex.quote(script)
        if env_words:
            inner = "env " + " ".join(env_words) + " " + inner
        if wd:
            inner = f"cd -- {shlex.quote(str(wd))} && {inner}"
        cont = step.get("continue-on-error", False)
        if not isinstance(cont, bool):
            self.unsupported((*where, "continue-on-error"), f"{label}: continue-on-error must be a boolean")
            return None
        quoted = shlex.quote(label)
        on_fail = (f"echo {quoted}' failed; continue-on-error'" if cont
                   else f"{{ {FAILED_VAR}=1; echo {quoted}' failed' >&2; }}")
        return (f": {quoted}\n"
                f"if {test}; then\n  ( {inner} ) || {on_fail}\n"
                f"else\n  echo {quoted}' skipped: its if: is false'\nfi")


def _uses_status(node: tuple[Any, ...]) -> bool:
    if node[0] == "call":
        return True
    return any(_uses_status(n) for n in node[1:] if isinstance(n, tuple))


def _shell_value(text: str) -> str:
    """A shell word: literal text quoted, ``${NAME}`` left to expand."""
    parts = re.split(r"(\$\{[A-Za-z_][A-Za-z0-9_.]*\})", text)
    return "".join(f'"{p}"' if p.startswith("${") else shlex.quote(p) if p else "" for p in parts) or "''"


def import_github_workflow(
    source: str | os.PathLike[str], *, skip_unsupported: bool = False,
    environ: Mapping[str, str] | None = None,
) -> WorkflowImport:
    """Read a GitHub Actions workflow file as a pipeline the engine runs.

    Jobs with something the engine cannot run locally (a `uses:` other than
    actions/checkout, `container:`, a Windows runner, ...) fail with a message naming it,
    or are skipped when `skip_unsupported` is set; `unsupported` lists them either way.
    A secret the workflow reads is declared (so it is masked) when it is set in `environ`
    (default: this process's environment); otherwise it expands to empty, as on GitHub.

    Raises:
        NotFoundError: the file does not exist.
        SpecError: the file is not a valid workflow (file:line:col, field).
    """
    path = Path(source)
    if not path.is_file():
        raise NotFoundError(f"workflow file {str(path)!r} does not exist")
    data, pos = load_yaml(path.read_bytes(), str(path))
    environ = os.environ if environ is None else environ
    if not isinstance(data, Mapping):
        raise SpecError([pos.issue((), "a workflow is a mapping with `on:` and `jobs:`")])
    jobs = data.get("jobs")
    if not isinstance(jobs, Mapping) or not jobs:
        raise SpecError([pos.issue(("jobs",), "a workflow needs a `jobs:` mapping with at least one job")])
    issues: list[SpecIssue] = []
    warnings: list[str] = []
    secrets = frozenset(re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", path.read_text(errors="replace")))
    declared = frozenset(s for s in secrets if environ.get(s) and s != "GITHUB_TOKEN")
    warnings.extend(f"secret {name} is not set in the environment: it expands to an empty string"
                    for name in sorted(secrets - declared))
    variables = _scalar_env(data.get("env"), ("env",), pos, issues, GithubNames(secrets=declared))
    defaults = data.get("defaults") or {}
    known = {"name", "on", "true", "jobs", "env", "defaults", "permissions", "concurrency", "run-name"}
    issues.extend(pos.issue((key,), f"workflow key `{key}:` is not supported", key=True)
                  for key in data.keys() - known)

    converted: dict[str, dict[str, Any]] = {}
    unsupported: dict[str, list[str]] = {}
    for job_id, job in jobs.items():
        job_id = str(job_id)
        if not _JOB_ID.match(job_id) or not _NAME.match(job_id):
            issues.append(pos.issue(("jobs", job_id), f"job id {job_id!r} must start with a letter or digit "
                                                      "and use only letters, digits, '-' and '_'", key=True))
            continue
        if not isinstance(job, Mapping):
            issues.append(pos.issue(("jobs", job_id), "a job is a mapping"))
            continue
        importer = _JobImporter(job_id, job, defaults, pos, declared)
        spec_job = importer.convert()
        issues.extend(importer.issues)
        warnings.extend(importer.warnings)
        for i, need in enumerate(spec_job["depends_on"]):
            if need not in jobs:
                where = ("jobs", job_id, "needs", i) if isinstance(job.get("needs"), list) else \
                    ("jobs", job_id, "needs")
                issues.append(pos.issue(where, f"needs {need!r}, which is not a job; jobs: "
                                               + ", ".join(map(str, jobs))))
        if importer.reasons:
            unsupported[job_id] = importer.reasons
            spec_job = _unsupported_job(spec_job, importer.reasons, skip_unsupported)
        converted[job_id] = spec_job
    if not issues:
        cycle = dag.find_cycle({j: list(s["depends_on"]) for j, s in converted.items()})
        if cycle:
            issues.append(pos.issue(("jobs", cycle[0], "needs"), "dependency cycle: " + " -> ".join(cycle)))
    if issues:
        raise SpecError(issues)

    levels = _levels({j: list(s["depends_on"]) for j, s in converted.items()})
    stage_prefix = "stage"
    while any(name.startswith(stage_prefix + "-") for name in converted):
        stage_prefix = "_" + stage_prefix
    stages: dict[int, list[dict[str, Any]]] = {}
    for job_id, spec_job in converted.items():
        stages.setdefault(levels[job_id], []).append(spec_job)
    root = _workspace_root(path)
    spec_data: dict[str, Any] = {
        "name": _pipeline_name(data, path),
        "description": f"GitHub Actions workflow {path.name}",
        "trigger": _trigger(data.get("on", data.get("true"))),
        "variables": variables,
        "secrets": sorted(declared),
        "stages": [{"name": f"{stage_prefix}-{level + 1}", "jobs": stages[level]}
                   for level in sorted(stages)],
        "source": str(root),
    }
    spec = parse_pipeline(spec_data, Positions(str(path)))
    expand(spec, Positions(str(path)))   # the engine's own graph and condition checks, before anything runs
    return WorkflowImport(spec=spec, warnings=warnings, unsupported=unsupported)


def _unsupported_job(spec_job: dict[str, Any], reasons: list[str], skip: bool) -> dict[str, Any]:
    what = "; ".join(reasons)
    out = {k: v for k, v in spec_job.items() if k in ("name", "depends_on", "matrix")}
    if skip:
        # A condition that is false and says why: the run shows the job skipped with this text.
        note = f"not supported locally (skipped with --skip-unsupported): {what}"
        out["if"] = "'" + note.replace("\\", "\\\\").replace("'", "\\'") + "' == 'run'"
        out["commands"] = ["true"]
    else:
        message = f"cicd-mcp: job {spec_job['name']} cannot run locally: {what}. " \
                  "Run with --skip-unsupported to skip it instead."
        out["commands"] = [f"echo {shlex.quote(message)} >&2\nexit 3"]
    return out


def load_github_workflow(source: str | os.PathLike[str], *, skip_unsupported: bool = False) -> PipelineSpec:
    """`import_github_workflow(...).spec`.

    Raises:
        NotFoundError: the file does not exist.
        SpecError: the file is not a valid workflow.
    """
    return import_github_workflow(source, skip_unsupported=skip_unsupported).spec


