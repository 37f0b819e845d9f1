"""Every environment variable of the original design is honoured: each is set here and its effect seen."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from engine._clock import FakeClock
from engine.deploy import DeploymentOrchestrator, DeploymentStatus, Environment
from engine.deploy.targets.docker import DockerTarget
from engine.deploy.targets.fake import FakeTarget
from engine.errors import InputError
from engine.pipeline.manager import PipelineManager
from engine.rollback import RollbackManager
from engine.settings import Settings, get_settings

PIPELINE = "name: env-pipe\nsource: null\nstages:\n  - name: s\n    jobs:\n" \
           "      - {name: a, commands: ['echo hi > out.txt'], artifacts: [out.txt]}\n"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)


def test_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    s = get_settings()
    assert s.workspace == tmp_path / "cicd-mcp" and s.artifact_root == tmp_path / "cicd-mcp" / "runs"
    assert (s.CI_PROVIDER, s.DEPLOY_TARGET, s.DEPLOY_STRATEGY) == ("local", "local", "rolling")
    assert (s.ROLLBACK_AUTO_TRIGGER, s.ROLLBACK_DEFAULT_STRATEGY) == (True, "immediate")
    assert s.ARTIFACT_REGISTRY is None and s.PIPELINE_CONFIG_PATH is None and s.PIPELINE_MAX_WORKERS >= 2


def test_pipeline_variables_place_the_run_and_attribute_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configs, store, artifacts = tmp_path / "pipelines", tmp_path / "ws", tmp_path / "artifacts"
    configs.mkdir()
    (configs / "env-pipe.yaml").write_text(PIPELINE)
    monkeypatch.setenv("PIPELINE_WORKSPACE", str(store))
    monkeypatch.setenv("PIPELINE_CONFIG_PATH", str(configs))
    monkeypatch.setenv("PIPELINE_MAX_WORKERS", "3")
    monkeypatch.setenv("CI_PROVIDER", "github")
    monkeypatch.setenv("ARTIFACT_STORAGE_PATH", str(artifacts))
    manager = PipelineManager()
    assert manager.max_workers == 3                                   # PIPELINE_MAX_WORKERS
    run = manager.run_pipeline("env-pipe")                            # found through PIPELINE_CONFIG_PATH
    assert run.status == "succeeded" and run.context["provider"] == "github"   # CI_PROVIDER
    assert (store / "state.db").is_file() and (store / "runs" / run.run_id).is_dir()   # PIPELINE_WORKSPACE
    [art] = run.jobs["a"].artifacts
    assert Path(art.stored_path).is_relative_to(artifacts)            # ARTIFACT_STORAGE_PATH


def _orchestrator(tmp_path: Path, **targets: FakeTarget) -> DeploymentOrchestrator:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    return DeploymentOrchestrator(workspace_dir=tmp_path, clock=FakeClock(), targets=dict(targets),
                                  http=httpx.AsyncClient(transport=httpx.MockTransport(answer)))


def test_deploy_and_rollback_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_STRATEGY", "recreate")
    monkeypatch.setenv("ROLLBACK_AUTO_TRIGGER", "false")
    monkeypatch.setenv("ROLLBACK_DEFAULT_STRATEGY", "rolling")
    orch = _orchestrator(tmp_path, env=FakeTarget())
    orch.register_environment(Environment(name="env", service="web", health_checks=[
        {"url": "http://{host}:{port}/health", "retries": 3, "interval": 1}]))
    rec = orch.create_deployment("web-1", "1", "env", ["img:1"])
    assert rec.strategy == "recreate"                                # DEPLOY_STRATEGY
    assert rec.rollback_on_failure is False                          # ROLLBACK_AUTO_TRIGGER
    assert anyio.run(orch.adeploy, "web-1").status == DeploymentStatus.SUCCESS
    orch.create_deployment("web-2", "2", "env", ["img:2"])
    assert anyio.run(orch.adeploy, "web-2").status == DeploymentStatus.SUCCESS
    plan = RollbackManager(workspace_dir=tmp_path, orchestrator=orch, clock=FakeClock()).create_rollback_plan("web-2")
    assert plan.strategy == "rolling"                                # ROLLBACK_DEFAULT_STRATEGY
    anyio.run(orch.aclose)


def test_deploy_target_and_artifact_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    orch = _orchestrator(tmp_path)
    env = orch.register_environment(Environment(name="plain"))
    with pytest.raises(InputError, match="DEPLOY_TARGET=local"):   # the local kind needs a command
        orch.target_for(env)
    anyio.run(orch.aclose)
    monkeypatch.setenv("DEPLOY_TARGET", "docker")
    monkeypatch.setenv("ARTIFACT_REGISTRY", "127.0.0.1:5999")
    orch = _orchestrator(tmp_path)
    target = orch.target_for(orch.get_environment("plain"))
    assert isinstance(target, DockerTarget)                          # DEPLOY_TARGET
    assert target.context.docker_registry == "127.0.0.1:5999"        # ARTIFACT_REGISTRY
    own = orch.register_environment(Environment(name="own", docker_registry="registry.example.com"))
    assert orch.target_for(own).context.docker_registry == "registry.example.com"
    anyio.run(orch.aclose)
