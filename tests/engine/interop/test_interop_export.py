"""Export to GitHub Actions and GitLab CI: same job graph, nothing dropped silently, round trip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.errors import InputError
from engine.interop import export_pipeline, import_github_workflow, pipeline_data
from engine.pipeline.manager import PipelineManager
from engine.pipeline.states import RunStatus
from engine.spec.model import load_pipeline

PROJECTS = Path(__file__).resolve().parents[2] / "fixtures" / "projects"

PIPELINE: dict[str, Any] = {
    "name": "shop",
    "trigger": {"branches": ["main"], "events": ["push", "merge_request"]},
    "variables": {"APP": "shop"},
    "defaults": {"timeout": 600},
    "stages": [
        {"name": "check", "jobs": [
            {"name": "lint", "commands": ["echo lint ${APP}"]},
            {"name": "test",
             "commands": ["mkdir -p reports", "echo py=${matrix.py} > reports/test-${py}.txt"],
             "matrix": {"py": ["3.10", "3.11"]}, "artifacts": ["reports/*.txt"], "retry": {"max": 1}},
        ]},
        {"name": "package", "jobs": [
            {"name": "build", "commands": ["mkdir -p dist", "echo wheel > dist/app.whl"],
             "artifacts": ["dist/app.whl"], "timeout": 90},
            {"name": "docs", "commands": ["echo docs"], "depends_on": ["lint"], "allow_failure": True},
        ]},
        {"name": "deploy", "environment": "staging", "strategy": "rolling", "jobs": [
            {"name": "deploy-staging", "commands": ["test -f dist/app.whl"],
             "if": "branch == 'main' and event == 'push'"},
        ]},
    ],
}


def _github(source: Any = PIPELINE) -> tuple[dict[str, Any], list[str], str]:
    text, warnings = export_pipeline(source, "github-actions")
    return yaml.safe_load(text), warnings, text


def test_github_workflow_has_the_same_job_graph() -> None:
    workflow, _, _ = _github()
    needs = {job: sorted(body.get("needs", [])) for job, body in workflow["jobs"].items()}
    assert needs == {"lint": [], "test": [], "build": ["lint", "test"], "docs": ["lint"],
                     "deploy-staging": ["build", "docs"]}
    assert workflow[True if True in workflow else "on"]["push"] == {"branches": ["main"]}


def test_github_workflow_carries_matrix_timeouts_failure_policy_environment_and_artifacts() -> None:
    workflow, warnings, text = _github()
    jobs = workflow["jobs"]
    assert jobs["test"]["strategy"] == {"fail-fast": False, "matrix": {"py": ["3.10", "3.11"]}}
    assert "${{ matrix.py }}" in jobs["test"]["steps"][-2]["run"]
    assert jobs["test"]["env"]["py"] == "${{ matrix.py }}"
    assert jobs["build"]["timeout-minutes"] == 2        # 90 s rounded up, with a warning
    assert jobs["lint"]["timeout-minutes"] == 10
    assert jobs["docs"]["continue-on-error"] is True
    assert jobs["deploy-staging"]["environment"] == "staging"
    assert jobs["deploy-staging"]["if"] == "(github.ref_name == 'main' && github.event_name == 'push')"
    upload = jobs["build"]["steps"][-1]
    assert upload["uses"] == "actions/upload-artifact@v4"
    assert upload["with"]["path"] == "dist/app.whl"
    steps = jobs["deploy-staging"]["steps"]
    downloads = [s for s in steps if s.get("uses", "").startswith("actions/download")]
    assert [d["with"] for d in downloads] == [
        {"pattern": "test-*", "merge-multiple": True, "path": "reports"},
        {"name": "build", "path": "dist"},
    ]
    assert any("retry (max 1) is not supported by GitHub Actions" in w for w in warnings)
    assert any("timeout 90s rounded up to 2 minutes" in w for w in warnings)
    assert any("deploy strategy 'rolling'" in w for w in warnings)
    # Every warning is also in the file, for whoever reads it later.
    assert all(f"# warning: {w}" in text for w in warnings)


def test_gitlab_ci_has_the_same_graph_and_gitlab_features() -> None:
    text, warnings = export_pipeline(PIPELINE, "gitlab-ci")
    doc = yaml.safe_load(text)
    assert doc["stages"] == ["check", "package", "deploy"]
    assert doc["variables"] == {"APP": "shop"}
    assert doc["workflow"]["rules"][0]["if"] == (
        '$CI_COMMIT_BRANCH =~ /^(main)$/ && ($CI_PIPELINE_SOURCE == "push" || '
        '$CI_PIPELINE_SOURCE == "merge_request_event")'
    )
    assert doc["lint"]["needs"] == [] and doc["test"]["needs"] == []
    assert doc["build"]["needs"] == ["lint", "test"]
    assert doc["deploy-staging"]["needs"] == ["build", "docs", {"job": "test", "artifacts": True}]
    assert doc["test"]["parallel"] == {"matrix": [{"py": ["3.10", "3.11"]}]}
    assert doc["test"]["script"][1] == "echo py=${py} > reports/test-${py}.txt"
    assert doc["test"]["retry"] == {"max": 1, "when": ["script_failure", "stuck_or_timeout_failure",
                                                       "runner_system_failure"]}
    assert doc["test"]["artifacts"] == {"paths": ["reports/*.txt"]}
    assert doc["docs"]["allow_failure"] is True
    assert doc["build"]["timeout"] == "2m"
    assert doc["deploy-staging"]["environment"] == {"name": "staging"}
    assert doc["deploy-staging"]["rules"] == [
        {"if": '$CI_COMMIT_BRANCH == "main" && $CI_PIPELINE_SOURCE == "push"', "when": "on_success"},
        {"when": "never"},
    ]
    assert any("retry backoff" in w for w in warnings)


def test_status_conditions_become_gitlab_when() -> None:
    pipeline = {"name": "p", "stages": [{"name": "s", "jobs": [
        {"name": "a", "commands": ["false"]},
        {"name": "notify", "commands": ["echo failed"], "depends_on": ["a"], "if": "failure()"},
        {"name": "clean", "commands": ["echo clean"], "depends_on": ["a"], "if": "always()"},
    ]}]}
    doc = yaml.safe_load(export_pipeline(pipeline, "gitlab-ci")[0])
    assert doc["notify"]["rules"] == [{"when": "on_failure"}]
    assert doc["clean"]["rules"] == [{"when": "always"}]
    workflow, _, _ = _github(pipeline)
    assert workflow["jobs"]["notify"]["if"] == "failure()"


def test_what_cannot_be_expressed_is_a_warning(tmp_path: Path) -> None:
    pipeline = {"name": "p", "fail_fast": True, "timeout": 60, "stages": [{"name": "s", "jobs": [
        {"name": "a", "commands": ["true"], "if": "branch in ['main', 'dev']"},
        {"name": "stages", "commands": ["true"]},
    ]}]}
    _, gh_warnings, _ = _github(pipeline)
    assert any("fail_fast" in w for w in gh_warnings)
    assert any("whole-run timeout" in w for w in gh_warnings)
    assert any("job a: if: \"branch in ['main', 'dev']\" was not exported" in w for w in gh_warnings)
    text, gl_warnings = export_pipeline(pipeline, "gitlab-ci")
    assert "stages-job" in yaml.safe_load(text)
    assert any("renamed 'stages-job'" in w for w in gl_warnings)
    assert any("was not exported" in w for w in gl_warnings)


def test_language_job_exports_its_standard_build(tmp_path: Path) -> None:
    shutil.copytree(PROJECTS / "javascript", tmp_path / "app")
    pipeline = tmp_path / "app" / "pipeline.yaml"
    pipeline.write_text("name: js\nstages:\n  - name: build\n    jobs:\n      - name: pack\n"
                        "        language: javascript\n")
    workflow, _, _ = _github(pipeline)
    assert workflow["jobs"]["pack"]["steps"][-1]["run"].splitlines() == [
        "npm ci --no-audit --no-fund", "npm run build", "npm pack --pack-destination dist"]


def test_unknown_format() -> None:
    with pytest.raises(InputError, match="unknown export format 'jenkins'; known: github-actions, gitlab-ci"):
        export_pipeline(PIPELINE, "jenkins")


def test_round_trip_through_the_importer_keeps_the_graph_and_runs(tmp_path: Path) -> None:
    original = load_pipeline(PIPELINE)
    text, _ = export_pipeline(PIPELINE, "github-actions")
    flows = tmp_path / "repo" / ".github" / "workflows"
    flows.mkdir(parents=True)
    (flows / "shop.yml").write_text(text)
    imported = import_github_workflow(flows / "shop.yml")
    assert imported.unsupported == {}
    again = load_pipeline(pipeline_data(imported.spec))
    assert {k: sorted(v) for k, v in again.graph.items()} == {k: sorted(v) for k, v in original.graph.items()}
    assert again.jobs["docs"].allow_failure
    assert again.jobs["build"].timeout == 120
    assert again.jobs["build"].artifacts == ["dist/app.whl"]
    # And it runs: the artifact made by build reaches the deploy job.
    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(pipeline_data(imported.spec), branch="main", event="push")
    assert run.status == RunStatus.SUCCEEDED, {n: (j.status, j.reason) for n, j in run.jobs.items()}
    assert run.jobs["deploy-staging"].status == "succeeded"


EXPORTED: list[dict[str, Any]] = [
    PIPELINE,
    {"name": "p", "stages": [{"name": "s", "jobs": [
        {"name": "a", "commands": ["false"]},
        {"name": "notify", "commands": ["echo failed"], "depends_on": ["a"], "if": "failure()"},
        {"name": "clean", "commands": ["echo clean"], "depends_on": ["a"], "if": "always()"},
    ]}]},
    # Contexts GitHub does not allow in a job's if: (env, matrix), and ${VAR} in job variables.
    {"name": "ctx", "variables": {"APP": "shop", "MODE": "fast"}, "stages": [{"name": "s", "jobs": [
        {"name": "t", "commands": ["echo ${APP} ${py} ${OUT}"], "matrix": {"py": ["3.10", "3.11"]},
         "variables": {"OUT": "out/${APP}-${matrix.py}", "RUN": "${CICD_RUN_ID}"},
         "if": "vars.MODE == 'fast' and matrix.py != '3.9'"},
        {"name": "wd", "commands": ["mkdir -p build && touch build/x.txt"], "working_directory": "sub",
         "artifacts": ["build/*.txt"]},
        {"name": "uses-wd", "commands": ["test -f build/x.txt"], "depends_on": ["wd"]},
    ]}]},
]


@pytest.mark.parametrize("pipeline", EXPORTED, ids=[str(p["name"]) for p in EXPORTED])
def test_exported_workflows_pass_actionlint(pipeline: dict[str, Any], actionlint: Any) -> None:
    text, _ = export_pipeline(pipeline, "github-actions")
    assert actionlint(text) == []


def test_export_writes_variables_conditions_and_artifact_paths_as_the_engine_means_them(tmp_path: Path) -> None:
    workflow, warnings, _ = _github(EXPORTED[2])
    t = workflow["jobs"]["t"]
    # The runner interpolates ${NAME} in job variables; GitHub does not: values are written out.
    assert t["env"] == {"OUT": "out/shop-${{ matrix.py }}", "RUN": "${{ github.run_id }}", "py": "${{ matrix.py }}"}
    assert "if" not in t and {s["if"] for s in t["steps"]} == {"(env.MODE == 'fast' && matrix.py != '3.9')"}
    assert any("reads the matrix" in w for w in warnings)
    download = workflow["jobs"]["uses-wd"]["steps"][1]
    assert download["with"] == {"name": "wd", "path": "build"}      # where the engine puts build/x.txt
    assert workflow["jobs"]["wd"]["steps"][-1]["with"]["path"] == "sub/build/*.txt"
    only_vars = {"name": "v", "variables": {"MODE": "fast"}, "stages": [{"name": "s", "jobs": [
        {"name": "a", "commands": ["true"], "if": "vars.MODE == 'fast' and branch == 'main'"}]}]}
    assert _github(only_vars)[0]["jobs"]["a"]["if"] == "('fast' == 'fast' && github.ref_name == 'main')"


def test_export_runs_a_pipeline_with_a_source_directory_from_it(tmp_path: Path, actionlint: Any) -> None:
    repo = tmp_path / "repo"
    (repo / "ci").mkdir(parents=True)
    (repo / "app").mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "ci" / "pipeline.yaml").write_text(
        "name: p\nsource: ../app\nstages:\n  - name: s\n    jobs:\n      - name: a\n"
        "        commands: [make]\n        working_directory: web\n        artifacts: [out/*.js]\n"
        "      - name: b\n        commands: [ls out]\n        depends_on: [a]\n")
    workflow, _, text = _github(repo / "ci" / "pipeline.yaml")
    a, b = workflow["jobs"]["a"]["steps"], workflow["jobs"]["b"]["steps"]
    assert a[1]["working-directory"] == "app/web"
    assert a[2]["with"]["path"] == "app/web/out/*.js"
    assert b[1]["with"]["path"] == "app/out" and b[2]["working-directory"] == "app"
    assert actionlint(text) == []
