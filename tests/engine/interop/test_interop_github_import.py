"""GitHub Actions workflows imported and run on the engine for real (PipelineManager, real processes)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.errors import NotFoundError, SpecError
from engine.interop import import_github_workflow, is_github_workflow, load_github_workflow, pipeline_data
from engine.pipeline.manager import PipelineManager
from engine.pipeline.states import JobStatus, RunStatus
from engine.spec.model import load_pipeline

WORKFLOWS = Path(__file__).parent / "workflows"
PROJECTS = Path(__file__).resolve().parents[2] / "fixtures" / "projects"


def _repo(tmp_path: Path, workflow: str, project: str | None = None) -> Path:
    """A checkout: a project (or an empty tree) with the workflow under .github/workflows/."""
    repo = tmp_path / "repo"
    if project:
        shutil.copytree(PROJECTS / project, repo)
    else:
        repo.mkdir()
    (repo / "sub").mkdir(exist_ok=True)
    flows = repo / ".github" / "workflows"
    flows.mkdir(parents=True)
    shutil.copy(WORKFLOWS / workflow, flows / workflow)
    return flows / workflow


def _statuses(run: object) -> dict[str, JobStatus]:
    return {name: job.status for name, job in run.jobs.items()}  # type: ignore[attr-defined]


def test_python_package_workflow_runs_with_matrix_artifacts_and_publish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _repo(tmp_path, "python-package.yml", "python")
    monkeypatch.setenv("PYPI_TOKEN", "s3cr3t-token-value")
    imported = import_github_workflow(path)
    assert imported.unsupported == {}
    assert imported.spec.secrets == ["PYPI_TOKEN"]
    plan = load_pipeline(pipeline_data(imported.spec))
    assert plan.graph == {
        "lint": [],
        "test[python_version=3,suite=unit]": ["lint"],
        "test[python_version=3,suite=smoke]": ["lint"],
        "build": ["test[python_version=3,suite=unit]", "test[python_version=3,suite=smoke]"],
        "publish": ["build"],
    }
    assert plan.jobs["test[python_version=3,suite=unit]"].timeout == 600

    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(pipeline_data(imported.spec), branch="main", event="push")
    assert run.status == RunStatus.SUCCEEDED, {n: (j.status, j.reason) for n, j in run.jobs.items()}
    assert set(_statuses(run).values()) == {JobStatus.SUCCEEDED}
    unit = manager.read_log(run.run_id, "test[python_version=3,suite=unit]").text
    assert "unit suite passed on 0.1.0" in unit
    [wheel] = run.jobs["build"].artifacts
    assert wheel.path == "dist/hello_py-0.1.0-py3-none-any.whl"
    publish = manager.read_log(run.run_id, "publish").text
    assert "would upload with token" in publish
    assert "s3cr3t-token-value" not in publish   # declared as a secret, so masked


def test_publish_is_skipped_on_pull_requests(tmp_path: Path) -> None:
    path = _repo(tmp_path, "python-package.yml", "python")
    spec = import_github_workflow(path, environ={}).spec
    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(pipeline_data(spec), branch="feature", event="pull_request")
    statuses = _statuses(run)
    assert statuses["build"] == JobStatus.SUCCEEDED
    assert statuses["publish"] == JobStatus.SKIPPED
    assert "is false" in (run.jobs["publish"].reason or "")
    assert run.status == RunStatus.SUCCEEDED


def test_step_semantics_working_directory_shells_conditions_and_failures(tmp_path: Path) -> None:
    path = _repo(tmp_path, "steps.yml")
    spec = load_github_workflow(path)
    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(pipeline_data(spec), branch="main", event="push")
    statuses = _statuses(run)
    assert statuses == {"steps": JobStatus.FAILED, "after": JobStatus.SUCCEEDED,
                        "dependent": JobStatus.SKIPPED}
    assert run.status == RunStatus.FAILED
    log = manager.read_log(run.run_id, "steps").text
    for expected in (
        "sh says job",                                  # sh shell, job env
        "step push",                                    # python shell, step env with an expression
        "pushed",                                       # step if: on the event
        "'step 5 (Allowed to fail) failed; continue-on-error".strip("'"),
        "step 7 (Only on pull requests) skipped: its if: is false",
        "step 9 (Skipped after a failure) skipped",
        "cleanup after failure",                        # if: failure() runs after the failed step
    ):
        assert expected in log, expected
    assert "step 8 (Fails) failed" in log
    assert "step 11 (Always runs) failed" not in log   # it checks that step 9 did not run
    assert "after runs although steps failed" in manager.read_log(run.run_id, "after").text


def test_unsupported_uses_fails_the_job_with_the_reason(tmp_path: Path) -> None:
    path = _repo(tmp_path, "unsupported.yml")
    imported = import_github_workflow(path)
    assert set(imported.unsupported) == {"test"}
    assert "uses example-org/setup-thing@v5, which is not supported locally" in imported.unsupported["test"][0]
    assert "line 8" in imported.unsupported["test"][0]
    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(pipeline_data(imported.spec))
    statuses = _statuses(run)
    # A non-Linux runner skips that job with the reason (as it skips those matrix combinations).
    assert statuses == {"test": JobStatus.FAILED, "windows": JobStatus.SKIPPED, "plain": JobStatus.SUCCEEDED,
                        "report": JobStatus.SKIPPED}
    assert "runs-on `windows-latest`: only Linux jobs run here" in (run.jobs["windows"].reason or "")
    log = manager.read_log(run.run_id, "test").text
    assert "cannot run locally: step 2 uses example-org/setup-thing@v5" in log
    assert "--skip-unsupported" in log


def test_skip_unsupported_skips_those_jobs_and_says_why(tmp_path: Path) -> None:
    path = _repo(tmp_path, "unsupported.yml")
    spec = load_github_workflow(path, skip_unsupported=True)
    run = PipelineManager(tmp_path / "ws").run_pipeline(pipeline_data(spec))
    statuses = _statuses(run)
    assert statuses["test"] == JobStatus.SKIPPED
    assert statuses["windows"] == JobStatus.SKIPPED
    assert statuses["plain"] == JobStatus.SUCCEEDED
    assert "not supported locally (skipped with --skip-unsupported)" in (run.jobs["test"].reason or "")
    assert "example-org/setup-thing@v5" in (run.jobs["test"].reason or "")


def test_detects_workflow_files(tmp_path: Path) -> None:
    path = _repo(tmp_path, "steps.yml")
    assert is_github_workflow(path)
    assert is_github_workflow({"on": "push", "jobs": {"a": {}}})
    assert not is_github_workflow({"name": "p", "stages": []})
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text("name: p\nstages:\n  - name: s\n    jobs:\n      - name: j\n"
                        "        commands: [true]\n")
    assert not is_github_workflow(pipeline)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("jobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: nope\n    steps:\n      - run: true\n",
         r"ci.yml:5:\d+: jobs.a.needs: needs 'nope', which is not a job; jobs: a"),
        ("jobs:\n  a:\n    runs-on: ubuntu-latest\n    env:\n      BAD-NAME: x\n    steps:\n"
         "      - run: true\n",
         r"ci.yml:6:\d+: jobs.a.env.BAD-NAME: env name 'BAD-NAME' must match"),
        ("on: push\n", r"ci.yml:.*jobs: a workflow needs a `jobs:` mapping"),
        ("jobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: true\n  b:\n    needs: a\n"
         "    runs-on: ubuntu-latest\n    steps:\n      - run: true\n  a2:\n    needs: b\n    runs-on: x\n"
         "    steps: [{run: true}]\nbogus: 1\n",
         r"ci.yml:16:1: bogus: workflow key `bogus:` is not supported"),
    ],
)
def test_invalid_workflows_name_file_line_and_field(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "ci.yml"
    path.write_text("on: push\n" + body if not body.startswith("on:") else body)
    with pytest.raises(SpecError, match=message):
        import_github_workflow(path)


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        import_github_workflow(tmp_path / "nope.yml")


def test_needs_cycle_is_reported_by_the_engine(tmp_path: Path) -> None:
    path = tmp_path / "ci.yml"
    path.write_text("on: push\njobs:\n  a:\n    needs: b\n    runs-on: l\n    steps: [{run: 'true'}]\n"
                    "  b:\n    needs: a\n    runs-on: l\n    steps: [{run: 'true'}]\n")
    with pytest.raises(SpecError, match="dependency cycle"):
        import_github_workflow(path)


def test_publish_job_on_tags_only_is_imported_and_skipped_on_a_branch(tmp_path: Path) -> None:
    wf = tmp_path / ".github" / "workflows" / "release.yml"
    wf.parent.mkdir(parents=True)
    wf.write_text(
        "on: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo testing\n"
        "  publish:\n    needs: test\n    if: startsWith(github.ref, 'refs/tags/')\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo publishing\n")
    from engine.pipeline.manager import PipelineManager

    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(wf, branch="main")
    assert run.jobs["test"].status == "succeeded"
    assert run.jobs["publish"].status == "skipped"
    assert "startsWith" in (run.jobs["publish"].reason or "")


def _git_repo(tmp_path: Path, workflow: str) -> Path:
    path = _repo(tmp_path, workflow)
    repo = path.parents[2]
    (repo / "deps.txt").write_text("a\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    return path


def test_runner_files_contexts_outputs_cache_and_matrix_as_github(tmp_path: Path) -> None:
    path = _git_repo(tmp_path, "runner-env.yml")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path.parents[2], capture_output=True, text=True,
                         check=True).stdout.strip()
    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(path)
    statuses = _statuses(run)
    assert statuses == {
        "produce": "succeeded", "consume": "succeeded",
        "matrix.1[os=ubuntu-latest,py=3.11,extra=only-in-include]": "succeeded",
        "matrix.2[os=ubuntu-latest,py=3.12,extra=only-in-include]": "succeeded",
        "matrix.3[os=windows-latest,py=3.12]": "skipped",
        "release": "skipped", "after-release": "skipped", "with-services": "failed",
    }
    # Only the job with services: fails, with its line; the job skipped by its if: skips its
    # dependent without failing anything.
    assert run.status == RunStatus.FAILED and run.reason == "failed jobs: with-services"
    assert "`services:` needs the docker executor" in manager.read_log(run.run_id, "with-services").text
    assert "(line 94)" in manager.read_log(run.run_id, "with-services").text
    assert "only Linux jobs run here" in (run.jobs["matrix.3[os=windows-latest,py=3.12]"].reason or "")
    assert "repository_owner" in (run.jobs["release"].reason or "")
    assert run.jobs["after-release"].reason == "needed job release was skipped"
    log = manager.read_log(run.run_id, "produce").text
    for expected in ("env file: set by step 2", "output: 42", "tool on path", "mode=step", "loop a", "loop b",
                     "ci=true actions=true os=Linux event=push ref=refs/heads/main", f"sha={sha}", "branch step ran",
                     "step 5 (Never) skipped: its if: is false", "## summary line", "cache: no entry"):
        assert expected in log, expected
    assert "never printed" not in log
    assert log.count(sha) >= 2                                   # fetch-depth: 0 -> the job sees .git
    consume = manager.read_log(run.run_id, "consume").text
    assert "answer=42 level=" in consume                       # inputs are empty on push
    assert "kept" in consume and "hit=true" in consume
    combo = manager.read_log(run.run_id, "matrix.1[os=ubuntu-latest,py=3.11,extra=only-in-include]").text
    assert "combo ubuntu-latest 3.11 only-in-include" in combo


def test_workflow_dispatch_inputs_and_an_event_the_workflow_does_not_run_on(tmp_path: Path) -> None:
    path = _git_repo(tmp_path, "runner-env.yml")
    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(path, {"level": "debug"}, event="workflow_dispatch")
    assert "answer=42 level=debug" in manager.read_log(run.run_id, "consume").text
    nothing = manager.run_pipeline(path, event="pull_request")
    assert nothing.status == RunStatus.SKIPPED
    assert nothing.reason == "nothing ran: every job was skipped"
    assert "does not run on pull_request" in (nothing.jobs["produce"].reason or "")
    assert "does not run on pull_request" in " ".join(json.loads(nothing.context["import_warnings"]))


def test_cli_run_exits_non_zero_when_nothing_ran_unless_allow_empty(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    path = _git_repo(tmp_path, "runner-env.yml")
    ws = str(tmp_path / "ws")
    assert main(["--workspace", ws, "run", str(path), "-q", "--event", "pull_request"]) == 1
    out = capsys.readouterr()
    assert "status skipped" in out.out and "warning: the workflow does not run on pull_request" in out.out
    assert "nothing ran" in out.err
    assert main(["--workspace", ws, "run", str(path), "-q", "--event", "pull_request", "--allow-empty"]) == 0


def test_step_level_if_with_functions_does_not_crash_the_cli(tmp_path: Path) -> None:
    wf = tmp_path / ".github" / "workflows" / "ci.yml"
    wf.parent.mkdir(parents=True)
    wf.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                  "      - if: startsWith(github.ref, 'refs/tags/') || contains(github.event_name, 'push')\n"
                  "        run: echo yes-${{ format('{0}', github.event_name) }}\n"
                  "      - if: ${{ fromJSON('[1]')[0] == 2 }}\n        run: echo no\n")
    from engine.cli import main

    assert main(["--workspace", str(tmp_path / "ws"), "run", str(wf), "-q"]) == 0
    run = PipelineManager(tmp_path / "ws").list_runs()[0]
    log = PipelineManager(tmp_path / "ws").read_log(run.run_id, "a").text
    assert "yes-push" in log and "step 2 skipped: its if: is false" in log


def test_strategy_fail_fast_and_max_parallel_act_as_on_github(tmp_path: Path) -> None:
    # Default fail-fast: the failing combination cancels its running sibling, not the other job.
    # An include makes the import expand one engine job per combination (matrix_group keeps them one matrix).
    wf = tmp_path / ".github" / "workflows" / "ci.yml"
    wf.parent.mkdir(parents=True)
    wf.write_text("on: push\njobs:\n"
                  "  tests:\n    runs-on: ubuntu-latest\n    strategy:\n      max-parallel: 2\n"
                  "      matrix:\n        n: [1, 2, 3]\n        include: [{n: 2, slow: true}]\n    steps:\n"
                  "      - run: if [ ${{ matrix.n }} = 1 ]; then sleep 1; exit 1; fi; sleep 60\n"
                  "  other:\n    runs-on: ubuntu-latest\n    steps:\n      - run: sleep 2\n"
                  "  relaxed:\n    runs-on: ubuntu-latest\n    strategy:\n      fail-fast: false\n"
                  "      matrix:\n        n: [1, 2]\n    steps:\n"
                  "      - run: if [ ${{ matrix.n }} = 1 ]; then exit 1; fi; sleep 2\n")
    imported = import_github_workflow(wf)
    assert not any("fail-fast" in w or "max-parallel" in w for w in imported.warnings), imported.warnings
    run = PipelineManager(tmp_path / "ws").run_pipeline(pipeline_data(imported.spec), branch="main", event="push")
    by_base = {n: (j.status, j.reason) for n, j in run.jobs.items()}
    tests = sorted((n, s) for n, (s, _) in by_base.items() if n.startswith("tests"))
    assert [s for _, s in tests] == [JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.CANCELLED], by_base
    assert all("fail-fast: tests.1" in (r or "") for n, (s, r) in by_base.items() if s == JobStatus.CANCELLED)
    assert run.jobs["tests.3[n=3]"].started_at is None   # queued behind max-parallel 2, never started
    assert by_base["other"][0] == JobStatus.SUCCEEDED
    relaxed = {n: s for n, (s, _) in by_base.items() if n.startswith("relaxed")}
    assert sorted(relaxed.values()) == sorted([JobStatus.FAILED, JobStatus.SUCCEEDED]), relaxed


def test_a_full_history_checkout_sees_the_git_history_the_sandbox_hides(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`fetch-depth: 0` gives the job the repository's history even where the sandbox hides the source
    (a repository under /tmp): a version from git tags (hatch-vcs, setuptools-scm) needs it."""
    from engine.pipeline.executors.sandbox import WRITABLE_ENV, sandbox_unavailable

    why = sandbox_unavailable()
    if why is not None or not tmp_path.resolve().is_relative_to("/tmp"):  # noqa: S108 - what the sandbox hides
        pytest.skip(why or "the test directory is not under /tmp")
    monkeypatch.delenv(WRITABLE_ENV, raising=False)
    wf = tmp_path / "repo" / ".github" / "workflows" / "ci.yml"
    wf.parent.mkdir(parents=True)
    wf.write_text("on: push\njobs:\n"
                  "  history:\n    runs-on: ubuntu-latest\n    steps:\n"
                  "      - uses: actions/checkout@v4\n        with:\n          fetch-depth: 0\n"
                  "      - run: echo \"described $(git describe --tags) dirty=$(git status --porcelain | wc -l)\"\n"
                  "  shallow:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n"
                  "      - run: test ! -e .git\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"], ["tag", "v1.2.3"]):
        subprocess.run([*git, *args], cwd=tmp_path / "repo", check=True)
    data = pipeline_data(import_github_workflow(wf, environ={}).spec)
    jobs = {j["name"]: j for stage in data["stages"] for j in stage["jobs"]}
    assert jobs["history"]["git"] is True and jobs["shallow"]["git"] is False
    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(wf)
    assert _statuses(run) == {"history": "succeeded", "shallow": "succeeded"}
    assert "described v1.2.3 dirty=0" in manager.read_log(run.run_id, "history").text


def test_no_fail_fast_lets_every_combination_run_to_its_end(tmp_path: Path) -> None:
    # Locally a combination may fail for want of a toolchain; `run --no-fail-fast` still shows the others.
    wf = tmp_path / ".github" / "workflows" / "ci.yml"
    wf.parent.mkdir(parents=True)
    wf.write_text("on: push\njobs:\n  tests:\n    runs-on: ubuntu-latest\n    strategy:\n"
                  "      matrix:\n        n: [1, 2]\n    steps:\n"
                  "      - run: if [ ${{ matrix.n }} = 1 ]; then exit 1; fi; sleep 1\n")
    from engine.cli import main

    def last_statuses() -> list[JobStatus]:
        manager = PipelineManager(tmp_path / "ws")
        run = manager.get_run(manager.list_runs()[0].run_id)
        return sorted(j.status for j in run.jobs.values())

    assert main(["--workspace", str(tmp_path / "ws"), "run", str(wf), "-q", "--no-fail-fast"]) == 1
    assert last_statuses() == sorted([JobStatus.FAILED, JobStatus.SUCCEEDED])
    assert main(["--workspace", str(tmp_path / "ws"), "run", str(wf), "-q"]) == 1
    assert last_statuses() == sorted([JobStatus.FAILED, JobStatus.CANCELLED])
