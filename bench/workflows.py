"""Real repositories' GitHub Actions workflows, run by our CLI as a user would.

For every workflow under tests/fixtures/workflows/<owner>__<repo>/.github/workflows/, the repository's
fixture tree is copied to a temporary directory, made a git repository (one commit on `main`), and
the workflow is run with `cicd-mcp run`. The outcome is read back from the CLI's JSON (`runs --json`,
`show`) and from each job's log, never from the coloured output.

Counted per workflow and per repository:
  parsed      the CLI accepted the file (else the error it printed)
  jobs        jobs the engine made (matrix expanded); `github` is what GitHub would make
  linux       jobs whose `runs-on` (evaluated with the job's matrix values) is an ubuntu/Linux label
  executed    jobs in which at least one of the workflow's steps ran (a job that only printed
              "cannot run locally" executed nothing)
  green       jobs that succeeded and executed
  false_ok    FALSE SUCCESSES: a job reported succeeded that executed nothing, or a run reported
              succeeded (or the CLI exited 0) although no job executed

The jobs may install packages: to keep them off this machine's interpreters, every run gets its own
HOME and PIP_REQUIRE_VIRTUALENV=1 (a `pip install` outside a venv fails, and is counted as such);
package caches (uv, pip, npm, go modules) are shared between runs under --cache.

    python3 bench/workflows.py [-j 2] [--only REPO]... [--timeout 300] [--json out.json]
    python3 bench/workflows.py --inventory        # what the corpus uses (actions, contexts, versions)
    python3 bench/workflows.py --by-hand 'rich:pythonpackage:build[python-version=3.10]' [--json hand.json]
    python3 bench/workflows.py --outcomes full.json --outcomes rerun.json --outcomes hand.json

`--by-hand` runs one job without the engine: its `run:` steps, each a `bash -eo pipefail` script as
the runner runs them, in a fresh copy of the fixture, after a venv of the matrix Python (setup-python)
and, for snok/install-poetry, Poetry in a venv of its own; checkout and uploads do nothing, any other
action refuses. A job failure `--outcomes` cannot explain otherwise is "fails by hand too" only when a
by-hand record of the same job (same matrix values) failed at the same step.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import product
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fixtures" / "workflows"
# How a user runs the CLI; the entry point may move (e.g. to server.cli): change it here.
CLI = [sys.executable, "-m", "engine.cli"]
# Extra arguments for `run` (e.g. ["--skip-unsupported"] or ["--event", "push"]).
RUN_ARGS: list[str] = []
TIMEOUT = 300.0
BLOCKER = "cannot run locally"


@dataclass
class JobResult:
    name: str
    job_id: str
    status: str
    exit_code: int | None
    linux: bool | None
    executed: bool
    green: bool
    false_ok: bool
    reason: str | None
    log_tail: str


@dataclass
class WorkflowResult:
    repo: str
    file: str
    parsed: bool
    error: str | None = None
    cli_exit: int | None = None
    timed_out: bool = False
    seconds: float = 0.0
    run_id: str | None = None
    run_status: str | None = None
    run_reason: str | None = None
    github_jobs: int = 0
    github_linux: int = 0
    jobs: list[JobResult] = field(default_factory=list)
    false_run_ok: bool = False

    def counts(self) -> dict[str, int]:
        return {
            "files": 1, "parsed": int(self.parsed), "github_jobs": self.github_jobs,
            "github_linux": self.github_linux, "jobs": len(self.jobs),
            "linux": sum(1 for j in self.jobs if j.linux),
            "executed": sum(1 for j in self.jobs if j.executed),
            "green": sum(1 for j in self.jobs if j.green),
            "false_ok": sum(1 for j in self.jobs if j.false_ok) + int(self.false_run_ok),
        }


# ---- what GitHub would do with the file (static, for the denominators) ----

def _load(path: Path) -> dict[str, Any]:
    # PyYAML reads `on:` as True; GitHub reads it as the key "on".
    data = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
    return data if isinstance(data, dict) else {}


def expand_matrix(strategy: Any) -> list[dict[str, Any]] | None:
    """GitHub's expansion of `strategy.matrix`; None when the matrix is computed by an expression."""
    if not isinstance(strategy, dict) or "matrix" not in strategy:
        return [{}]
    matrix = strategy["matrix"]
    if not isinstance(matrix, dict):
        return None
    axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    if any(not isinstance(v, list) for v in axes.values()):
        return None
    combos = [dict(zip(axes, values, strict=True)) for values in product(*axes.values())] if axes else []
    for ex in matrix.get("exclude") or []:
        combos = [c for c in combos if not all(c.get(k) == v for k, v in ex.items())]
    base_keys = set(axes)
    extra: list[dict[str, Any]] = []
    for inc in matrix.get("include") or []:
        matched = False
        for c in combos:
            if all(c.get(k) == v for k, v in inc.items() if k in base_keys):
                # An include entry may add keys, never overwrite an original matrix value.
                c.update({k: v for k, v in inc.items() if k not in base_keys})
                matched = True
        if not matched or not combos:
            extra.append(dict(inc))
    return combos + extra if (combos or extra) else [{}]


_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def _eval_simple(expr: str, matrix: dict[str, Any]) -> str:
    """Enough of the expression language for `runs-on`: literals, matrix.a.b, `a || b`, `a && b || c`."""
    expr = expr.strip()
    if "||" in expr:
        for part in expr.split("||"):
            text = _eval_simple(part, matrix)
            if text:
                return text
        return ""
    if "&&" in expr:
        parts = [_eval_simple(p, matrix) for p in expr.split("&&")]
        return parts[-1] if all(parts) else ""
    if expr[:1] in "'\"":
        return expr[1:-1]
    if expr.startswith("matrix."):
        found: Any = matrix
        for key in expr[len("matrix."):].split("."):
            found = found.get(key) if isinstance(found, dict) else None
        return "" if found is None else str(found)
    return "${{ " + expr + " }}"


def _eval_match(m: re.Match[str], matrix: dict[str, Any]) -> str:
    return _eval_simple(m.group(1), matrix)


def runs_on_linux(runs_on: Any, matrix: dict[str, Any]) -> bool | None:
    labels = runs_on if isinstance(runs_on, list) else [runs_on]
    if isinstance(runs_on, dict):
        labels = [runs_on.get("group", ""), *(runs_on.get("labels") or [])]
    texts = [_EXPR.sub(partial(_eval_match, matrix=matrix), str(label)) for label in labels]
    if any("${{" in t for t in texts):
        return None
    low = " ".join(texts).lower()
    if "windows" in low or "macos" in low:
        return False
    if "ubuntu" in low or "linux" in low:
        return True
    return None


def github_jobs(path: Path) -> tuple[int, int, dict[str, Any]]:
    """(jobs GitHub would make, of which Linux, the parsed jobs) — a computed matrix counts as one job."""
    jobs = _load(path).get("jobs") or {}
    total = linux = 0
    for job in jobs.values():
        if not isinstance(job, dict):
            continue
        combos = expand_matrix(job.get("strategy")) or [{}]
        for combo in combos:
            total += 1
            linux += runs_on_linux(job.get("runs-on"), combo) is True
    return total, linux, jobs


# ---- running ----

def _env(home: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "HOME": str(home), "PIP_REQUIRE_VIRTUALENV": "1",
        "UV_CACHE_DIR": str(cache / "uv"), "PIP_CACHE_DIR": str(cache / "pip"),
        "npm_config_cache": str(cache / "npm"), "GOMODCACHE": str(cache / "gomod"),
        "GOCACHE": str(cache / "gobuild"), "PYTHONPATH": str(ROOT),
    })
    env.pop("PIPELINE_WORKSPACE", None)
    return env


def _cli(state: Path, args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--workspace", str(state), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _job_id_and_matrix(name: str) -> tuple[str, dict[str, Any]]:
    m = re.fullmatch(r"(.*?)\[(.*)\]", name)
    if not m:
        return name, {}
    params: dict[str, Any] = {}
    # Values may be JSON objects (a matrix axis of objects): `config={"python":"3.14","os":"..."}`.
    for k, v in re.findall(r"(\w+)=(\{.*?\}(?=,\w+=|$)|[^,]*)", m.group(2)):
        try:
            params[k] = json.loads(v) if v.startswith("{") else v
        except ValueError:
            params[k] = v
    # One engine job per GitHub combination is named `id.N[...]` (a GitHub job id has no dot).
    return re.sub(r"\.\d+$", "", m.group(1)), params


def _linux_of(name: str, wf_jobs: dict[str, Any]) -> tuple[str, bool | None]:
    job_id, params = _job_id_and_matrix(name)
    job = wf_jobs.get(job_id)
    if job is None:  # the engine may rename ids (a name clash); try the normalised form
        for key, value in wf_jobs.items():
            if re.sub(r"\W", "_", key) == job_id:
                job_id, job = key, value
    if not isinstance(job, dict):
        return job_id, None
    # Engine matrix keys are variable names (go-version -> go_version): offer both spellings.
    matrix: dict[str, Any] = {}
    for k, v in params.items():
        matrix[k] = v
        matrix[k.replace("_", "-")] = v
    return job_id, runs_on_linux(job.get("runs-on"), matrix)


def trigger_args(path: Path) -> list[str]:
    """`--event`/`--branch` for a run GitHub would make of this workflow, as the CLI suggests when
    the default (push to the current branch, `main` here) is not one: a workflow that runs only on
    pull requests gets `--event pull_request`; pushes to `master` only get `--branch master`."""
    data: dict[Any, Any] = _load(path)
    on = data.get(True, data.get("on"))   # YAML 1.1 reads the key `on` as True
    events = [on] if isinstance(on, str) else list(on) if isinstance(on, (list, dict)) else []
    event = next((e for e in ("push", "pull_request", "workflow_dispatch") if e in events), events[0] if events
                 else "push")
    args = [] if event == "push" else ["--event", event]
    config = on.get(event) if isinstance(on, dict) else None
    branches = config.get("branches") if isinstance(config, dict) else None
    if event == "push" and isinstance(branches, list) and branches and "main" not in branches \
            and not any("*" in str(b) for b in branches):
        args += ["--branch", str(branches[0])]
    return args


def run_one(repo_dir: Path, wf: Path, timeout: float, cache: Path, keep: bool,
            run_args: list[str]) -> WorkflowResult:
    result = WorkflowResult(repo=repo_dir.name, file=wf.name, parsed=False)
    result.github_jobs, result.github_linux, wf_jobs = github_jobs(wf)
    tmp = Path(tempfile.mkdtemp(prefix=f"wf-{repo_dir.name}-"))
    try:
        src, state, home = tmp / "repo", tmp / "state", tmp / "home"
        shutil.copytree(repo_dir, src, symlinks=True)
        home.mkdir()
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "init.defaultBranch=main"]
        subprocess.run([*git, "init", "-q"], cwd=src, check=True)
        subprocess.run([*git, "add", "-A"], cwd=src, check=True)
        subprocess.run([*git, "commit", "-qm", "fixture"], cwd=src, check=True)
        env = _env(home, cache)
        argv = [*CLI, "--workspace", str(state), "run", str(src / ".github" / "workflows" / wf.name), "-q", *run_args,
                *([] if "--event" in run_args else trigger_args(wf))]
        start = time.monotonic()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            result.timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI's own session: it and the jobs it started
            out, err = proc.communicate()
        result.seconds = round(time.monotonic() - start, 1)
        result.cli_exit = proc.returncode
        runs = json.loads(_cli(state, ["runs", "--json"], env, 60).stdout or "[]") if state.exists() else []
        if not runs:
            result.error = (err.strip() or out.strip() or "no run recorded")[-2000:]
            return result
        result.parsed = True
        run_id = runs[0]["run_id"]
        shown = json.loads(_cli(state, ["show", run_id], env, 60).stdout)
        result.run_id, result.run_status, result.run_reason = run_id, shown["status"], shown.get("reason")
        for name, job in shown["jobs"].items():
            log = _cli(state, ["logs", run_id, name, "--tail", "40"], env, 60).stdout
            job_id, linux = _linux_of(name, wf_jobs)
            blocked = BLOCKER in log
            ran = job["status"] in ("succeeded", "failed", "timed_out", "cancelled") and job["exit_code"] is not None
            executed = ran and not blocked
            green = job["status"] == "succeeded" and executed
            result.jobs.append(JobResult(name=name, job_id=job_id, status=job["status"], exit_code=job["exit_code"],
                                         linux=linux, executed=executed, green=green,
                                         false_ok=job["status"] == "succeeded" and not executed,
                                         reason=job.get("reason"), log_tail=log[-1500:]))
        nothing_ran = not any(j.executed for j in result.jobs)
        result.false_run_ok = nothing_ran and (shown["status"] == "succeeded" or result.cli_exit == 0)
        return result
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def workflows(only: list[str]) -> list[tuple[Path, Path]]:
    out: list[tuple[Path, Path]] = []
    for repo_dir in sorted(p for p in CORPUS.iterdir() if p.is_dir()):
        if only and not any(o in repo_dir.name for o in only):
            continue
        out.extend((repo_dir, wf) for wf in sorted((repo_dir / ".github" / "workflows").glob("*.y*ml")))
    return out


def _table(results: list[WorkflowResult]) -> str:
    cols = ["files", "parsed", "github_jobs", "github_linux", "jobs", "linux", "executed", "green", "false_ok"]
    head = ["repository / workflow", *cols, "run status"]
    rows = []
    by_repo: dict[str, list[WorkflowResult]] = collections.defaultdict(list)
    for r in results:
        by_repo[r.repo].append(r)
    total: collections.Counter[str] = collections.Counter()
    for repo, items in by_repo.items():
        repo_sum: collections.Counter[str] = collections.Counter()
        for r in items:
            c = r.counts()
            repo_sum.update(c)
            status = r.run_status or ("timeout" if r.timed_out else "refused")
            rows.append([f"  {r.file}", *[str(c[k]) for k in cols], status])
        rows.insert(len(rows) - len(items), [f"**{repo}**", *[str(repo_sum[k]) for k in cols], ""])
        total.update(repo_sum)
    rows.append(["**total**", *[str(total[k]) for k in cols], ""])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ---- inventory: what the corpus uses ----

_FUNCS = re.compile(r"\b(fromJSON|toJSON|hashFiles|format|join|startsWith|endsWith|contains|success|failure|always|"
                    r"cancelled)\s*\(", re.I)
_CTX = re.compile(r"\b(github|env|vars|job|jobs|steps|runner|secrets|strategy|matrix|needs|inputs)\.[A-Za-z_][\w-]*")


def inventory() -> dict[str, Any]:
    uses: collections.Counter[str] = collections.Counter()
    uses_versions: collections.Counter[str] = collections.Counter()
    funcs: collections.Counter[str] = collections.Counter()
    ctx: collections.Counter[str] = collections.Counter()
    labels: collections.Counter[str] = collections.Counter()
    versions: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    where: dict[str, str] = {}
    for _repo_dir, wf in workflows([]):
        rel = wf.relative_to(CORPUS)
        for lineno, line in enumerate(wf.read_text().splitlines(), 1):
            code = line.split(" #", 1)[0]
            if code.lstrip().startswith("#"):
                continue
            m = re.search(r"\buses:\s*['\"]?([^\s'\"#]+)", code)
            if m:
                action, _, ref = m.group(1).partition("@")
                comment = re.search(r"#\s*(v[\d.]+)", line)
                shown = comment.group(1) if comment and re.fullmatch(r"[0-9a-f]{40}", ref) else ref
                uses[action] += 1
                uses_versions[f"{action}@{shown}"] += 1
                where.setdefault(f"uses {action}", f"{rel}:{lineno}")
            for e in _EXPR.findall(code):
                for f in _FUNCS.findall(e):
                    key = f.lower()
                    funcs[key] += 1
                    where.setdefault(f"func {key}", f"{rel}:{lineno}")
                for c in _CTX.finditer(e):
                    head = c.group(0).split(".")[0]
                    name = c.group(0) if head in ("github", "runner", "strategy") else head + ".*"
                    ctx[name] += 1
                    where.setdefault(f"ctx {name}", f"{rel}:{lineno}")
        for job in (_load(wf).get("jobs") or {}).values():
            if not isinstance(job, dict):
                continue
            ro = job.get("runs-on")
            labels[json.dumps(ro) if not isinstance(ro, str) else ro] += 1
            strategy: dict[str, Any] = job["strategy"] if isinstance(job.get("strategy"), dict) else {}
            matrix = strategy["matrix"] if isinstance(strategy.get("matrix"), dict) else {}
            for step in job.get("steps") or []:
                with_ = step.get("with") if isinstance(step, dict) else None
                if not isinstance(with_, dict):
                    continue
                for key in ("python-version", "node-version", "go-version", "java-version", "python-version-file",
                            "node-version-file", "go-version-file", "version"):
                    if key not in with_:
                        continue
                    value = with_[key]
                    tool = key.split("-")[0] if key != "version" else str(step.get("uses", "")).split("@")[0]
                    if key == "version" and "setup-uv" not in tool and "poetry" not in tool:
                        continue
                    mref = re.fullmatch(r"\$\{\{\s*matrix\.([\w.-]+)\s*\}\}", str(value).strip())
                    if mref:
                        path = mref.group(1).split(".")
                        found = []
                        for combo in expand_matrix(strategy) or []:
                            v: Any = combo
                            for p in path:
                                v = v.get(p) if isinstance(v, dict) else None
                            if v is not None:
                                found.append(str(v))
                        if not found and not matrix:
                            found = [str(value)]
                        for v in found or [f"{value} (computed)"]:
                            versions[tool][v] += 1
                    else:
                        versions[tool][("file:" if key.endswith("-file") else "") + str(value)] += 1
    return {"uses": uses.most_common(), "uses_versions": uses_versions.most_common(), "functions": funcs.most_common(),
            "contexts": ctx.most_common(), "runs_on": labels.most_common(),
            "versions": {k: v.most_common() for k, v in versions.items()}, "first_seen": where}


_RUN_FEATURES = {
    "GITHUB_ENV": r"\$\{?GITHUB_ENV\b", "GITHUB_OUTPUT": r"\$\{?GITHUB_OUTPUT\b", "GITHUB_PATH": r"\$\{?GITHUB_PATH\b",
    "GITHUB_STEP_SUMMARY": r"\$\{?GITHUB_STEP_SUMMARY\b", "sudo": r"\bsudo\b", "docker": r"\bdocker\b",
    "pip install": r"\bpip3? install\b", "uv/uvx": r"\buvx?\b", "tox": r"\btox\b", "npm": r"\bnpm\b",
    "go": r"\bgo (test|build|install|tool|vet|generate)\b",
    "make": r"\bmake\b", "curl/wget": r"\b(curl|wget)\b", "git": r"\bgit\b",
}
_SHELL_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def features() -> dict[str, Any]:
    """Per Linux job (GitHub's expansion): which runner features and tools its steps need."""
    keys: collections.Counter[str] = collections.Counter()
    run_feats: collections.Counter[str] = collections.Counter()
    shell_vars: collections.Counter[str] = collections.Counter()
    where: dict[str, str] = {}
    for _repo_dir, wf in workflows([]):
        rel = wf.relative_to(CORPUS)
        text = wf.read_text()
        lines = text.splitlines()
        data = _load(wf)

        def line_of(needle: str, _lines: list[str] = lines) -> int:
            return next((i for i, line in enumerate(_lines, 1) if needle in line), 0)

        on = data.get("on")
        if isinstance(on, dict) and isinstance(on.get("workflow_dispatch"), dict) and \
                on["workflow_dispatch"].get("inputs"):
            keys["on.workflow_dispatch.inputs"] += 1
            where.setdefault("on.workflow_dispatch.inputs", f"{rel}:{line_of('inputs:')}")
        for key in ("concurrency", "permissions", "defaults", "env"):
            if key in data:
                keys[f"workflow.{key}"] += 1
                where.setdefault(f"workflow.{key}", f"{rel}:{line_of(key + ':')}")
        for job_id, job in (data.get("jobs") or {}).items():
            if not isinstance(job, dict):
                continue
            for key in ("if", "needs", "outputs", "services", "container", "defaults", "env", "timeout-minutes",
                        "continue-on-error", "permissions", "environment", "uses", "concurrency"):
                if key in job:
                    keys[f"job.{key}"] += 1
                    where.setdefault(f"job.{key}", f"{rel}:{line_of(job_id + ':')}")
            strategy = job["strategy"] if isinstance(job.get("strategy"), dict) else {}
            for key in ("fail-fast", "max-parallel"):
                if key in strategy:
                    keys[f"strategy.{key}"] += 1
            matrix = strategy.get("matrix")
            if isinstance(matrix, str):
                keys["strategy.matrix computed by an expression"] += 1
                where.setdefault("strategy.matrix computed by an expression", f"{rel}:{line_of(matrix[:30])}")
            elif isinstance(matrix, dict):
                for key in ("include", "exclude"):
                    if key in matrix:
                        keys[f"strategy.matrix.{key}"] += 1
                        where.setdefault(f"strategy.matrix.{key}", f"{rel}:{line_of(key + ':')}")
                axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
                if any(isinstance(v, list) and any(isinstance(x, dict) for x in v) for v in axes.values()):
                    keys["strategy.matrix axis of objects"] += 1
                    where.setdefault("strategy.matrix axis of objects", f"{rel}:{line_of('config:')}")
                if any(isinstance(v, str) for v in axes.values()):
                    keys["strategy.matrix axis computed by an expression"] += 1
                    where.setdefault("strategy.matrix axis computed by an expression", f"{rel}:{line_of('fromJson(')}")
            env_names = set((job.get("env") or {}) if isinstance(job.get("env"), dict) else {})
            env_names |= set((data.get("env") or {}) if isinstance(data.get("env"), dict) else {})
            for step in job.get("steps") or []:
                if not isinstance(step, dict):
                    continue
                for key in ("if", "id", "env", "working-directory", "shell", "continue-on-error", "timeout-minutes"):
                    if key in step:
                        keys[f"step.{key}"] += 1
                        where.setdefault(f"step.{key}", f"{rel}:{line_of(str(step[key]).splitlines()[0][:40])}")
                run = step.get("run")
                if not isinstance(run, str):
                    continue
                first = run.strip().splitlines()[0][:40] if run.strip() else ""
                for name, pattern in _RUN_FEATURES.items():
                    if re.search(pattern, run):
                        run_feats[name] += 1
                        where.setdefault(f"run {name}", f"{rel}:{line_of(first)}")
                step_env = set(step.get("env") or {}) if isinstance(step.get("env"), dict) else set()
                for m in _SHELL_VAR.finditer(run):
                    var = m.group(1) or m.group(2)
                    if var in step_env | env_names:
                        shell_vars["from env: (ours substitutes it before bash)"] += 1
                        where.setdefault("shell var from env", f"{rel}:{line_of(first)}")
                    elif var.startswith(("GITHUB_", "RUNNER_")):
                        shell_vars["GITHUB_*/RUNNER_* runner variable"] += 1
                        where.setdefault("shell var runner", f"{rel}:{line_of(first)}")
                    else:
                        shell_vars["set by the script or the machine"] += 1
                        where.setdefault("shell var own", f"{rel}:{line_of(first)}")
    return {"keys": keys.most_common(), "run": run_feats.most_common(), "shell_vars": shell_vars.most_common(),
            "first_seen": where}


def _blocker_causes(log: str) -> list[str]:
    m = re.search(r"cannot run locally: (.*?)\. Run with --skip-unsupported", log, re.S)
    if not m:
        return []
    out = []
    for part in m.group(1).split("; "):
        part = re.sub(r"\s*\(line \d+\)$", "", part.strip())
        if "only Linux jobs run locally" in part:
            out.append("a non-Linux runs-on in the job's matrix blocks its Linux combinations too")
        elif (u := re.search(r"uses ([^@\s]+)@\S+, which is not supported", part)):
            out.append(f"unsupported action {u.group(1)}")
        elif "strategy.matrix.exclude" in part or "strategy.matrix.include" in part:
            out.append(f"matrix {part.split('.')[2].split()[0]} not supported")
        elif "only plain names can be substituted" in part:
            out.append("expression with operators (&&, ||, ==) in a value")
        elif ".outputs." in part and "not available" in part:
            out.append("steps.<id>.outputs not available")
        elif "the job has no matrix key" in part:
            out.append("matrix key that exists only in include")
        elif "must list plain values" in part or re.search(r"`matrix\.\w+\.\w+` is not available", part):
            out.append("matrix of objects (matrix.a.b)")
        elif "checkout with" in part:
            out.append("checkout with ref:/repository: not supported")
        elif "cannot read" in part:
            out.append("fromJSON(...)[index] / github.event.inputs not evaluated")
        else:
            out.append(part[:120])
    return sorted(set(out))


def _refusal_cause(error: str) -> str:
    if "the job has no matrix key" in error:
        return "file refused: matrix computed by fromJson(needs...) then used in env:"
    if "only plain names can be substituted" in error:
        return "file refused: expression with operators in job env:"
    return "file refused: " + error.split(": ", 2)[-1][:100]


def causes(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Why each Linux job did not run, counted by jobs (a job counts once per cause), with one example each."""
    count: collections.Counter[str] = collections.Counter()
    example: dict[str, str] = {}
    for r in results:
        if not r["parsed"]:
            cause = _refusal_cause(r["error"] or "")
            count[cause] += r["github_linux"]
            example.setdefault(cause, f"{r['repo']}/{r['file']}: {(r['error'] or '').split('/.github/workflows/')[-1]}")
            continue
        for job in r["jobs"]:
            if not job["linux"] or job["executed"]:
                continue
            found = _blocker_causes(job["log_tail"])
            if not found and job["status"] == "skipped":
                found = ["skipped: " + re.sub(r"test\[.*", "…", (job["reason"] or "")[:70])]
            for cause in found:
                count[cause] += 1
                example.setdefault(cause, f"{r['repo']}/{r['file']} job {job['name']}")
    return {"jobs_by_cause": count.most_common(), "example": example}


# Why a Linux job was not green, from its log and record (first match wins).
_OUTCOMES: list[tuple[str, re.Pattern[str]]] = [
    ("missing tool", re.compile(r"is not installed here|PyPy and GraalPy are not supported|Cannot connect to the "
                                r"Docker daemon|No interpreter found for Python|Python downloads are set to 'never'|"
                                # attrs' and structlog's tox docs envs take .python-version-default (3.14);
                                # uv's "No interpreter found" is above the log's kept tail.
                                r"docs-doctests: FAIL code 2")),
    ("unsupported action", re.compile(r"which is not supported locally")),
    ("network", re.compile(r"Could not resolve host|Name or service not known|no such host|ENOTFOUND|EAI_AGAIN|"
                           r"getaddrinfo|Temporary failure in name resolution|dial tcp|unable to access 'https://|"
                           r"socketErrorListener|request should time out|failed to lookup address|needs GitHub|"
                           r"can be checked out here|"
                           # testify's script queries api.github.com; the corpus leaves it out for that.
                           r"ghactions\.sh")),
    ("fixture trimmed", re.compile(r"docs/overrides' \) does not exist|docs/overrides'\) does not exist|"
                                   r"No such file or directory: 'docs|Cannot read file 'typing_tests'")),
    ("bench timeout", re.compile(r"interrupted: the runner process")),
]


def _workflow_outcomes(r: dict[str, Any], by_hand: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The Linux jobs of one workflow run: green, or why not. A failure no pattern explains is "fails by
    hand too" when a --by-hand record of the same job failed at the same step."""
    by_name = {j["name"]: j for j in r["jobs"]}
    cause_of: dict[str, str] = {}

    def cause(job: dict[str, Any], seen: tuple[str, ...] = ()) -> str:
        if job["name"] in cause_of:
            return cause_of[job["name"]]
        if job["green"]:
            found = "green"
        elif job["status"] == "skipped":
            reason = job.get("reason") or ""
            deps = [n for n in by_name if n in reason and n != job["name"] and n not in seen]
            if reason.startswith("dependency ") and deps:
                found = cause(by_name[deps[0]], (*seen, job["name"]))
                found = found if found.startswith("needed job: ") else "needed job: " + found
            else:
                found = "skipped as on GitHub"
        else:
            text = (job.get("log_tail") or "") + " " + (job.get("reason") or "")
            found = next((name for name, pattern in _OUTCOMES if pattern.search(text)), "failed")
            if found == "failed" and _by_hand_match({**job, "repo": r["repo"], "file": r["file"]}, by_hand):
                found = "fails by hand too"
            aggregate = re.search(r"alls-green: not all needed jobs succeeded: (.*)", text)
            if found == "failed" and aggregate:   # an all-green check fails for the jobs it needs
                ids = [i.strip() for i in aggregate.group(1).split(",")]
                needed = [j for n, j in by_name.items() if re.sub(r"(\.\d+)?(\[.*)?$", "", n) in ids
                          and n not in seen and n != job["name"]]
                found = next((c for c in (cause(j, (*seen, job["name"])) for j in needed)
                              if c.endswith(("missing tool", "unsupported action", "network"))),
                             "failed")
                found = found if found == "failed" or found.startswith("needed job: ") else "needed job: " + found
        cause_of[job["name"]] = found
        return found

    return [{"repo": r["repo"], "file": r["file"], "job": job["name"], "outcome": cause(job)}
            for job in r["jobs"] if job["linux"]]

def outcomes(results: list[dict[str, Any]], by_hand: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every Linux job GitHub would run, by outcome: green, or the cause it is not (a job skipped
    because a needed job failed takes that job's cause). `eligible` are the jobs whose tools are
    installed here (not a missing toolchain version nor an action with no native version);
    `eligible_offline` leaves out those that need the network beyond PyPI/npm too; `engine_offline`
    leaves out, of those, the jobs that fail the same way run by hand without the engine."""
    rows = [row for r in results if r["parsed"] for row in _workflow_outcomes(r, by_hand or [])]
    total: collections.Counter[str] = collections.Counter(row["outcome"] for row in rows)
    per_repo: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for row in rows:
        per_repo[row["repo"]][row["outcome"]] += 1

    def figures(c: collections.Counter[str]) -> dict[str, int]:
        run = sum(v for k, v in c.items() if k != "skipped as on GitHub")
        no_tool = sum(v for k, v in c.items() if k.endswith(("missing tool", "unsupported action")))
        offline = sum(v for k, v in c.items() if k.endswith("network"))
        return {"linux": run, "green": c["green"], "eligible": run - no_tool,
                "eligible_offline": run - no_tool - offline,
                "engine_offline": run - no_tool - offline - c["fails by hand too"]}

    return {"rows": rows, "total": dict(total), "figures": figures(total),
            "per_repo": {k: {"outcomes": dict(v), **figures(v)} for k, v in sorted(per_repo.items())}}


def _outcome_table(data: dict[str, Any]) -> str:
    kinds = ["green", "failed", "fails by hand too", "network", "missing tool", "unsupported action",
             "fixture trimmed", "bench timeout"]
    head = ["repository", "linux jobs run", "green", "eligible (tools here)", "green / eligible",
            "eligible offline", "green / eligible offline", "green / eligible offline, not failing by hand",
            *kinds[1:], "needed job: …"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(name: str, d: dict[str, Any]) -> str:
        o = d["outcomes"] if "outcomes" in d else d["total"]
        f = d if "outcomes" in d else d["figures"]
        pct = f"{100 * f['green'] / f['eligible']:.0f}%" if f["eligible"] else "-"
        pct2 = f"{100 * f['green'] / f['eligible_offline']:.0f}%" if f["eligible_offline"] else "-"
        pct3 = f"{f['green']} / {f['engine_offline']}" + \
            (f" ({100 * f['green'] / f['engine_offline']:.0f}%)" if f["engine_offline"] else "")
        cells = [name, f["linux"], f["green"], f["eligible"], pct, f["eligible_offline"], pct2, pct3,
                 *(o.get(k, 0) for k in kinds[1:]), sum(v for k, v in o.items() if k.startswith("needed job"))]
        return "| " + " | ".join(str(c) for c in cells) + " |"

    lines.extend(row(repo, d) for repo, d in data["per_repo"].items())
    lines.append(row("**total**", data))
    return "\n".join(lines)


def _versions_installed() -> dict[str, set[str]]:
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    py = {".".join(p.name.split(".")[:2]) for p in pyenv.iterdir()} if pyenv.is_dir() else set()
    for exe in ("python3", "/usr/bin/python3"):
        try:
            out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            continue
        py.add(out)

    def major(cmd: list[str], pattern: str) -> set[str]:
        try:
            text = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
        except OSError:
            return set()
        m = re.search(pattern, text)
        return {m.group(1)} if m else set()

    return {"python": py, "node": major(["node", "--version"], r"v(\d+)"),
            "go": major(["go", "version"], r"go1\.(\d+)")}


def tool_needs() -> dict[str, Any]:
    """Per Linux job (GitHub's expansion): the toolchain versions its setup-* steps ask for, installed here or not."""
    have = _versions_installed()
    jobs_total = 0
    ok: collections.Counter[str] = collections.Counter()
    missing: collections.Counter[str] = collections.Counter()
    for repo_dir, wf in workflows([]):
        for job in (_load(wf).get("jobs") or {}).values():
            if not isinstance(job, dict):
                continue
            for combo in expand_matrix(job.get("strategy")) or [{}]:
                if runs_on_linux(job.get("runs-on"), combo) is not True:
                    continue
                jobs_total += 1
                for step in job.get("steps") or []:
                    uses = str(step.get("uses", "")) if isinstance(step, dict) else ""
                    has_with = isinstance(step, dict) and isinstance(step.get("with"), dict)
                    with_: dict[str, Any] = step["with"] if has_with else {}
                    tool = next((t for t in ("python", "node", "go") if f"setup-{t}@" in uses), None)
                    if tool is None:
                        continue
                    raw = with_.get(f"{tool}-version")
                    if raw is None and with_.get(f"{tool}-version-file"):
                        file = repo_dir / with_[f"{tool}-version-file"]
                        raw = file.read_text().strip() if file.name.startswith(".") and file.exists() else ">=3.10"
                    value = _EXPR.sub(partial(_eval_match, matrix=combo), str(raw)).strip() or "?"
                    key = f"{tool} {value}"
                    if _version_ok(tool, value, have[tool]):
                        ok[key] += 1
                    else:
                        missing[key] += 1
    return {"linux_jobs": jobs_total, "installed": {k: sorted(v) for k, v in have.items()},
            "asked_and_installed": ok.most_common(), "asked_and_missing": missing.most_common()}


def _version_ok(tool: str, value: str, have: set[str]) -> bool:
    if tool == "python":
        if value in ("3.x", ">=3.10"):
            return any(v.startswith("3.") for v in have)
        return value in have  # 3.14t, 3.15-dev, pypy-3.11 are never in the set
    if tool == "node":
        m = re.fullmatch(r"(\d+)(\.x)?", value)
        return m is not None and m.group(1) in have  # lts/* is the newest LTS, not what is installed
    m = re.fullmatch(r"\^?1\.(\d+)(\.x)?", value)
    return m is not None and m.group(1) in have  # stable/oldstable/^1 mean releases newer than what is installed


def installed() -> dict[str, str]:
    def out(cmd: str) -> str:
        try:
            p = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30, check=False)
        except subprocess.TimeoutExpired:
            return "timeout"
        return (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr).strip() else "-"

    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    return {
        "python3": out("python3 --version"), "/usr/bin/python3": out("/usr/bin/python3 --version"),
        "pyenv versions": " ".join(sorted(p.name for p in pyenv.iterdir())) if pyenv.is_dir() else "-",
        "uv": out("command -v uv && uv --version || echo 'not installed'"),
        "node": out("node --version"), "npm": out("npm --version"), "go": out("go version"),
        "java": out("java -version"), "docker": out("command -v docker || echo 'not installed'"),
        "sudo": out("command -v sudo || echo 'not installed'"),
    }


# ---- the same job by hand: its `run:` steps as a plain bash script, no engine ----

# What a `uses:` step becomes in the script. Only what the jobs classified "fails by hand too" need;
# any other action makes the job not reproducible by hand (said, not guessed).
_BY_HAND_NOTE = ("actions/checkout", "actions/upload-artifact", "codecov/", "coverallsapp/")


def _python_for(spec: str) -> str | None:
    """An interpreter of this machine for a setup-python version (`3.12`, `3.12.4`): pyenv's first,
    then the system's, as the engine's setup-python looks."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or "/root/.pyenv") / "versions"
    for d in sorted(pyenv.glob(f"{spec}*"), key=lambda p: [int(x) for x in re.findall(r"\d+", p.name)],
                    reverse=True):
        if re.fullmatch(re.escape(spec) + r"(\.\d+)*", d.name) and (d / "bin" / "python").exists():
            return str(d / "bin" / "python")
    minor = ".".join(spec.split(".")[:2])
    return shutil.which(f"python{minor}")


def _by_hand_script(repo_dir: Path, wf: Path, selector: str) -> tuple[str, str, dict[str, Any]]:
    """(bash script, job id, its matrix combination) for `JOB[key=value,...]` of workflow `wf`.
    The script runs in the fixture's copy (its working directory) with $RUNNER_TEMP set."""
    data = _load(wf)
    m = re.fullmatch(r"(.*?)(?:\[(.*)\])?", selector)
    job_id = re.sub(r"\.\d+$", "", m.group(1)) if m else selector
    wanted = dict(kv.split("=", 1) for kv in (m.group(2) or "").split(",") if "=" in kv) if m else {}
    job = (data.get("jobs") or {}).get(job_id)
    if not isinstance(job, dict):
        raise SystemExit(f"{wf.name}: no job {job_id!r} (jobs: {', '.join(data.get('jobs') or {})})")
    want = {k.replace("_", "-"): str(v) for k, v in wanted.items()}
    combos = [c for c in expand_matrix(job.get("strategy")) or [{}]
              if all(str(c.get(k, c.get(k.replace("-", "_")))) == v for k, v in want.items())
              and runs_on_linux(job.get("runs-on"), c) is not False]
    if not combos:
        raise SystemExit(f"{wf.name} job {job_id}: no Linux matrix combination with {want}")
    matrix = combos[0]
    env: dict[str, str] = {}

    def sub(text: Any) -> str:
        def one(m: re.Match[str]) -> str:
            expr = m.group(1).strip()
            if expr.startswith("matrix."):
                return _eval_simple(expr, matrix)
            if expr.startswith("env."):
                return env.get(expr[4:], "")
            if expr == "runner.os":
                return "Linux"
            if expr.startswith("secrets."):
                return ""
            raise SystemExit(f"{wf.name} job {job_id}: expression `{expr}` is not reproducible by hand")
        return _EXPR.sub(one, str(text))

    for level in (data, job):
        env.update({k: sub(v) for k, v in (level.get("env") or {}).items()})
    defaults = {**((data.get("defaults") or {}).get("run") or {}), **((job.get("defaults") or {}).get("run") or {})}
    lines = ["#!/bin/bash", f"# {wf.parent.parent.parent.name}/{wf.name} job {job_id} {json.dumps(matrix)}: its steps "
             "by hand, no engine", "set -u", 'export CI=true GITHUB_ACTIONS=true RUNNER_OS=Linux '
             'GITHUB_WORKSPACE="$PWD"',
             *(f"export {k}={shlex.quote(v)}" for k, v in env.items()),
             'fail() { echo "by hand: step $1 failed with exit $2"; exit "$2"; }']
    for n, step in enumerate(job.get("steps") or [], 1):
        if not isinstance(step, dict):
            continue
        cond = str(step.get("if", ""))
        if re.search(r"failure\(\)|cancelled\(\)", cond):
            lines.append(f"# step {n}: runs only after a failure (`if: {cond}`): left out")
            continue
        with_ = {k: sub(v) for k, v in (step.get("with") or {}).items()}
        uses = str(step.get("uses", ""))
        lines.append(f"echo {shlex.quote(f'--- step {n}: ' + sub(step.get('name') or uses or 'run'))}")
        if uses.startswith(_BY_HAND_NOTE):
            lines.append(f"# {uses}: nothing to do here (the copy is the checkout; uploads are not made)")
        elif uses.startswith("actions/setup-python"):
            version = with_.get("python-version") or \
                (repo_dir / with_.get("python-version-file", "")).read_text().strip()
            python = _python_for(version)
            if python is None:
                raise SystemExit(f"{wf.name} job {job_id}: Python {version} is not installed here")
            lines += [f'{shlex.quote(python)} -m venv "$RUNNER_TEMP/python" || fail {n} $?',
                      'export PATH="$RUNNER_TEMP/python/bin:$PATH"']
        elif uses.startswith(("actions/setup-node", "actions/setup-go")):
            tool, version = ("node", with_.get("node-version", "")) if "node" in uses else \
                ("go", with_.get("go-version", ""))
            lines.append(f"# {uses} {version}: the {tool} installed here is used ($({tool} --version))")
            lines.append(f'echo "{tool}: $({tool} version 2>/dev/null || {tool} --version)"')
        elif uses.startswith("snok/install-poetry"):
            # As the action does: Poetry in an environment of its own, configured by the inputs.
            spec = "poetry" if with_.get("version", "latest") == "latest" else f"poetry=={with_['version']}"
            in_project = with_.get("virtualenvs-in-project", "false")
            lines += [f'python -m venv "$RUNNER_TEMP/poetry" || fail {n} $?',
                      f'"$RUNNER_TEMP/poetry/bin/pip" install -q {shlex.quote(spec)} || fail {n} $?',
                      'export PATH="$RUNNER_TEMP/poetry/bin:$PATH"',
                      f"export POETRY_VIRTUALENVS_CREATE={shlex.quote(with_.get('virtualenvs-create', 'true'))} "
                      f"POETRY_VIRTUALENVS_IN_PROJECT={in_project}",
                      "export VENV=" + (".venv/bin/activate" if in_project == "true" else
                                        '"$(poetry env info --path)/bin/activate"')]
        elif uses:
            raise SystemExit(f"{wf.name} job {job_id}: step {n} uses {uses}, which has no by-hand version here")
        else:
            shell = sub(step.get("shell") or defaults.get("shell") or "bash")
            argv = {"bash": "bash --noprofile --norc -eo pipefail", "sh": "sh -e"}.get(shell)
            if argv is None:
                raise SystemExit(f"{wf.name} job {job_id}: step {n} has shell {shell!r}")
            script = sub(step["run"])
            step_env = " ".join(f"{k}={shlex.quote(sub(v))}" for k, v in (step.get("env") or {}).items())
            cwd = sub(step.get("working-directory") or defaults.get("working-directory") or ".")
            if cond:
                lines.append(f"# step {n} has `if: {cond}`: run (the job has not failed so far)")
            # A file, as the runner does: a step that reads stdin must not read its own script.
            lines.append(f"cat > \"$RUNNER_TEMP/step_{n}.sh\" <<'STEP_{n}'\n{script.rstrip()}\nSTEP_{n}")
            lines.append(f"(cd {shlex.quote(cwd)} && {step_env + ' ' if step_env else ''}{argv} "
                         f"\"$RUNNER_TEMP/step_{n}.sh\" </dev/null) || fail {n} $?")
    lines.append('echo "by hand: every step succeeded"')
    return "\n".join(lines) + "\n", job_id, matrix


_TEST_SUMMARY = re.compile(r"^.*\b\d+ (?:passing|failing|failed|passed|errors?)\b.*$", re.M)
_FAILED_STEP = re.compile(r"step (\d+)(?: \(.*\))?:? failed")


def by_hand(selector: str, cache: Path, keep: bool, timeout: float) -> dict[str, Any]:
    """Run `REPO:WORKFLOW:JOB[key=value,...]` by hand in a fresh copy of the fixture: the script's exit
    code, the step that failed, the test summaries and the output's tail. The environment is the
    bench's (own HOME, shared package caches, PIP_REQUIRE_VIRTUALENV) without this project on PYTHONPATH."""
    repo, _, rest = selector.partition(":")
    file, _, job = rest.partition(":")
    repos = [p for p in sorted(CORPUS.iterdir()) if p.is_dir() and repo in p.name]
    wfs = [p for r in repos for p in (r / ".github" / "workflows").glob("*.y*ml") if p.name.startswith(file)]
    if len(wfs) != 1 or not job:
        raise SystemExit(f"--by-hand REPO:WORKFLOW:JOB: {selector!r} names {len(wfs)} workflow files")
    repo_dir = wfs[0].parent.parent.parent
    script, job_id, matrix = _by_hand_script(repo_dir, wfs[0], job)
    tmp = Path(tempfile.mkdtemp(prefix="byhand-"))
    try:
        src, home, temp = tmp / "repo", tmp / "home", tmp / "runner-temp"
        shutil.copytree(repo_dir, src, symlinks=True)
        home.mkdir()
        temp.mkdir()
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "init.defaultBranch=main"]
        for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fixture"]):
            subprocess.run([*git, *argv], cwd=src, check=True)
        (tmp / "job.sh").write_text(script)
        env = _env(home, cache)
        env.pop("PYTHONPATH", None)
        env["RUNNER_TEMP"] = str(temp)
        start = time.monotonic()
        with open(tmp / "job.log", "w") as log:
            proc = subprocess.Popen(["bash", str(tmp / "job.sh")], cwd=src, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
        text = (tmp / "job.log").read_text(errors="replace")
        failed = _FAILED_STEP.findall(text)
        summary = [line for line in _TEST_SUMMARY.findall(text) if not line.startswith("by hand:")]
        return {"by_hand": True, "repo": repo_dir.name, "file": wfs[0].name, "job_id": job_id, "matrix": matrix,
                "exit_code": code, "failed_step": int(failed[-1]) if failed else None,
                "seconds": round(time.monotonic() - start, 1), "summary": summary[-3:],
                "tail": "\n".join(text.splitlines()[-25:]), "kept": str(tmp) if keep else None}
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _by_hand_match(job: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The by-hand run of this engine job that failed at the same step, if there is one."""
    job_id, params = _job_id_and_matrix(job["name"])
    engine_step = _FAILED_STEP.findall(job.get("log_tail") or "")
    for rec in records:
        same_job = rec["repo"] == job["repo"] and rec["file"] == job["file"] and rec["job_id"] == job_id and all(
            str(rec["matrix"].get(k, rec["matrix"].get(k.replace("_", "-")))) == str(v) for k, v in params.items())
        if same_job and rec["exit_code"] != 0 and engine_step and rec["failed_step"] == int(engine_step[-1]):
            return rec
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-j", type=int, default=2, help="workflows at once (default 2)")
    parser.add_argument("--only", action="append", default=[], help="repository (owner__repo, or part of it)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per workflow")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "cicd-bench-workflows-cache"))
    parser.add_argument("--skip-unsupported", action="store_true",
                        help="pass --skip-unsupported to `run` (what the CLI tells a user to do next)")
    parser.add_argument("--causes", metavar="RESULTS_JSON",
                        help="from a --json file of an earlier run: why each Linux job did not run, counted")
    parser.add_argument("--outcomes", metavar="RESULTS_JSON", action="append", default=[],
                        help="from --json files: every Linux job green or the cause it is not, per repository "
                             "(repeatable: a workflow in a later file replaces it in an earlier one, e.g. a full "
                             "run then an --only re-run; --by-hand records are read as the evidence of "
                             "\"fails by hand too\")")
    parser.add_argument("--keep", action="store_true", help="keep each run's temporary directory")
    parser.add_argument("--inventory", action="store_true", help="print what the corpus uses, and the toolchains")
    parser.add_argument("--by-hand", metavar="REPO:WORKFLOW:JOB[key=value,...]", action="append", default=[],
                        help="run that job's steps as a plain bash script in a fresh copy of the fixture, no "
                             "engine (setup-python: a venv of the matrix Python); exits with the script's code "
                             "(repeatable; with --json, the records --outcomes reads)")
    args = parser.parse_args()
    if args.by_hand:
        records = []
        for selector in args.by_hand:
            rec = by_hand(selector, Path(args.cache), args.keep, args.timeout)
            records.append(rec)
            print(f"by hand: {rec['repo']}/{rec['file']} {rec['job_id']} {json.dumps(rec['matrix'])}: exit "
                  f"{rec['exit_code']}, failed step {rec['failed_step']} ({rec['seconds']}s)"
                  f"{' kept in ' + rec['kept'] if rec['kept'] else ''}\n" + "\n".join(rec["summary"]) + "\n"
                  + rec["tail"] + "\n", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(records, indent=1))
        return records[0]["exit_code"] if len(records) == 1 else 0
    if args.causes:
        print(json.dumps(causes(json.loads(Path(args.causes).read_text())), indent=1))
        return 0
    if args.outcomes:
        records = [r for f in args.outcomes for r in json.loads(Path(f).read_text())]
        merged = {(r["repo"], r["file"]): r for r in records if not r.get("by_hand")}
        print(_outcome_table(outcomes(list(merged.values()), [r for r in records if r.get("by_hand")])))
        return 0
    if args.inventory:
        data = {"inventory": inventory(), "features": features(), "tools": tool_needs(), "installed": installed()}
        print(json.dumps(data, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=1))
        return 0
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    todo = workflows(args.only)
    results: list[WorkflowResult] = []
    with ThreadPoolExecutor(max_workers=max(1, args.j)) as pool:
        run_args = [*RUN_ARGS, *(["--skip-unsupported"] if args.skip_unsupported else [])]
        futures = [pool.submit(run_one, repo, wf, args.timeout, cache, args.keep, run_args) for repo, wf in todo]
        for fut in futures:
            r = fut.result()
            results.append(r)
            c = r.counts()
            print(f"{r.repo}/{r.file}: {r.run_status or ('timeout' if r.timed_out else 'refused')} "
                  f"jobs {c['jobs']} linux {c['linux']} executed {c['executed']} green {c['green']} "
                  f"false_ok {c['false_ok']} ({r.seconds}s)", file=sys.stderr, flush=True)
    print(_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) | {"counts": r.counts()} for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
