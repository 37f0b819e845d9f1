"""A pipeline stage with `environment:` deploys the run's artifacts through the orchestrator, for real."""

from __future__ import annotations

import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from engine.deploy import DeploymentOrchestrator
from engine.events import Event
from engine.pipeline.manager import PipelineManager
from engine.pipeline.states import JobStatus, RunStatus

PORTS = (18051, 18052)


def served(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=2) as resp:
        return str(resp.read().decode().strip())


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "deploy.yaml").write_text(textwrap.dedent(f"""\
        environments:
          - name: pipe-dev
            type: development
            target:
              kind: local
              command: "python3 -m http.server {{port}} --bind 127.0.0.1 --directory {{release_dir}}"
              ports: [{PORTS[0]}, {PORTS[1]}]
            health_checks:
              - {{type: http, url: "http://127.0.0.1:{{port}}/health", expect_status: 200, timeout: 2,
                  retries: 20, interval: 0.1}}
        """))
    (tmp_path / "pipeline.yaml").write_text(textwrap.dedent("""\
        name: ship
        source: null
        variables: {HEALTH: ok}
        stages:
          - name: build
            jobs:
              - name: site
                commands:
                  - mkdir -p site
                  - echo "${HEALTH}" > site/health
                  - echo "${RELEASE}" > site/version
                artifacts: ["site/**"]
          - name: release
            environment: pipe-dev
            strategy: rolling
            deploy: {config: deploy.yaml, service: web, version: "${RELEASE}", artifact: site}
            jobs:
              - name: deploy-web
                commands: ["test -s site/version"]
        """))
    yield tmp_path

    async def stop_all() -> None:
        orch = DeploymentOrchestrator(tmp_path / "deploy.yaml", tmp_path / "ws")
        try:
            for env in orch.environments.values():
                target = orch.target_for(env)
                for inst in await target.instances("web"):
                    await target.stop(inst)
        finally:
            await orch.aclose()

    anyio.run(stop_all)


def test_deploy_stage_puts_the_built_version_live(project: Path) -> None:
    manager = PipelineManager(project / "ws")
    events: list[Event] = []
    run = manager.run_pipeline(project / "pipeline.yaml", {"RELEASE": "1.0.0"}, on_event=events.append)
    log = manager.read_log(run.run_id, "deploy-web", tail=50).text
    assert run.status == RunStatus.SUCCEEDED, log
    assert all(served(p, "version") == "1.0.0" for p in PORTS)
    assert "deploying site as version 1.0.0 to pipe-dev (rolling)" in log
    assert any(e.kind.startswith("deploy_") for e in events)


def test_failed_deploy_fails_the_job_and_the_old_version_keeps_serving(project: Path) -> None:
    manager = PipelineManager(project / "ws")
    assert manager.run_pipeline(project / "pipeline.yaml", {"RELEASE": "1.0.0"}).status == RunStatus.SUCCEEDED
    # Version 2 ships without a health file: /health answers 404, so the rollout must roll back.
    broken = (project / "pipeline.yaml").read_text().replace('echo "${HEALTH}" > site/health', "echo no health file")
    (project / "broken.yaml").write_text(broken)
    run = manager.run_pipeline(project / "broken.yaml", {"RELEASE": "2.0.0"})
    assert run.status == RunStatus.FAILED
    job = run.jobs["deploy-web"]
    assert job.status == JobStatus.FAILED
    assert "rolled_back" in (job.reason or "")
    assert all(served(p, "version") == "1.0.0" for p in PORTS)


# -- a stage with `environment:` and no jobs (the original design's deploy stage) --------------------
STAGE_PORTS = (18053, 18054)

DEPLOYMENT_CONFIG = textwrap.dedent(f"""\
    environments:
      - name: staging
        type: staging
        service: site
        target:
          kind: local
          command: "python3 -m http.server {{port}} --bind 127.0.0.1 --directory {{release_dir}}/site"
          ports: [{STAGE_PORTS[0]}, {STAGE_PORTS[1]}]
        health_checks:
          - {{url: "http://127.0.0.1:{{port}}/health", timeout: 2, retries: 20, interval: 0.1}}
    """)

STAGED_PIPELINE = textwrap.dedent("""\
    source: null
    stages:
      - name: build
        jobs:
          - name: site
            commands: ["mkdir -p site", "test -z '${HEALTH}' || echo ${HEALTH} > site/health",
                       "echo ${RELEASE} > site/version"]
            artifacts: ["site/**"]
      - name: test
        depends_on: [build]
        jobs:
          - name: check
            commands: ["test -s site/version"]
            artifacts: ["site/**"]
      - name: deploy
        depends_on: [test]
        environment: staging
        strategy: rolling
        rollback_on_failure: true
        deploy: {version: "${RELEASE}"}
    """)


@pytest.fixture
def staged(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "release.yaml").write_text(STAGED_PIPELINE)
    yield tmp_path
    if not (tmp_path / "deployment_config.yaml").exists():
        return

    async def stop_all() -> None:
        orch = DeploymentOrchestrator(tmp_path / "deployment_config.yaml", tmp_path / "ws")
        try:
            target = orch.target_for(orch.get_environment("staging"))
            for inst in await target.instances("site"):
                await target.stop(inst)
        finally:
            await orch.aclose()

    anyio.run(stop_all)


def test_a_stage_without_jobs_deploys_the_artifacts_of_the_stages_it_depends_on(staged: Path) -> None:
    (staged / "deployment_config.yaml").write_text(DEPLOYMENT_CONFIG)
    manager = PipelineManager(staged / "ws")
    run = manager.run_pipeline(staged / "release.yaml", {"RELEASE": "1.0.0", "HEALTH": "ok"})
    assert run.pipeline == "release"   # no `name:`: the file's stem
    deploy = run.jobs["deploy"]
    assert run.status == RunStatus.SUCCEEDED, manager.read_log(run.run_id, "deploy", tail=50).text
    assert deploy.needs == ["check"] and deploy.deployment is not None
    assert deploy.deployment["status"] == "success" and deploy.deployment["rolled_back"] is False
    assert deploy.deployment["deployment_id"].startswith("d-") and deploy.deployment["strategy"] == "rolling"
    assert all(served(p, "version") == "1.0.0" for p in STAGE_PORTS)
    # Kept with the run: read back later (cicd-mcp show, get_run), the stage still says what it deployed.
    assert manager.get_run(run.run_id).jobs["deploy"].deployment == deploy.deployment

    # 2.0.0 has no health file: the rollout fails, and rollback_on_failure puts 1.0.0 back.
    run = manager.run_pipeline(staged / "release.yaml", {"RELEASE": "2.0.0", "HEALTH": ""})
    deploy = run.jobs["deploy"]
    assert run.status == RunStatus.FAILED and deploy.status == JobStatus.FAILED
    assert deploy.deployment is not None and deploy.deployment["rolled_back"] is True
    assert deploy.deployment["status"] == "rolled_back" and "rolled_back" in (deploy.reason or "")
    assert all(served(p, "version") == "1.0.0" for p in STAGE_PORTS)


def test_without_a_deployment_config_the_file_loads_and_the_stage_fails_naming_what_is_missing(
    staged: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIPELINE_CONFIG_PATH", raising=False)
    manager = PipelineManager(staged / "ws")
    run = manager.run_pipeline(staged / "release.yaml", {"RELEASE": "1.0.0", "HEALTH": "ok"})
    deploy = run.jobs["deploy"]
    assert run.jobs["check"].status == JobStatus.SUCCEEDED
    assert run.status == RunStatus.FAILED and deploy.status == JobStatus.FAILED and deploy.deployment is None
    assert "'staging' is not defined" in (deploy.reason or "")
    assert str(staged.resolve() / "deployment_config.yaml") in (deploy.reason or "")


def test_pipeline_config_path_locates_the_deployment_config(
    staged: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path_factory.mktemp("configs")
    (elsewhere / "deployment_config.yaml").write_text(DEPLOYMENT_CONFIG.replace("1.0.0", "x"))
    monkeypatch.setenv("PIPELINE_CONFIG_PATH", str(elsewhere))
    # The stop-all teardown reads the config beside the pipeline: the same one, by a link.
    (staged / "deployment_config.yaml").symlink_to(elsewhere / "deployment_config.yaml")
    (staged / "sub").mkdir()
    (staged / "sub" / "release.yaml").write_text(STAGED_PIPELINE)
    manager = PipelineManager(staged / "ws")
    run = manager.run_pipeline(staged / "sub" / "release.yaml", {"RELEASE": "1.0.0", "HEALTH": "ok"})
    assert run.status == RunStatus.SUCCEEDED, run.jobs["deploy"].reason
    assert run.jobs["deploy"].deployment is not None
