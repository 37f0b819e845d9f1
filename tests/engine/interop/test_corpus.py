"""Real repositories' workflows (tests/fixtures/workflows, see its MANIFEST.md): a fast representative
subset here; bench/workflows.py runs them all."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from engine.interop import import_github_workflow, pipeline_data
from engine.pipeline.manager import PipelineManager
from engine.pipeline.states import JobStatus, RunStatus
from engine.spec.model import load_pipeline

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "workflows"

# Jobs GitHub makes of each file (its matrix expansion), as counted in bench/workflows_report.md;
# attrs' and structlog's ci.yml test on the 6 Pythons of their classifiers (build-and-inspect's output).
GITHUB_JOBS = {
    "Textualize__rich/codespell.yml": 1, "Textualize__rich/pythonpackage.yml": 20, "axios__axios/ci.yml": 6,
    "axios__axios/pr.yml": 1, "chalk__chalk/main.yml": 2, "encode__httpx/test-suite.yml": 5,
    "expressjs__express/ci.yml": 20, "expressjs__express/legacy.yml": 5, "gin-gonic__gin/codeql.yml": 1,
    "gin-gonic__gin/gin.yml": 21, "hynek__structlog/ci.yml": 14, "hynek__structlog/pypi-package.yml": 3,
    "pallets__click/nightly.yaml": 24, "pallets__click/pre-commit.yaml": 1, "pallets__click/tests.yaml": 10,
    "pallets__flask/pre-commit.yaml": 1, "pallets__flask/tests.yaml": 12, "pallets__itsdangerous/tests.yaml": 8,
    "pallets__markupsafe/tests.yaml": 9, "psf__requests/lint.yml": 1, "psf__requests/run-tests.yml": 25,
    "psf__requests/typecheck.yml": 2, "python-attrs__attrs/ci.yml": 14, "python-attrs__attrs/codspeed.yml": 2,
    "python-attrs__attrs/pypi-package.yml": 3, "python-attrs__attrs/zizmor.yml": 1,
    "sirupsen__logrus/ci.yaml": 12, "spf13__cobra/test.yml": 19, "spf13__viper/checks.yaml": 1,
    "spf13__viper/ci.yaml": 32, "stretchr__testify/main.yml": 11, "tj__commander.js/tests.yml": 9,
}


def _files() -> list[str]:
    return sorted(f"{p.parents[2].name}/{p.name}" for p in CORPUS.glob("*/.github/workflows/*.y*ml"))


def test_the_corpus_is_what_the_table_counts() -> None:
    assert _files() == sorted(GITHUB_JOBS)


@pytest.mark.parametrize("name", sorted(GITHUB_JOBS))
def test_every_corpus_file_imports_with_githubs_jobs(name: str) -> None:
    repo, file = name.split("/")
    imported = import_github_workflow(CORPUS / repo / ".github" / "workflows" / file, environ={})
    plan = load_pipeline(pipeline_data(imported.spec))
    assert len(plan.jobs) == GITHUB_JOBS[name]


def _checkout(tmp_path: Path, repo: str) -> Path:
    dest = tmp_path / "repo"
    shutil.copytree(CORPUS / repo, dest)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "fixture"], cwd=dest, check=True)
    return dest


def test_a_job_with_an_action_that_has_no_native_version_fails_alone_with_its_line(tmp_path: Path) -> None:
    # viper's ci.yaml: golangci-lint-action and install-nix-action have no native version here;
    # those jobs fail with the line; dependency-review (pull requests only) is skipped on a push.
    repo = _checkout(tmp_path, "spf13__viper")
    imported = import_github_workflow(repo / ".github" / "workflows" / "ci.yaml", branch="master")
    assert set(imported.unsupported) == {"lint", "dev", "dependency-review"}
    assert "golangci/golangci-lint-action" in imported.unsupported["lint"][0]
    assert "(line 84)" in imported.unsupported["lint"][0]
    wf = load_pipeline(pipeline_data(imported.spec))
    assert wf.jobs["dependency-review"].condition is not None
    assert wf.jobs["dependency-review"].condition.evaluate({"event": "push"}, {}) is False


@pytest.mark.slow
def test_a_release_workflow_builds_natively_and_skips_its_releases(tmp_path: Path) -> None:
    # structlog's pypi-package.yml: build-and-inspect-python-package runs natively (build, twine,
    # check-wheel-contents from PyPI); the two releases' if: is false for a push from here.
    repo = _checkout(tmp_path, "hynek__structlog")
    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(repo / ".github" / "workflows" / "pypi-package.yml")
    assert {n: j.status for n, j in run.jobs.items()} == {
        "build-package": JobStatus.SUCCEEDED, "release-test-pypi": JobStatus.SKIPPED,
        "release-pypi": JobStatus.SKIPPED}, manager.read_log(run.run_id, "build-package").text[-3000:]
    assert run.status == RunStatus.SUCCEEDED
    assert sorted(a.path.split("-")[0] for a in run.jobs["build-package"].artifacts) == ["dist/structlog"] * 2


def test_a_pull_request_only_workflow_on_push_runs_nothing_and_says_so(tmp_path: Path) -> None:
    repo = _checkout(tmp_path, "spf13__viper")
    from engine.cli import main

    code = main(["--workspace", str(tmp_path / "ws"), "run", str(repo / ".github" / "workflows" / "checks.yaml"),
                 "-q"])
    assert code == 1
    run = PipelineManager(tmp_path / "ws").list_runs()[0]
    assert run.status == RunStatus.SKIPPED


@pytest.mark.slow
def test_itsdangerous_tests_run_green_on_the_installed_pythons(tmp_path: Path) -> None:
    # Real toolchains: uv from PyPI, tox, the pyenv Pythons 3.10-3.13; PyPy fails with the reason.
    repo = _checkout(tmp_path, "pallets__itsdangerous")
    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(repo / ".github" / "workflows" / "tests.yaml")
    statuses = {n.split("[")[1].rstrip("]") if "[" in n else n: j.status for n, j in run.jobs.items()}
    for python in ("3.13", "3.12", "3.11", "3.10"):
        assert statuses[f"python={python}"] == JobStatus.SUCCEEDED, manager.read_log(
            run.run_id, next(n for n in run.jobs if n.endswith(f"[python={python}]"))).text[-3000:]
    assert statuses["typing"] == JobStatus.SUCCEEDED
    assert statuses["name=Windows,python=3.13,os=windows-latest"] == JobStatus.SKIPPED
    assert statuses["name=PyPy,python=pypy-3.11,tox=pypy311"] == JobStatus.FAILED
    pypy = next(n for n in run.jobs if "PyPy" in n)
    assert "PyPy and GraalPy are not supported locally" in manager.read_log(run.run_id, pypy).text
    assert run.status == RunStatus.FAILED
