"""The standard build of each language, as a registry of name -> builder.

A builder does its I/O in one place, `inspect` (read the manifest, look for the
toolchain on PATH, ask the Python interpreter what it has installed), and returns plain
facts. Everything after that is a pure decision over those facts: what is wrong with
the project (`config_findings`), what is missing to build it (`dependency_findings`),
and which commands build it (`plan`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from engine.build._models import BuildPlan, BuildStep, Finding
from engine.errors import InputError
from engine.spec.model import LANGUAGES

__all__ = ["BUILDERS", "Builder", "detect_language", "get_builder"]

F = TypeVar("F")


class Builder(ABC, Generic[F]):
    """One language's standard build."""

    language: str
    markers: tuple[str, ...]   # files whose presence at the project root means "this language"

    @abstractmethod
    def inspect(self, project: Path, env: Mapping[str, str], python: str) -> F:
        """Read what the decisions need from the project and the machine."""

    @abstractmethod
    def config_findings(self, facts: F) -> list[Finding]:
        """What is wrong with the project's own files."""

    @abstractmethod
    def dependency_findings(self, facts: F) -> list[Finding]:
        """What is missing to build it: toolchain, lockfile, build backend."""

    @abstractmethod
    def plan(self, facts: F, output_dir: Path) -> BuildPlan:
        """The commands of the standard build; only valid when there are no error findings."""


def _which(name: str, env: Mapping[str, str]) -> str | None:
    return shutil.which(name, path=env.get("PATH", os.defpath))


def _toml(path: Path) -> tuple[dict[str, Any] | None, Finding | None]:
    try:
        return tomllib.loads(path.read_text()), None
    except tomllib.TOMLDecodeError as exc:   # its message carries "(at line L, column C)"
        return None, Finding(severity="error", code="manifest-invalid", message=f"not valid TOML: {exc}",
                             path=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        return None, Finding(severity="error", code="manifest-unreadable", message=str(exc), path=str(path))


def _missing_tool(tool: str, hint: str) -> Finding:
    return Finding(severity="error", code="toolchain-missing", message=f"`{tool}` is not on PATH; {hint}")


# --------------------------------------------------------------------------- python

# Runs inside the project's interpreter, so the answer is about that interpreter's
# packages, not ours. Argument: JSON {"backend", "backend_path", "requires"}.
_PY_PROBE = r"""
import importlib.util, json, os, re, sys
from importlib import metadata
req = json.loads(sys.argv[1])
for p in reversed(req["backend_path"]):
    sys.path.insert(0, os.path.abspath(p))
def has(mod):
    try:
        return importlib.util.find_spec(mod) is not None
    except Exception:
        return False
try:
    from packaging.requirements import Requirement
except Exception:
    Requirement = None
missing = []
for r in req["requires"]:
    if Requirement is None:
        name = re.split(r"[\s<>=!~;\[(]", r.strip(), maxsplit=1)[0]
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(r)
        continue
    try:
        rq = Requirement(r)
    except Exception:
        missing.append(r)
        continue
    if rq.marker is not None and not rq.marker.evaluate():
        continue
    try:
        v = metadata.version(rq.name)
    except metadata.PackageNotFoundError:
        missing.append(r)
        continue
    if rq.specifier and not rq.specifier.contains(v, prereleases=True):
        missing.append(f"{r} (found {v})")
print(json.dumps({"backend": has(req["backend"].split(":")[0]), "missing": missing,
                  "build": has("build"), "pip": has("pip")}))
"""

# Calls the project's PEP 517 backend in the current interpreter (no isolation, no
# network). Arguments: sdist|wheel OUTDIR BACKEND [BACKEND_PATH...]. Prints the file made.
_PY_HOOK = r"""
import importlib, os, sys
kind, out, spec, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
for p in reversed(paths):
    sys.path.insert(0, os.path.abspath(p))
mod, _, attr = spec.partition(":")
backend = importlib.import_module(mod)
for part in filter(None, attr.split(".")):
    backend = getattr(backend, part)
os.makedirs(out, exist_ok=True)
name = getattr(backend, "build_" + kind)(os.path.abspath(out))
print("built", os.path.join(out, name))
"""

_DEFAULT_BACKEND = "setuptools.build_meta:__legacy__"


@dataclass
class PythonFacts:
    project: Path
    python: str
    python_found: bool
    pyproject: dict[str, Any] | None = None
    manifest_error: Finding | None = None
    has_setup_py: bool = False
    backend: str = _DEFAULT_BACKEND
    backend_path: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=lambda: ["setuptools>=40.8.0"])
    probe: dict[str, Any] | None = None
    probe_error: str | None = None


class PythonBuilder(Builder[PythonFacts]):
    """Wheel and sdist through the project's PEP 517 backend.

    When the backend and its requirements are installed in the interpreter, the backend
    is called directly (no build isolation: works offline). Otherwise `python -m build`
    builds in an isolated environment fetched from the package index; without `build`,
    pip builds the wheel and the sdist is reported as not built.
    """

    language = "python"
    markers = ("pyproject.toml", "setup.py")

    def inspect(self, project: Path, env: Mapping[str, str], python: str) -> PythonFacts:
        exe = python if os.path.isabs(python) else _which(python, env)
        facts = PythonFacts(project=project, python=exe or python, python_found=exe is not None)
        pyproject = project / "pyproject.toml"
        facts.has_setup_py = (project / "setup.py").is_file()
        if pyproject.is_file():
            facts.pyproject, facts.manifest_error = _toml(pyproject)
            system = (facts.pyproject or {}).get("build-system")
            if isinstance(system, dict):
                if isinstance(system.get("build-backend"), str):
                    facts.backend = system["build-backend"]
                    facts.requires = []
                if isinstance(system.get("requires"), list):
                    facts.requires = [str(r) for r in system["requires"]]
                if isinstance(system.get("backend-path"), list):
                    facts.backend_path = [str(p) for p in system["backend-path"]]
        if not facts.python_found or facts.manifest_error is not None:
            return facts
        payload = json.dumps({"backend": facts.backend, "backend_path": facts.backend_path,
                              "requires": facts.requires})
        try:
            out = subprocess.run([facts.python, "-c", _PY_PROBE, payload], cwd=project, env=dict(env),
                                 capture_output=True, text=True, timeout=60, check=False)
            if out.returncode == 0:
                facts.probe = json.loads(out.stdout.strip().splitlines()[-1])
            else:
                facts.probe_error = (out.stderr.strip().splitlines() or ["no output"])[-1]
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
            facts.probe_error = str(exc)
        return facts

    def config_findings(self, facts: PythonFacts) -> list[Finding]:
        if facts.manifest_error is not None:
            return [facts.manifest_error]
        if facts.pyproject is None and not facts.has_setup_py:
            return [Finding(severity="error", code="no-manifest", path=str(facts.project),
                            message="no pyproject.toml or setup.py: not a Python project")]
        found: list[Finding] = []
        pyproject = str(facts.project / "pyproject.toml")
        if facts.pyproject is not None:
            system = facts.pyproject.get("build-system")
            if system is None and not facts.has_setup_py:
                found.append(Finding(
                    severity="warning", code="no-build-system", path=pyproject,
                    message="no [build-system] table: falling back to setuptools' legacy backend"))
            elif system is not None and not isinstance(system, dict):
                found.append(Finding(severity="error", code="manifest-invalid", path=pyproject,
                                     message="[build-system] must be a table"))
            project = facts.pyproject.get("project")
            if isinstance(project, dict):
                if not project.get("name"):
                    found.append(Finding(severity="error", code="manifest-invalid", path=pyproject,
                                         message="[project] has no `name`"))
                if "version" not in project and "version" not in project.get("dynamic", []):
                    found.append(Finding(severity="error", code="manifest-invalid", path=pyproject,
                                         message="[project] has no `version` and does not declare it "
                                                 "dynamic"))
        if not re.fullmatch(r"[\w.]+(:[\w.]+)?", facts.backend):
            found.append(Finding(severity="error", code="manifest-invalid", path=pyproject,
                                 message=f"build-backend {facts.backend!r} is not `module` or "
                                         "`module:object`"))
        return found

    def dependency_findings(self, facts: PythonFacts) -> list[Finding]:
        if not facts.python_found:
            return [_missing_tool(facts.python, "install Python 3 or pass the interpreter to use")]
        if facts.probe is None:
            if facts.manifest_error is not None:
                return []
            return [Finding(severity="error", code="toolchain-broken",
                            message=f"cannot ask {facts.python} what it has installed: {facts.probe_error}")]
        if facts.probe["backend"] and not facts.probe["missing"]:
            return []
        missing = ", ".join(facts.probe["missing"])
        what = f"build backend {facts.backend!r}"
        if missing:
            what += f" (requirements not installed: {missing})"
        if facts.probe["build"]:
            return [Finding(severity="warning", code="backend-not-installed",
                            message=f"{what} is not installed in {facts.python}: `python -m build` will "
                                    "fetch it into an isolated environment (needs the package index)")]
        if facts.probe["pip"]:
            return [Finding(severity="warning", code="backend-not-installed",
                            message=f"{what} is not installed in {facts.python} and neither is `build`: "
                                    "pip builds the wheel in isolation (needs the package index) and no "
                                    "sdist is made; install the backend or `build` to get one")]
        return [Finding(severity="error", code="backend-not-installed",
                        message=f"{what} is not installed in {facts.python}, and neither `build` nor pip is")]

    def plan(self, facts: PythonFacts, output_dir: Path) -> BuildPlan:
        kinds = {".whl": "wheel", ".tar.gz": "sdist", ".zip": "sdist"}
        out = str(output_dir)
        probe = facts.probe or {}
        if probe.get("backend") and not probe.get("missing"):
            steps = tuple(
                BuildStep(argv=(facts.python, "-c", _PY_HOOK, kind, out, facts.backend, *facts.backend_path),
                          description=f"{kind} through {facts.backend} (no isolation)")
                for kind in ("sdist", "wheel")
            )
            return BuildPlan(language=self.language, steps=steps, artifact_kinds=kinds)
        if probe.get("build"):
            step = BuildStep(argv=(facts.python, "-m", "build", "--sdist", "--wheel", "--outdir", out, "."),
                             description="sdist and wheel in an isolated environment")
            return BuildPlan(language=self.language, steps=(step,), artifact_kinds=kinds)
        step = BuildStep(argv=(facts.python, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", out, "."),
                         description="wheel built by pip in an isolated environment")
        return BuildPlan(language=self.language, steps=(step,), artifact_kinds=kinds,
                         warnings=(f"no sdist: neither {facts.backend!r} nor `build` is installed",))


# ----------------------------------------------------------------------- javascript

_NPM_LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json")
_OTHER_LOCKFILES = {"yarn.lock": "yarn", "pnpm-lock.yaml": "pnpm", "bun.lockb": "bun"}


@dataclass
class JavaScriptFacts:
    project: Path
    package: dict[str, Any] | None = None
    manifest_error: Finding | None = None
    lockfile: str | None = None
    other_lockfiles: list[str] = field(default_factory=list)
    node: str | None = None
    npm: str | None = None


class JavaScriptBuilder(Builder[JavaScriptFacts]):
    """`npm ci` from the lockfile, `npm run build` when there is a build script, `npm pack`."""

    language = "javascript"
    markers = ("package.json",)

    def inspect(self, project: Path, env: Mapping[str, str], python: str) -> JavaScriptFacts:
        facts = JavaScriptFacts(project=project, node=_which("node", env), npm=_which("npm", env))
        manifest = project / "package.json"
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text())
                if isinstance(data, dict):
                    facts.package = data
                else:
                    facts.manifest_error = Finding(
                        severity="error", code="manifest-invalid", path=str(manifest),
                        message="package.json must hold a JSON object")
            except json.JSONDecodeError as exc:
                facts.manifest_error = Finding(
                    severity="error", code="manifest-invalid", path=str(manifest),
                    message=f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
            except (OSError, UnicodeDecodeError) as exc:
                facts.manifest_error = Finding(severity="error", code="manifest-unreadable", message=str(exc),
                                               path=str(manifest))
        facts.lockfile = next((name for name in _NPM_LOCKFILES if (project / name).is_file()), None)
        facts.other_lockfiles = [name for name in _OTHER_LOCKFILES if (project / name).is_file()]
        return facts

    def config_findings(self, facts: JavaScriptFacts) -> list[Finding]:
        manifest = str(facts.project / "package.json")
        if facts.manifest_error is not None:
            return [facts.manifest_error]
        if facts.package is None:
            return [Finding(severity="error", code="no-manifest", path=str(facts.project),
                            message="no package.json: not a JavaScript project")]
        found = [Finding(severity="error", code="manifest-invalid", path=manifest,
                         message=f"package.json has no `{key}`: npm pack needs it")
                 for key in ("name", "version") if not isinstance(facts.package.get(key), str)]
        scripts = facts.package.get("scripts", {})
        if not isinstance(scripts, dict):
            found.append(Finding(severity="error", code="manifest-invalid", path=manifest,
                                 message="`scripts` must be an object"))
        if facts.package.get("private") is True:
            found.append(Finding(severity="warning", code="private-package", path=manifest,
                                 message="package is private: it packs, but cannot be published"))
        return found

    def dependency_findings(self, facts: JavaScriptFacts) -> list[Finding]:
        found: list[Finding] = []
        if facts.node is None:
            found.append(_missing_tool("node", "install Node.js (Debian: nodejs)"))
        if facts.npm is None:
            found.append(_missing_tool("npm", "install npm (Debian: npm)"))
        if facts.lockfile is None:
            other = ", ".join(facts.other_lockfiles)
            hint = (f"found {other}, but only npm lockfiles are supported; " if other else "") + \
                "run `npm install` once and commit package-lock.json"
            found.append(Finding(severity="error", code="no-lockfile", path=str(facts.project),
                                 message=f"no package-lock.json or npm-shrinkwrap.json for `npm ci`: {hint}"))
        return found

    def plan(self, facts: JavaScriptFacts, output_dir: Path) -> BuildPlan:
        package = facts.package or {}
        scripts = package.get("scripts") or {}
        # Audit and funding calls are network chatter that a build does not need.
        steps = [BuildStep(argv=("npm", "ci", "--no-audit", "--no-fund"),
                           description="install from the lockfile")]
        if isinstance(scripts, dict) and "build" in scripts:
            steps.append(BuildStep(argv=("npm", "run", "build"), description="the package's build script"))
        steps.append(BuildStep(argv=("npm", "pack", "--pack-destination", str(output_dir)),
                               description="package tarball"))
        return BuildPlan(language=self.language, steps=tuple(steps), artifact_kinds={".tgz": "npm-package"})


# ------------------------------------------------------------------------------- go

_GO_MODULE = re.compile(r"^\s*module\s+(\"[^\"]+\"|\S+)", re.MULTILINE)
_GO_REQUIRE = re.compile(r"^\s*require\b", re.MULTILINE)


@dataclass
class GoFacts:
    project: Path
    gomod: str | None = None
    manifest_error: Finding | None = None
    has_go_files: bool = False
    has_vendor: bool = False
    go: str | None = None
    env: dict[str, str] = field(default_factory=dict)


class GoBuilder(Builder[GoFacts]):
    """`go build -o OUTDIR/ ./...`: every main package of the module becomes a binary."""

    language = "go"
    markers = ("go.mod",)

    def inspect(self, project: Path, env: Mapping[str, str], python: str) -> GoFacts:
        facts = GoFacts(project=project, go=_which("go", env),
                        env={k: env[k] for k in ("GOPROXY", "GOCACHE", "GOFLAGS", "HOME", "XDG_CACHE_HOME",
                                                  "GOTOOLCHAIN") if k in env})
        gomod = project / "go.mod"
        if gomod.is_file():
            try:
                facts.gomod = gomod.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                facts.manifest_error = Finding(severity="error", code="manifest-unreadable", message=str(exc),
                                               path=str(gomod))
        facts.has_go_files = any(project.rglob("*.go"))
        facts.has_vendor = (project / "vendor" / "modules.txt").is_file()
        return facts

    def config_findings(self, facts: GoFacts) -> list[Finding]:
        gomod = str(facts.project / "go.mod")
        if facts.manifest_error is not None:
            return [facts.manifest_error]
        if facts.gomod is None:
            return [Finding(severity="error", code="no-manifest", path=str(facts.project),
                            message="no go.mod: not a Go module (run `go mod init`)")]
        found: list[Finding] = []
        if _GO_MODULE.search(facts.gomod) is None:
            found.append(Finding(severity="error", code="manifest-invalid", path=gomod,
                                 message="go.mod has no `module` line"))
        if not facts.has_go_files:
            found.append(Finding(severity="error", code="no-sources", path=str(facts.project),
                                 message="no .go files in the module"))
        return found

    def dependency_findings(self, facts: GoFacts) -> list[Finding]:
        found: list[Finding] = []
        if facts.go is None:
            found.append(_missing_tool("go", "install Go (Debian: golang-go)"))
        if facts.gomod and _GO_REQUIRE.search(facts.gomod) and not facts.has_vendor \
                and not (facts.project / "go.sum").is_file():
            found.append(Finding(severity="error", code="no-lockfile", path=str(facts.project / "go.mod"),
                                 message="the module requires others but has no go.sum: run `go mod tidy`"))
        return found

    def plan(self, facts: GoFacts, output_dir: Path) -> BuildPlan:
        env: dict[str, str] = {}
        gomod = facts.gomod or ""
        # Nothing to download: make sure go never tries (offline machines, no surprises).
        if not _GO_REQUIRE.search(gomod) and "GOPROXY" not in facts.env:
            env["GOPROXY"] = "off"
        # A newer `go` line must not make go fetch a toolchain behind the build's back.
        if "GOTOOLCHAIN" not in facts.env:
            env["GOTOOLCHAIN"] = "local"
        # go refuses to run without a cache directory, and finds none without HOME.
        if not {"GOCACHE", "HOME", "XDG_CACHE_HOME"} & facts.env.keys():
            env["GOCACHE"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "cicd-mcp-go-build-cache")
        # The trailing separator makes go write one binary per main package into the directory.
        step = BuildStep(argv=("go", "build", "-trimpath", "-o", str(output_dir) + os.sep, "./..."), env=env,
                         description="binaries of the module's main packages")
        return BuildPlan(language=self.language, steps=(step,))


# ----------------------------------------------------------------------------- rust


@dataclass
class RustFacts:
    project: Path
    cargo_toml: dict[str, Any] | None = None
    manifest_error: Finding | None = None
    has_lock: bool = False
    cargo: str | None = None
    target_dir: Path | None = None
    bins: list[str] = field(default_factory=list)


def _rust_bins(project: Path, manifest: dict[str, Any]) -> list[str]:
    package = manifest.get("package") or {}
    declared = manifest.get("bin", [])
    names: list[str] = [str(b["name"]) for b in declared if isinstance(b, dict) and "name" in b]
    if package.get("autobins", True):
        if (project / "src" / "main.rs").is_file():
            names.append(str(package.get("name", "")))
        bin_dir = project / "src" / "bin"
        if bin_dir.is_dir():
            for entry in sorted(bin_dir.iterdir()):
                if entry.suffix == ".rs" and entry.is_file():
                    names.append(entry.stem)
                elif entry.is_dir() and (entry / "main.rs").is_file():
                    names.append(entry.name)
    return list(dict.fromkeys(n for n in names if n))


class RustBuilder(Builder[RustFacts]):
    """`cargo build --release`, then each binary copied from the target directory."""

    language = "rust"
    markers = ("Cargo.toml",)

    def inspect(self, project: Path, env: Mapping[str, str], python: str) -> RustFacts:
        facts = RustFacts(project=project, cargo=_which("cargo", env),
                          has_lock=(project / "Cargo.lock").is_file())
        manifest = project / "Cargo.toml"
        if manifest.is_file():
            facts.cargo_toml, facts.manifest_error = _toml(manifest)
            if facts.cargo_toml is not None:
                facts.bins = _rust_bins(project, facts.cargo_toml)
        target = env.get("CARGO_TARGET_DIR")
        facts.target_dir = Path(target) if target else project / "target"
        if not facts.target_dir.is_absolute():
            facts.target_dir = project / facts.target_dir
        return facts

    def config_findings(self, facts: RustFacts) -> list[Finding]:
        manifest = str(facts.project / "Cargo.toml")
        if facts.manifest_error is not None:
            return [facts.manifest_error]
        if facts.cargo_toml is None:
            return [Finding(severity="error", code="no-manifest", path=str(facts.project),
                            message="no Cargo.toml: not a Rust crate")]
        package = facts.cargo_toml.get("package")
        if not isinstance(package, dict):
            kind = "a workspace manifest" if "workspace" in facts.cargo_toml else "missing [package]"
            return [Finding(severity="error", code="manifest-invalid", path=manifest,
                            message=f"Cargo.toml is {kind}: build a member crate's directory")]
        if not isinstance(package.get("name"), str):
            return [Finding(severity="error", code="manifest-invalid", path=manifest,
                            message="[package] has no `name`")]
        if not facts.bins:
            return [Finding(severity="warning", code="no-binaries", path=manifest,
                            message="the crate has no binary target: it builds, but nothing is copied out")]
        return []

    def dependency_findings(self, facts: RustFacts) -> list[Finding]:
        found: list[Finding] = []
        if facts.cargo is None:
            found.append(_missing_tool("cargo", "install Rust (rustup, or Debian: cargo)"))
        if not facts.has_lock:
            found.append(Finding(severity="warning", code="no-lockfile", path=str(facts.project),
                                 message="no Cargo.lock: dependency versions are resolved afresh (not "
                                         "reproducible); commit Cargo.lock for binaries"))
        return found

    def plan(self, facts: RustFacts, output_dir: Path) -> BuildPlan:
        build = ("cargo", "build", "--release") + (("--locked",) if facts.has_lock else ())
        steps = [BuildStep(argv=build, description="release build")]
        release = (facts.target_dir or facts.project / "target") / "release"
        steps += [BuildStep(argv=("cp", "--", str(release / name), str(output_dir / name)),
                            description=f"copy the {name} binary out") for name in facts.bins]
        return BuildPlan(language=self.language, steps=tuple(steps), expects_artifacts=bool(facts.bins),
                         warnings=() if facts.bins else ("library crate: no binary to copy",))


# ------------------------------------------------------------------------- registry

BUILDERS: dict[str, Callable[[], Builder[Any]]] = {
    "python": PythonBuilder,
    "javascript": JavaScriptBuilder,
    "go": GoBuilder,
    "rust": RustBuilder,
}
# The pipeline language checks `language:` against its own list (it must not import the builders).
if set(BUILDERS) != LANGUAGES:  # pragma: no cover - a builder added on one side only
    raise RuntimeError(f"engine.spec.model.LANGUAGES {sorted(LANGUAGES)} and the builders {sorted(BUILDERS)} differ")


def get_builder(language: str) -> Builder[Any]:
    """The builder for `language` (not `auto`).

    Raises:
        InputError: no such language.
    """
    factory = BUILDERS.get(language)
    if factory is None:
        known = ", ".join(sorted(BUILDERS))
        raise InputError(f"unknown build language {language!r}; known: {known}, or auto")
    return factory()


def detect_language(project: Path) -> str:
    """The one language whose marker files are at the project root.

    Raises:
        InputError: no marker found, or markers of several languages (name one explicitly).
    """
    hits = {name: [m for m in factory().markers if (project / m).is_file()]
            for name, factory in BUILDERS.items()}
    found = {name: markers for name, markers in hits.items() if markers}
    if not found:
        wanted = ", ".join(f"{m} ({name})" for name, f in BUILDERS.items() for m in f().markers)
        raise InputError(f"{project}: cannot detect the language: none of {wanted} is there")
    if len(found) > 1:
        seen = "; ".join(f"{name} ({', '.join(m)})" for name, m in sorted(found.items()))
        raise InputError(f"{project}: several languages detected: {seen}; pass the language explicitly")
    return next(iter(found))
