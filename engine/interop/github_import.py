"""GitHub Actions import: a workflow file as a pipeline the engine runs for real.

Theory. What GitHub decides before a job starts is decided here, at import, with the
expression language of `_ghexpr` over the static contexts (`github` from the local git
repository and the chosen event, `inputs` with their defaults, `matrix`): the matrix is
expanded as GitHub expands it (product, `exclude`, then `include`), each combination's
`runs-on` (a non-Linux runner skips that combination, with the reason), `if:`,
`timeout-minutes` and `continue-on-error`. What GitHub decides while a job runs is decided
by the job runtime (`_gha_runtime`), which runs inside the engine job: step `if:`, `env:`,
`steps.*`, `needs.*`, `hashFiles()`, the runner files and the native actions.

A matrix that is a plain product becomes one engine job with the engine's own matrix (its
jobs are named ``test[python=3.12,os=ubuntu]``); any other expansion becomes one engine job
per combination, named after its values. A job's `if:` that the engine can evaluate itself
(the event and ref of the run) stays an engine condition, so the run's `--event`/`--branch`
decide it; other static conditions are evaluated here. A job skipped here is skipped with
its reason and the jobs that need it are skipped too, as on GitHub, without failing the run.

What cannot run locally (an action with no native version, `services:`, a reusable
workflow, a matrix computed from another job's outputs) makes that job fail with the
reason and the line (or be skipped, with `skip_unsupported`); never the whole file.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import NotFoundError, SpecError, SpecIssue
from engine.interop import _gha_runtime
from engine.interop._expr import GithubNames, Unsupported, github_to_engine, parse_github
from engine.interop._ghexpr import ExpressionError, contexts_used, evaluate, to_string, truthy, value_of
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
_NON_LINUX = re.compile(r"windows|macos|mac-|osx", re.IGNORECASE)
_RUNTIME = Path(_gha_runtime.__file__).resolve()
_STATIC_CONTEXTS = {"github", "inputs", "vars", "matrix", "runner", "strategy", "secrets", "env"}
# Job keys that only change where or how it runs, or metadata.
_HARMLESS_JOB_KEYS = {"name", "permissions", "concurrency", "outputs", "defaults", "environment"}
_STEP_KEYS = {"name", "id", "run", "uses", "with", "if", "env", "shell", "working-directory", "continue-on-error",
              "timeout-minutes"}


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
        keys: set[Any] = set(source)
        return "jobs" in keys and "stages" not in keys and ("on" in keys or True in keys)
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


def _on(data: Mapping[Any, Any]) -> Any:
    return data.get("on", data.get(True, data.get("true")))


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


def _git(root: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _github_context(root: Path, data: Mapping[str, Any], event: str, branch: str | None,
                    inputs: Mapping[str, Any]) -> dict[str, Any]:
    """`github.*` as GitHub would set it for `event` on the local repository's current commit."""
    sha = _git(root, "rev-parse", "HEAD") if (root / ".git").exists() else ""
    if branch is None:
        branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD") if sha else ""
        branch = "" if branch == "HEAD" else branch
    remote = _git(root, "remote", "get-url", "origin") if sha else ""
    m = re.search(r"[:/]([^/:]+)/([^/]+?)(?:\.git)?$", remote)
    owner, name = (m.group(1), m.group(2)) if m else ("local", root.name)
    ref = f"refs/heads/{branch}" if branch else ""
    github: dict[str, Any] = {
        "event_name": event, "ref": ref, "ref_name": branch, "ref_type": "branch", "sha": sha,
        "repository": f"{owner}/{name}", "repository_owner": owner, "actor": os.environ.get("USER", "local"),
        "workflow": str(data.get("name") or ""), "head_ref": "", "base_ref": "", "server_url": "https://github.com",
        "event": {"inputs": dict(inputs)} if event == "workflow_dispatch" else {},
        "repositoryUrl": remote, "triggering_actor": os.environ.get("USER", "local"),
    }
    if event == "pull_request":
        github.update({"head_ref": branch, "base_ref": "main", "ref": "refs/pull/1/merge"})
        github["event"] = {"action": "synchronize", "pull_request": {"head": {"ref": branch}, "base": {"ref": "main"}}}
    return github


def _dispatch_inputs(on: Any, given: Mapping[str, str]) -> dict[str, Any]:
    declared: dict[str, Any] = {}
    if isinstance(on, Mapping):
        for event in ("workflow_dispatch", "workflow_call"):
            config = on.get(event)
            if isinstance(config, Mapping) and isinstance(config.get("inputs"), Mapping):
                for key, spec in config["inputs"].items():
                    default = spec.get("default") if isinstance(spec, Mapping) else None
                    kind = spec.get("type") if isinstance(spec, Mapping) else None
                    declared[str(key)] = default if default is not None else (False if kind == "boolean" else "")
    for key, value in given.items():
        if key in declared:
            declared[key] = value
    return declared


def _triggered(on: Any, event: str, branch: str) -> str | None:
    """Why the workflow would not run for `event` on `branch` (None: it would)."""
    events = _trigger(on)["events"]
    if event not in events:
        return (f"the workflow does not run on {event} (on: {', '.join(events)}); "
                f"--event {events[0] if events else 'EVENT'} runs it as that event")
    config = on.get(event) if isinstance(on, Mapping) else None
    if not branch or not isinstance(config, Mapping) or event not in ("push", "pull_request"):
        return None
    target = "main" if event == "pull_request" else branch
    include = config.get("branches")
    exclude = config.get("branches-ignore")
    if isinstance(include, list) and not any(_branch_match(str(p), target) for p in include):
        return f"the workflow runs on {event} to branches {include} only (this is {target}); --branch changes it"
    if isinstance(exclude, list) and any(_branch_match(str(p), target) for p in exclude):
        return f"the workflow ignores {event} to {target} (branches-ignore); --branch changes it"
    return None


def _branch_match(pattern: str, branch: str) -> bool:
    if pattern.startswith("!"):
        return False
    return fnmatch.fnmatchcase(branch, pattern.replace("**", "*"))


_YAML11_BOOLS = re.compile(r"(?i)(y|n|yes|no|on|off)")


def _yaml12(value: Any, path: tuple[str | int, ...], pos: Positions, lines: list[str]) -> Any:
    """A boolean as GitHub reads it: its YAML is 1.2, where `on`, `yes`, `off` are strings."""
    if not isinstance(value, bool):
        return value
    line, col = pos.locate(path)
    if line is None or col is None or path not in pos.values or line > len(lines):
        return value
    word = re.match(r"[A-Za-z]+", lines[line - 1][col - 1:])
    return word.group(0) if word and _YAML11_BOOLS.fullmatch(word.group(0)) else value


def _check_env(raw: Any, where: tuple[str | int, ...], pos: Positions, issues: list[SpecIssue],
               lines: list[str]) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, str) and "${{" in raw:
        return {"__expr__": raw}
    if not isinstance(raw, Mapping):
        issues.append(pos.issue(where, "env must be a mapping of NAME: value"))
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_.\-]*$", str(key)) or not _VAR.match(str(key).replace("-", "_")
                                                                                    .replace(".", "_")):
            issues.append(pos.issue((*where, key), f"env name {key!r} must match {VAR_RE}", key=True))
            continue
        if "-" in str(key):
            issues.append(pos.issue((*where, key), f"env name {key!r} must match {VAR_RE}", key=True))
            continue
        if isinstance(value, (Mapping, list)):
            issues.append(pos.issue((*where, key), "an env value must be a string, number or boolean"))
            continue
        out[str(key)] = _yaml12(value, (*where, key), pos, lines)
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


def expand_matrix(matrix: Mapping[str, Any]) -> list[dict[str, Any]]:
    """GitHub's expansion: the product of the axes, minus `exclude`, then `include` (added to
    every combination it does not contradict on an original key, else a combination of its own)."""
    axes = {str(k): v for k, v in matrix.items() if k not in ("include", "exclude")}
    for key, values in axes.items():
        if not isinstance(values, list):
            raise ExpressionError(f"matrix axis {key!r} must be a list")
    combos: list[dict[str, Any]] = [dict(zip(axes, c, strict=True)) for c in itertools.product(*axes.values())] \
        if axes else []
    for rule in matrix.get("exclude") or []:
        if isinstance(rule, Mapping):
            combos = [c for c in combos if not all(_same(c.get(str(k)), v) for k, v in rule.items())]
    originals = [dict(c) for c in combos]
    extra: list[dict[str, Any]] = []
    for entry in matrix.get("include") or []:
        if not isinstance(entry, Mapping):
            continue
        entry = {str(k): v for k, v in entry.items()}
        matched = False
        for combo, original in zip(combos, originals, strict=True):
            if all(_same(original[k], v) for k, v in entry.items() if k in original):
                combo.update(entry)
                matched = True
        if not matched:
            extra.append(entry)
    return combos + extra


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return all(_same(a.get(k), v) for k, v in b.items())
    return a == b or to_string(a) == to_string(b)


def _scalar(value: Any) -> Any:
    if isinstance(value, (Mapping, list)):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else value


class _Job:
    """One workflow job -> engine job dicts (one per combination, or one with the engine's matrix)."""

    def __init__(self, imp: _Importer, job_id: str, job: Mapping[str, Any]) -> None:
        self.imp = imp
        self.id = job_id
        self.job = job
        self.path: tuple[str | int, ...] = ("jobs", job_id)
        self.reasons: list[str] = []
        self.warnings: list[str] = []
        self.combos: list[dict[str, Any]] | None = None
        self.strategy: dict[str, Any] = {}   # fail_fast, max_parallel of its matrix

    def line(self, *where: str | int) -> int | None:
        line, _ = self.imp.pos.locate((*self.path, *where))
        return line

    def unsupported(self, where: tuple[str | int, ...], what: str) -> None:
        line = self.line(*where)
        self.reasons.append(f"{what} (line {line})" if line else what)

    def static(self, matrix: Mapping[str, Any] | None) -> dict[str, Any]:
        return {**self.imp.contexts, "matrix": dict(matrix or {}),
                "strategy": {"fail-fast": True, "job-index": 0, "job-total": 1, "max-parallel": 1}}

    def combinations(self) -> list[dict[str, Any]] | None:
        strategy = self.job.get("strategy")
        if strategy is None:
            return None
        if not isinstance(strategy, Mapping):
            self.unsupported(("strategy",), "strategy must be a mapping")
            return None
        raw = strategy.get("matrix")
        if raw is None:
            return None
        try:
            uses = contexts_used(raw if isinstance(raw, str) else _texts(raw))
            ctx = self.static(None)
            needs = self._static_needs()
            if uses - _STATIC_CONTEXTS - {"hashfiles()"} - ({"needs"} if needs else set()):
                self.unsupported(("strategy", "matrix"), "a matrix computed from "
                                 + ", ".join(sorted(u + ".*" for u in uses - _STATIC_CONTEXTS))
                                 + " (another job's outputs) is not supported locally")
                return None
            if "needs" in uses:
                ctx["needs"] = needs
                self.warnings.append(f"job {self.id}: its matrix comes from the Python classifiers in "
                                     "pyproject.toml, as build-and-inspect-python-package computes them")
            matrix = value_of(raw, ctx)
            if not isinstance(matrix, Mapping):
                self.unsupported(("strategy", "matrix"), "the matrix is not a mapping")
                return None
            combos = expand_matrix(matrix)
        except ExpressionError as exc:
            self.unsupported(("strategy", "matrix"), f"matrix: {exc}")
            return None
        if not combos:
            self.unsupported(("strategy", "matrix"), "the matrix has no combination")
            return None
        self.strategy = self._strategy(strategy, len(combos))
        return combos

    def _strategy(self, strategy: Mapping[str, Any], combos: int) -> dict[str, Any]:
        """strategy.fail-fast (default true) and max-parallel, as the engine's job fields."""
        out: dict[str, Any] = {}
        ctx = self.static(None)
        for key, name in (("fail-fast", "fail_fast"), ("max-parallel", "max_parallel")):
            if key not in strategy:
                continue
            try:
                value = value_of(strategy[key], ctx)
            except ExpressionError as exc:
                self.unsupported(("strategy", key), f"{key}: {exc}")
                continue
            if name == "fail_fast":
                out[name] = value is not False and to_string(value) != "false"
            else:
                try:
                    number = int(to_string(value))
                except ValueError:
                    number = 0
                if number < 1:
                    self.unsupported(("strategy", key), f"max-parallel must be a positive number, not {value!r}")
                elif number < combos:
                    out[name] = number
        out.setdefault("fail_fast", True)
        if combos < 2 or not out["fail_fast"]:
            out.pop("fail_fast")   # nothing to cancel, or GitHub's default turned off
        return out

    def _static_needs(self) -> dict[str, Any]:
        """The outputs of needed jobs that are known before they run: build-and-inspect's Python
        versions come from the Trove classifiers in pyproject.toml."""
        needs = self.job.get("needs", [])
        out: dict[str, Any] = {}
        for need in [needs] if isinstance(needs, str) else needs or []:
            outputs = self.imp.static_outputs.get(str(need))
            if outputs:
                out[str(need)] = {"result": "success", "outputs": outputs}
        return out

    def convert(self) -> list[dict[str, Any]]:
        job = self.job
        if "uses" in job:
            self.unsupported(("uses",), f"calls the reusable workflow {job['uses']!r}, which is not supported "
                                        "locally")
        for key in ("container", "services"):
            if key in job:
                self.unsupported((key,), f"`{key}:` needs the docker executor, which imported workflows do not "
                                         "use yet")
        known = {"runs-on", "needs", "if", "env", "steps", "strategy", "timeout-minutes", "continue-on-error",
                 "uses", "with", "secrets", "container", "services", *_HARMLESS_JOB_KEYS}
        for key in sorted(job.keys() - known, key=str):
            self.warnings.append(f"job {self.id}: key `{key}:` (line {self.line(key)}) is not applied locally")
        if "environment" in job:
            self.warnings.append(f"job {self.id}: environment {job['environment']!r} is not applied locally "
                                 "(no protection rules or environment secrets)")
        env = _check_env(job.get("env"), (*self.path, "env"), self.imp.pos, self.imp.issues, self.imp.lines)
        combos = self.combos = self.combinations()
        steps = self._steps()
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else [str(n) for n in (needs or [])]
        base: dict[str, Any] = {"depends_on": needs}
        artifacts = self._artifacts(combos)
        plain = self._plain(combos)
        if plain is not None:
            keys, matrix = plain
            spec_job = self._spec_job(self.id, None, base, env, steps, artifacts, keys)
            spec_job["matrix"] = matrix
            spec_job.update(self.strategy)
            return [spec_job]
        if not combos:
            return [self._spec_job(self.id, None, base, env, steps, artifacts, None)]
        # One engine job per combination, `id.N` (a GitHub job id has no dot), whose one-value
        # engine matrix names it as the engine names matrix jobs: `tests.3[python=3.13,tox=py313]`.
        out = []
        for i, combo in enumerate(combos):
            spec_job = self._spec_job(f"{self.id}.{i + 1}", combo, base, env, steps, artifacts, None)
            spec_job["matrix"] = {re.sub(r"\W", "_", k): [_scalar(v)] for k, v in combo.items()
                                  if _VAR.match(re.sub(r"\W", "_", k))}
            if self.strategy:
                spec_job.update(self.strategy, matrix_group=self.id)
            out.append(spec_job)
        return out

    def _plain(self, combos: list[dict[str, Any]] | None) -> tuple[dict[str, str], dict[str, list[Any]]] | None:
        """The engine's own matrix, when the expansion is a plain product of scalar values and
        nothing decided per combination reads the matrix."""
        strategy = self.job.get("strategy") or {}
        raw = strategy.get("matrix") if isinstance(strategy, Mapping) else None
        if not combos or not isinstance(raw, Mapping) or {"include", "exclude"} & set(raw):
            return None
        for key in ("runs-on", "if", "timeout-minutes", "continue-on-error"):
            if "matrix" in _texts(self.job.get(key)):
                return None
        axes: dict[str, list[Any]] = {}
        keys: dict[str, str] = {}
        for key in raw:
            values = [c[str(key)] for c in combos]
            if any(isinstance(v, (Mapping, list)) for v in values):
                return None
            engine_key = re.sub(r"\W", "_", str(key))
            if not _VAR.match(engine_key):
                return None
            keys[str(key)] = engine_key
            axes[engine_key] = list(dict.fromkeys("" if v is None else v for v in values))
        if len(combos) != len(list(itertools.product(*axes.values()))):
            return None
        return keys, axes

    def _spec_job(self, name: str, combo: dict[str, Any] | None, base: Mapping[str, Any], env: Mapping[str, Any],
                  steps: list[dict[str, Any]], artifacts: list[str], engine_matrix: dict[str, str] | None,
                  ) -> dict[str, Any]:
        ctx = self.static(combo)
        out: dict[str, Any] = {"name": name, **base}
        reasons: list[str] = []
        skip: str | None = self.imp.not_triggered
        if skip is None:
            try:
                value = value_of(self.job.get("runs-on"), ctx)
                for label in value if isinstance(value, list) else [value]:
                    if _NON_LINUX.search(to_string(label)):
                        skip = f"runs-on {to_string(label)!r}: only Linux jobs run here"
            except ExpressionError as exc:
                reasons.append(f"runs-on: {exc} (line {self.line('runs-on')})")
        if skip is None and "if" in self.job:
            skip, condition = self._condition(ctx, combo is not None)
            if condition is not None:
                out["if"] = condition
        for key, target in (("timeout-minutes", "timeout"), ("continue-on-error", "allow_failure")):
            if key not in self.job:
                continue
            try:
                value = value_of(self.job[key], ctx)
            except ExpressionError as exc:
                reasons.append(f"{key}: {exc} (line {self.line(key)})")
                continue
            if target == "timeout":
                try:
                    out["timeout"] = float(to_string(value)) * 60
                except ValueError:
                    reasons.append(f"timeout-minutes: {value!r} is not a number (line {self.line(key)})")
            else:
                out["allow_failure"] = truthy(value) and to_string(value).lower() != "false"
        if artifacts:
            out["artifacts"] = artifacts
        if self._wants_history():
            # The runner copies the source's .git into the workspace: the job's checkout cannot fetch
            # from the source where the sandbox hides it (a repository under /tmp).
            out["git"] = True
        payload = {
            "job": self.id, "name": name, "file": self.imp.file_label, "source": str(self.imp.root),
            "github": self.imp.contexts["github"], "inputs": self.imp.contexts["inputs"], "vars": {},
            "secrets": sorted(self.imp.declared), "matrix": combo, "matrix_keys": engine_matrix,
            "env": [self.imp.workflow_env, env], "defaults": self._defaults(),
            "steps": steps, "outputs": self.job.get("outputs") or {}, "needs": list(base["depends_on"]),
            "write_needs": self.id in self.imp.needed,
        }
        if engine_matrix is not None:
            payload["matrix_values"] = {k: [c.get(k) for c in self.combos or []] for k in engine_matrix}
        # The job (steps, contexts) travels in a variable, not on the command line the log echoes.
        out["commands"] = [shlex.join([sys.executable, str(_RUNTIME), "--job", name])]
        out["variables"] = {_gha_runtime.PAYLOAD_VAR: _gha_runtime.encode_payload(payload)}
        if skip is not None:
            out["if"] = _false_condition(skip)
        self.reasons.extend(r for r in reasons if r not in self.reasons)
        return out

    def _wants_history(self) -> bool:
        """A checkout of this repository with `fetch-depth: 0` (its whole history: tags for a version)."""
        for step in self.job.get("steps") or []:
            if isinstance(step, Mapping) and str(step.get("uses", "")).startswith("actions/checkout@"):
                given = step.get("with")
                with_: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
                if str(with_.get("fetch-depth", "")) == "0" and not {"repository", "ref", "path"} & set(with_):
                    return True
        return False

    def _condition(self, ctx: Mapping[str, Any], per_combination: bool) -> tuple[str | None, str | None]:
        """(why the job is skipped, or None; an engine condition for the runner, or None)."""
        text = to_string(self.job["if"]) if not isinstance(self.job["if"], str) else self.job["if"]
        try:
            used = contexts_used(text, condition=True)
        except ExpressionError as exc:
            self.unsupported(("if",), f"if: {exc}")
            return None, None
        if not (per_combination and "matrix" in used) and not used & {"needs"}:
            try:
                return None, github_to_engine(parse_github(text, GithubNames(
                    matrix={k: re.sub(r"\W", "_", k) for k in ctx["matrix"]} if not per_combination else {},
                    secrets=self.imp.declared)))
            except Unsupported:
                pass
        status = used & {"success()", "failure()", "always()", "cancelled()"}
        if used - _STATIC_CONTEXTS - {"hashfiles()"} - status:
            self.unsupported(("if",), f"if: {text!r} reads "
                             + ", ".join(sorted(used - _STATIC_CONTEXTS - status))
                             + ", which is not supported locally in a job's if:")
            return None, None
        functions = {"success": lambda: True, "failure": lambda: False, "always": lambda: True,
                     "cancelled": lambda: False}
        try:
            value = evaluate(text, ctx, functions)
        except ExpressionError as exc:
            self.unsupported(("if",), f"if: {exc}")
            return None, None
        if truthy(value):
            return None, ("always()" if "always()" in status else None)
        return f"if: {text.strip()} is false", None

    def _defaults(self) -> dict[str, Any]:
        out = dict((self.imp.defaults.get("run") or {}) if isinstance(self.imp.defaults, Mapping) else {})
        job_defaults = self.job.get("defaults") or {}
        out.update((job_defaults.get("run") or {}) if isinstance(job_defaults, Mapping) else {})
        return out

    def _steps(self) -> list[dict[str, Any]]:
        if "uses" in self.job:
            return []
        steps = self.job.get("steps")
        if not isinstance(steps, list) or not steps:
            self.unsupported(("steps",), "the job has no steps")
            return []
        out = []
        for index, step in enumerate(steps):
            label = f"step {index + 1}"
            if not isinstance(step, Mapping):
                self.unsupported(("steps", index), f"{label} is not a mapping")
                continue
            if step.get("name"):
                label += f" ({step['name']})"
            for key in sorted(step.keys() - _STEP_KEYS, key=str):
                self.warnings.append(f"job {self.id}: {label}: `{key}:` (line {self.line('steps', index, key)}) "
                                     "is not applied locally")
            _check_env(step.get("env"), (*self.path, "steps", index, "env"), self.imp.pos, self.imp.issues,
                       self.imp.lines)
            if "uses" not in step and "run" not in step:
                self.unsupported(("steps", index), f"{label} has neither run: nor uses:")
                continue
            if "uses" in step:
                uses = str(step["uses"])
                name = uses.split("@", 1)[0].lower()
                if _gha_runtime.action_for(name) is None and not self._statically_false(step):
                    where = "local action" if uses.startswith(".") else "docker action" \
                        if uses.startswith("docker://") else "action"
                    self.unsupported(("steps", index, "uses"),
                                     f"{label} uses {uses}, which is not supported locally (this {where} has no "
                                     "native version here and GitHub is not reachable)")
                    continue
                if name in _gha_runtime.SKIPPED_ACTIONS or any(name.startswith(s) for s in
                                                                _gha_runtime.SKIPPED_ACTIONS if s.endswith("/")):
                    self.warnings.append(f"job {self.id}: {label}: {uses} is skipped locally (upload only)")
            step = {str(k): v for k, v in step.items()}
            for key in ("with", "env"):
                if isinstance(step.get(key), Mapping):
                    step[key] = {str(k): _yaml12(v, (*self.path, "steps", index, key, k), self.imp.pos,
                                                 self.imp.lines) for k, v in step[key].items()}
            out.append({**step, "__line": self.line("steps", index)})
        return out

    def _statically_false(self, step: Mapping[str, Any]) -> bool:
        cond = step.get("if")
        if not isinstance(cond, str):
            return cond is False
        try:
            used = contexts_used(cond, condition=True)
            if used - {"runner", "github", "inputs"}:
                return False
            return not truthy(evaluate(cond, self.imp.contexts))
        except ExpressionError:
            return False

    def _artifacts(self, combos: list[dict[str, Any]] | None) -> list[str]:
        paths: list[str] = []
        for index, step in enumerate(self.job.get("steps") or []):
            if not isinstance(step, Mapping) or "upload-artifact" not in str(step.get("uses", "")):
                continue
            with_ = step.get("with") or {}
            raw = with_.get("path") if isinstance(with_, Mapping) else None
            if not isinstance(raw, str) or not raw.strip():
                self.unsupported(("steps", index, "with"), f"step {index + 1}: upload-artifact needs a `path:`")
                continue
            try:
                text = to_string(value_of(raw, self.static((combos or [{}])[0])))
            except ExpressionError as exc:
                self.warnings.append(f"job {self.id}: upload-artifact path {raw!r}: {exc}; not collected")
                continue
            for p in (p.strip() for p in text.splitlines()):
                if not p:
                    continue
                if p.startswith(("/", "~", "!")) or ".." in Path(p).parts:
                    self.warnings.append(f"job {self.id}: artifact path {p!r} (line "
                                         f"{self.line('steps', index, 'with', 'path')}) is outside the workspace; "
                                         "not collected")
                    continue
                paths.append(p)
        if any(isinstance(st, Mapping) and str(st.get("uses", "")).lower().startswith(_gha_runtime.BAIPP)
               for st in self.job.get("steps") or []):
            paths.append("dist/*")       # the Packages artifact, where a download into dist/ expects it
        if self.id in self.imp.needed:
            paths.append(f"{_gha_runtime.NEEDS_DIR}/{self.id}/*.json")
        return list(dict.fromkeys(paths))


def _baipp_outputs(job: Mapping[str, Any], root: Path) -> dict[str, str]:
    """A job's outputs that read build-and-inspect-python-package's Python versions, from the
    classifiers in pyproject.toml (what the action reads from the built wheel)."""
    steps = [st for st in job.get("steps") or [] if isinstance(st, Mapping)
             and str(st.get("uses", "")).lower().startswith(_gha_runtime.BAIPP) and st.get("id")]
    out: dict[str, str] = {}
    for step in steps:
        with_ = step.get("with") or {}
        pyproject = root / str(with_.get("path", ".") if isinstance(with_, Mapping) else ".") / "pyproject.toml"
        try:
            versions = _gha_runtime.python_classifiers(pyproject.read_text(errors="replace"))
        except OSError:
            continue
        values = {"supported_python_classifiers_json_array": json.dumps(versions),
                  "supported_python_classifiers_json_job_matrix_value": json.dumps({"python-version": versions})}
        for name, raw in (job.get("outputs") or {}).items():
            m = re.fullmatch(r"\s*\$\{\{\s*steps\.([\w-]+)\.outputs\.([\w-]+)\s*\}\}\s*", str(raw))
            if m and m.group(1) == step["id"] and m.group(2) in values:
                out[str(name)] = values[m.group(2)]
    return out


def _texts(raw: Any) -> str:
    if isinstance(raw, Mapping):
        return "\n".join(_texts(v) for v in raw.values()) + "\n" + "\n".join(map(str, raw))
    if isinstance(raw, list):
        return "\n".join(_texts(v) for v in raw)
    return "" if raw is None else str(raw)


class _Importer:
    def __init__(self, path: Path, data: Mapping[str, Any], pos: Positions, *, environ: Mapping[str, str],
                 event: str | None, branch: str | None, inputs: Mapping[str, str]) -> None:
        self.path = path
        self.pos = pos
        self.root = _workspace_root(path)
        self.file_label = f"{path.parent.name}/{path.name}" if path.parent.name == "workflows" else path.name
        self.issues: list[SpecIssue] = []
        self.warnings: list[str] = []
        self.lines = path.read_text(errors="replace").splitlines()
        on = _on(data)
        self.event = event or "push"
        secrets = frozenset(re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", path.read_text(errors="replace")))
        self.declared = frozenset(s for s in secrets if environ.get(s) and s != "GITHUB_TOKEN")
        self.warnings.extend(f"secret {name} is not set in the environment: it expands to an empty string"
                             for name in sorted(secrets - self.declared - {"GITHUB_TOKEN"}))
        github = _github_context(self.root, data, self.event, branch, _dispatch_inputs(on, inputs))
        self.contexts: dict[str, Any] = {
            "github": github, "inputs": _dispatch_inputs(on, inputs), "vars": {},
            "runner": {"os": "Linux", "arch": "X64", "name": "cicd-mcp-local", "environment": "self-hosted"},
            "secrets": dict.fromkeys(secrets, ""), "env": {},
        }
        self.not_triggered = _triggered(on, self.event, github["ref_name"]) if on is not None else None
        if self.not_triggered:
            self.warnings.append(self.not_triggered)
        self.workflow_env = _check_env(data.get("env"), ("env",), pos, self.issues, self.lines)
        self.defaults = data.get("defaults") or {}
        jobs = data.get("jobs") or {}
        self.job_ids = {str(j) for j in jobs}
        self.static_outputs = {str(j): _baipp_outputs(job, self.root) for j, job in jobs.items()
                               if isinstance(job, Mapping)}
        # Jobs whose outputs (or result) another job reads through the `needs` context.
        self.needed = {str(n) for job in jobs.values() if isinstance(job, Mapping)
                       and re.search(r"\bneeds\b", _texts({k: v for k, v in job.items() if k != "needs"}))
                       for n in ([job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs") or [])}


def import_github_workflow(
    source: str | os.PathLike[str], *, skip_unsupported: bool = False,
    environ: Mapping[str, str] | None = None, event: str | None = None, branch: str | None = None,
    inputs: Mapping[str, str] | None = None,
) -> WorkflowImport:
    """Read a GitHub Actions workflow file as a pipeline the engine runs.

    `event` (default `push`) and `branch` (default: the repository's current branch) are what
    GitHub would run the workflow for; `inputs` set `workflow_dispatch` inputs (others keep
    their defaults). Jobs with something that cannot run locally (an action with no native
    version, `services:`, a reusable workflow) fail with a message naming it and its line, or
    are skipped when `skip_unsupported` is set; `unsupported` lists them either way. A secret
    the workflow reads is declared (so it is masked) when it is set in `environ` (default:
    this process's environment); otherwise it expands to empty, as on GitHub.

    Raises:
        NotFoundError: the file does not exist.
        SpecError: the file is not a valid workflow (file:line:col, field).
    """
    path = Path(source)
    if not path.is_file():
        raise NotFoundError(f"workflow file {str(path)!r} does not exist")
    data, pos = load_yaml(path.read_bytes(), str(path))
    if not isinstance(data, Mapping):
        raise SpecError([pos.issue((), "a workflow is a mapping with `on:` and `jobs:`")])
    jobs = data.get("jobs")
    if not isinstance(jobs, Mapping) or not jobs:
        raise SpecError([pos.issue(("jobs",), "a workflow needs a `jobs:` mapping with at least one job")])
    imp = _Importer(path, data, pos, environ=os.environ if environ is None else environ, event=event,
                    branch=branch, inputs=inputs or {})
    issues = imp.issues
    warnings = imp.warnings
    known = {"name", "on", True, "true", "jobs", "env", "defaults", "permissions", "concurrency", "run-name"}
    issues.extend(pos.issue((key,), f"workflow key `{key}:` is not supported", key=True)
                  for key in data.keys() - known)

    converted: dict[str, list[dict[str, Any]]] = {}
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
        importer = _Job(imp, job_id, job)
        spec_jobs = importer.convert()
        warnings.extend(importer.warnings)
        for i, need in enumerate(spec_jobs[0]["depends_on"]):
            if need not in jobs:
                where = ("jobs", job_id, "needs", i) if isinstance(job.get("needs"), list) else \
                    ("jobs", job_id, "needs")
                issues.append(pos.issue(where, f"needs {need!r}, which is not a job; jobs: "
                                               + ", ".join(map(str, jobs))))
        if importer.reasons:
            unsupported[job_id] = list(dict.fromkeys(importer.reasons))
            spec_jobs = [_unsupported_job(s, unsupported[job_id], skip_unsupported) for s in spec_jobs]
        converted[job_id] = spec_jobs
    if not issues:
        cycle = dag.find_cycle({j: list(s[0]["depends_on"]) for j, s in converted.items()})
        if cycle:
            issues.append(pos.issue(("jobs", cycle[0], "needs"), "dependency cycle: " + " -> ".join(cycle)))
    if issues:
        raise SpecError(issues)
    names = {j: [s["name"] for s in specs] for j, specs in converted.items()}
    for specs in converted.values():
        for s in specs:
            s["depends_on"] = [n for need in s["depends_on"] for n in names[need]]

    levels = _levels({j: list(dict.fromkeys(_need_ids(s[0], names))) for j, s in converted.items()})
    stage_prefix = "stage"
    all_names = {s["name"] for specs in converted.values() for s in specs}
    while any(name.startswith(stage_prefix + "-") for name in all_names):
        stage_prefix = "_" + stage_prefix
    stages: dict[int, list[dict[str, Any]]] = {}
    for job_id, specs in converted.items():
        stages.setdefault(levels[job_id], []).extend(specs)
    spec_data: dict[str, Any] = {
        "name": _pipeline_name(data, path),
        "description": f"GitHub Actions workflow {path.name}",
        "trigger": _trigger(_on(data)),
        "secrets": sorted(imp.declared),
        "stages": [{"name": f"{stage_prefix}-{level + 1}", "jobs": stages[level]}
                   for level in sorted(stages)],
        "source": str(imp.root),
    }
    spec = parse_pipeline(spec_data, Positions(str(path)))
    expand(spec, Positions(str(path)))   # the engine's own graph and condition checks, before anything runs
    return WorkflowImport(spec=spec, warnings=list(dict.fromkeys(warnings)), unsupported=unsupported)


def _need_ids(spec_job: Mapping[str, Any], names: Mapping[str, list[str]]) -> list[str]:
    owner = {n: j for j, ns in names.items() for n in ns}
    return [owner[n] for n in spec_job["depends_on"]]


def _false_condition(reason: str) -> str:
    """An engine condition that is false and reads as the reason in the run's record."""
    return "'" + reason.replace("\\", "/").replace("'", "`").replace('"', "`") + "' == 'run'"


def _unsupported_job(spec_job: dict[str, Any], reasons: list[str], skip: bool) -> dict[str, Any]:
    what = "; ".join(reasons)
    out = {k: v for k, v in spec_job.items() if k in ("name", "depends_on", "matrix")}
    if str(spec_job.get("if", "")).endswith("== 'run'"):
        # skipped anyway (a non-Linux runner, an event the workflow does not run on): say that
        return {**out, "if": spec_job["if"], "commands": ["true"]}
    if skip:
        # A condition that is false and says why: the run shows the job skipped with this text.
        note = f"not supported locally (skipped with --skip-unsupported): {what}"
        out["if"] = _false_condition(note)
        out["commands"] = ["true"]
    else:
        if "if" in spec_job:      # a job GitHub would skip is skipped, not failed for what it cannot run
            out["if"] = spec_job["if"]
        message = f"cicd-mcp: job {spec_job['name']} cannot run locally: {what}. " \
                  "Run with --skip-unsupported to skip it instead."
        out["commands"] = [f"echo {shlex.quote(message)} >&2\nexit 3"]
    return out


def load_github_workflow(source: str | os.PathLike[str], *, skip_unsupported: bool = False,
                         event: str | None = None, branch: str | None = None,
                         inputs: Mapping[str, str] | None = None) -> PipelineSpec:
    """`import_github_workflow(...).spec`.

    Raises:
        NotFoundError: the file does not exist.
        SpecError: the file is not a valid workflow.
    """
    return import_github_workflow(source, skip_unsupported=skip_unsupported, event=event, branch=branch,
                                  inputs=inputs).spec
