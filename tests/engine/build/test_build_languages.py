"""The pure side of builds: language detection, preflight findings and planned commands."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from engine.build import (
    detect_language,
    standard_build_commands,
    validate_build_config,
    validate_build_dependencies,
)
from engine.errors import InputError, NotFoundError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "projects"


def _copy(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(FIXTURES / name, dest)
    return dest


@pytest.mark.parametrize("language", ["python", "javascript", "go", "rust"])
def test_detects_each_fixture(language: str) -> None:
    assert detect_language(FIXTURES / language) == language


def test_detect_refuses_to_guess_between_languages(tmp_path: Path) -> None:
    project = _copy("javascript", tmp_path)
    (project / "pyproject.toml").write_text("[project]\nname='x'\nversion='1'\n")
    with pytest.raises(InputError, match=r"several languages detected: javascript \(package.json\); python"):
        detect_language(project)


def test_detect_says_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot detect the language: none of .*go.mod \(go\)"):
        detect_language(tmp_path)


def test_unknown_language_and_missing_project_are_input_errors(tmp_path: Path) -> None:
    known = "known: go, javascript, python, rust"
    with pytest.raises(InputError, match=f"unknown build language 'cobol'; {known}"):
        validate_build_config(FIXTURES / "python", "cobol")
    with pytest.raises(NotFoundError, match="does not exist"):
        validate_build_config(tmp_path / "nope", "python")


@pytest.mark.parametrize("language", ["python", "javascript", "go", "rust"])
def test_fixtures_pass_preflight(language: str) -> None:
    assert validate_build_config(FIXTURES / language, language) == []
    findings = validate_build_dependencies(FIXTURES / language, language)
    assert [f for f in findings if f.severity == "error"] == []


def test_broken_package_json_names_file_and_line(tmp_path: Path) -> None:
    project = _copy("javascript", tmp_path)
    (project / "package.json").write_text('{\n  "name": "x",\n  "version": 1.0.0\n}\n')
    [finding] = validate_build_config(project, "javascript")
    assert finding.severity == "error"
    assert finding.path == str(project / "package.json")
    assert "line 3" in finding.message


def test_package_json_without_version_is_an_error(tmp_path: Path) -> None:
    project = _copy("javascript", tmp_path)
    (project / "package.json").write_text('{"name": "x"}')
    assert [f.message for f in validate_build_config(project, "javascript")] == [
        "package.json has no `version`: npm pack needs it"
    ]


def test_missing_npm_lockfile_is_reported_with_the_fix(tmp_path: Path) -> None:
    project = _copy("javascript", tmp_path)
    (project / "package-lock.json").unlink()
    (project / "yarn.lock").write_text("")
    [finding] = validate_build_dependencies(project, "javascript")
    assert finding.code == "no-lockfile"
    assert "found yarn.lock, but only npm lockfiles are supported" in finding.message
    assert "npm install" in finding.message


def test_toolchain_not_on_path_is_reported(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    findings = validate_build_dependencies(FIXTURES / "rust", "rust", env={"PATH": str(empty)})
    assert [(f.code, f.severity) for f in findings] == [("toolchain-missing", "error")]
    assert "`cargo` is not on PATH" in findings[0].message
    findings = validate_build_dependencies(FIXTURES / "go", "go", env={"PATH": str(empty)})
    assert [f.code for f in findings] == ["toolchain-missing"]
    assert "golang-go" in findings[0].message


def test_bad_cargo_toml_names_the_line(tmp_path: Path) -> None:
    project = _copy("rust", tmp_path)
    (project / "Cargo.toml").write_text('[package]\nname = "x"\nversion = \n')
    [finding] = validate_build_config(project, "rust")
    assert finding.code == "manifest-invalid"
    assert "line 3" in finding.message


def test_cargo_workspace_manifest_is_refused(tmp_path: Path) -> None:
    project = _copy("rust", tmp_path)
    (project / "Cargo.toml").write_text('[workspace]\nmembers = ["a"]\n')
    [finding] = validate_build_config(project, "rust")
    assert "workspace manifest" in finding.message


def test_rust_without_lockfile_is_a_warning_not_an_error(tmp_path: Path) -> None:
    project = _copy("rust", tmp_path)
    (project / "Cargo.lock").unlink()
    [finding] = validate_build_dependencies(project, "rust")
    assert (finding.code, finding.severity) == ("no-lockfile", "warning")


def test_go_mod_without_module_line(tmp_path: Path) -> None:
    project = _copy("go", tmp_path)
    (project / "go.mod").write_text("go 1.19\n")
    assert [f.message for f in validate_build_config(project, "go")] == ["go.mod has no `module` line"]


def test_python_backend_not_installed_falls_back_with_a_warning(tmp_path: Path) -> None:
    project = _copy("python", tmp_path)
    text = (project / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(
        text.replace('requires = ["hatchling"]', 'requires = ["no-such-backend-pkg>=1"]')
        .replace('build-backend = "hatchling.build"', 'build-backend = "no_such_backend"'))
    [finding] = validate_build_dependencies(project, "python")
    assert finding.code == "backend-not-installed"
    assert "no-such-backend-pkg>=1" in finding.message
    commands = standard_build_commands("python", project)
    # Without the backend there is no in-process build: an isolated build takes over.
    assert all("-c" not in c for c in commands)
    assert any(c[1:3] == ["-m", "build"] or c[1:4] == ["-m", "pip", "wheel"] for c in commands)


def test_python_plan_calls_the_installed_backend_for_sdist_and_wheel() -> None:
    commands = standard_build_commands("python", FIXTURES / "python", "out", python=sys.executable)
    assert [c[3:6] for c in commands] == [
        ["sdist", "out", "hatchling.build"], ["wheel", "out", "hatchling.build"]
    ]
    assert all(c[:2] == [sys.executable, "-c"] for c in commands)


def test_javascript_plan_runs_the_build_script_only_when_there_is_one(tmp_path: Path) -> None:
    assert standard_build_commands("javascript", FIXTURES / "javascript") == [
        ["npm", "ci", "--no-audit", "--no-fund"],
        ["npm", "run", "build"],
        ["npm", "pack", "--pack-destination", "dist"],
    ]
    project = _copy("javascript", tmp_path)
    (project / "package.json").write_text('{"name": "x", "version": "1.0.0"}')
    assert ["npm", "run", "build"] not in standard_build_commands("javascript", project)


def test_go_plan_keeps_go_offline_when_nothing_is_required() -> None:
    [command] = standard_build_commands("go", FIXTURES / "go", "out")
    assert command[0] == "env"
    assert "GOPROXY=off" in command
    assert command[command.index("go"):] == ["go", "build", "-trimpath", "-o", "out/", "./..."]


def test_rust_plan_copies_every_binary(tmp_path: Path) -> None:
    project = _copy("rust", tmp_path)
    (project / "src" / "bin").mkdir()
    (project / "src" / "bin" / "tool.rs").write_text("fn main() {}\n")
    commands = standard_build_commands("rust", project, "out")
    assert commands[0] == ["cargo", "build", "--release", "--locked"]
    assert [c[-1] for c in commands[1:]] == ["out/hello-rs", "out/tool"]


def test_standard_build_commands_refuses_an_invalid_project(tmp_path: Path) -> None:
    project = _copy("go", tmp_path)
    (project / "go.mod").write_text("")
    with pytest.raises(InputError, match="go.mod has no `module` line"):
        standard_build_commands("auto", project)
