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
