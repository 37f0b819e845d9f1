"""The original design's documented calls, run as written (import path `engine`, paths in temp dirs).

Each snippet of the design runs verbatim against real processes: the pipeline file (whose `uv`
toolchain is the user's, and may be absent here: then its build fails naming `uv`, and the same
pipeline with commands of this machine runs end to end, deploy stage included), the insights
calls, the staging environment (its host `staging.example.com` cannot resolve here: the call
fails naming it, and the same call pointed at a real sshd succeeds), and the compatibility
proxy driven over MCP as the original's agent code drives it.
"""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest

from engine.errors import TargetError
from tests.engine.deploy.conftest import services, sshd_hosts  # noqa: F401 - fixtures for this module
from tests.server.conftest import MakeServer, make_server, settings, workspace  # noqa: F401
from tests.server.test_gate import elicit_answer, text

SITE_PORTS = (18831, 18832)   # outside every suite's port pool (the reliability suite, which may run
#                               beside this one, hands out 18700-18749)
SSH_SITE_PORT = 18830   # outside every suite's port pool

# -- Pipelines ---------------------------------------------------------------------------------------
PIPELINE_YAML = """\
# pipeline.yaml, as the original documents it
name: main-build
trigger:
  branches: [main, develop]
  events: [push, pull_request]
stages:
  - name: build
    jobs:
      - name: build-python
        language: python
        commands: ["uv sync --all-extras", "uv run black --check src/", "uv run ruff check src/"]
  - name: test
    depends_on: [build]
    jobs:
      - name: unit-tests
        commands: ["uv run pytest -m unit"]
      - name: integration-tests
        commands: ["uv run pytest -m integration"]
  - name: deploy
    depends_on: [test]
    environment: staging
    strategy: rolling
    rollback_on_failure: true
"""

# The same pipeline with this machine's tools and a site to serve; the deploy stage is the original's.
LOCAL_PIPELINE_YAML = """\
trigger:
  branches: [main, develop]
  events: [push, pull_request]
stages:
  - name: build
    jobs:
      - name: build-python
        language: python
        commands: ["python3 -m ruff check src/", "mkdir -p site", "python3 src/app.py > site/version",
                   "echo ok > site/health"]
        artifacts: ["site/**"]
  - name: test
    depends_on: [build]
    jobs:
      - name: unit-tests
        commands: ["python3 -m pytest -q -p no:cacheprovider tests/", "grep -qx 2.1.0 site/version"]
        artifacts: ["site/**"]
      - name: integration-tests
        commands: ["test -s site/health"]
  - name: deploy
    depends_on: [test]
    environment: staging
    strategy: rolling
    rollback_on_failure: true
"""

DEPLOYMENT_CONFIG = f"""\
environments:
  - name: staging
    type: staging
    service: api
    target:
      kind: local
      command: "python3 -m http.server {{port}} --bind 127.0.0.1 --directory {{release_dir}}/site"
      ports: [{SITE_PORTS[0]}, {SITE_PORTS[1]}]
    health_checks:
      - {{url: "http://127.0.0.1:{{port}}/health", timeout: 30, retries: 30, interval: 0.1}}
"""


def served(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=5) as resp:
        return str(resp.read().decode().strip())


def write_project(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text('print("2.1.0")\n')
    (root / "tests").mkdir()
    (root / "tests" / "test_app.py").write_text(
        "import subprocess, sys\n\n\ndef test_version() -> None:\n"
        "    out = subprocess.run([sys.executable, 'src/app.py'], capture_output=True, text=True, check=True)\n"
        "    assert out.stdout.strip() == '2.1.0'\n"
    )
    return root


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    root = write_project(tmp_path / "project")
    yield root
    config = root / "deployment_config.yaml"
    if not config.exists():
        return
    from engine.deploy import DeploymentOrchestrator

    async def stop_all() -> None:
        orch = DeploymentOrchestrator(config, tmp_path / "ws")
        try:
            target = orch.target_for(orch.get_environment("staging"))
            for inst in await target.instances("api"):
                await target.stop(inst)
        finally:
            await orch.aclose()

    anyio.run(stop_all)


def test_the_original_pipeline_file_loads_and_runs_as_written(project: Path, tmp_path: Path) -> None:
    from engine import PipelineManager
    from engine.spec.model import load_pipeline

    (project / "pipeline.yaml").write_text(PIPELINE_YAML)
    plan = load_pipeline(project / "pipeline.yaml")
    assert plan.name == "main-build" and plan.jobs["deploy"].deploy_stage
    assert plan.jobs["deploy"].needs == ["unit-tests", "integration-tests"]
    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(project / "pipeline.yaml")
    build = run.jobs["build-python"]
    if shutil.which("uv") is None:
        # The user's toolchain is not on this machine: the real shell says so, nothing after it runs.
        assert build.exit_code == 127 and "uv: command not found" in manager.read_log(run.run_id, build.name).text
        assert run.status == "failed" and run.jobs["deploy"].status == "skipped"
    assert run.jobs["deploy"].status in ("skipped", "failed")   # no deployment config beside it: never a deploy


def test_the_original_pipeline_shape_runs_end_to_end_and_deploys(project: Path, tmp_path: Path) -> None:
    from engine import PipelineManager

    (project / "pipeline.yaml").write_text(LOCAL_PIPELINE_YAML)   # no `name:`: named after the file
    manager = PipelineManager(tmp_path / "ws")
    missing = manager.run_pipeline(project / "pipeline.yaml")
    assert missing.pipeline == "pipeline" and missing.status == "failed"
    assert missing.jobs["unit-tests"].status == "succeeded"
    reason = missing.jobs["deploy"].reason or ""
    assert "'staging' is not defined" in reason and "deployment_config.yaml" in reason

    (project / "deployment_config.yaml").write_text(DEPLOYMENT_CONFIG)
    run = manager.run_pipeline(project / "pipeline.yaml")
    deploy = run.jobs["deploy"]
    assert run.status == "succeeded", manager.read_log(run.run_id, "deploy").text
    assert deploy.deployment is not None and deploy.deployment["status"] == "success"
    assert deploy.deployment["rolled_back"] is False and deploy.deployment["strategy"] == "rolling"
    assert all(served(p, "version") == "2.1.0" for p in SITE_PORTS)


# -- Insights ----------------------------------------------------------------------------------------
def test_the_insights_snippet(tmp_path: Path) -> None:
    from engine import PipelineOptimizer

    optimizer = PipelineOptimizer(workspace_dir=str(tmp_path / "optimization"))
    optimizer.record_metric("duration", 245.3, "seconds", tags={"pipeline": "main-build"})
    optimizer.record_metric("memory_mb", 1024.0, "MB", tags={"pipeline": "main-build"})
    optimizer.record_metric("cpu_percent", 78.5, "%", tags={"pipeline": "main-build"})
    analysis = optimizer.analyze_performance("main-build", time_range=7)
    # keys: duration_stats, memory_stats, cpu_stats, trends, bottlenecks, suggestions
    plan = optimizer.optimize_pipeline_performance(pipeline_name="main-build", target_improvement=0.2)
    # plan["current_performance"]["average_duration"] -> 245.3 ; ["target_duration"] -> 196.2

    assert {"duration_stats", "memory_stats", "cpu_stats", "trends", "bottlenecks", "suggestions"} <= set(
        analysis.keys())
    assert analysis["duration_stats"].pipeline.mean == 245.3
    assert (analysis["memory_stats"].pipeline.mean, analysis["memory_stats"].pipeline.unit) == (1024.0, "MB")
    assert (analysis["cpu_stats"].pipeline.mean, analysis["cpu_stats"].pipeline.unit) == (78.5, "percent")
    assert plan["current_performance"]["average_duration"] == 245.3
    assert plan["current_performance"]["target_duration"] == 196.2
    assert f"{plan['current_performance']['target_duration']}" == "196.2"
    from engine.errors import InputError

    with pytest.raises(InputError, match="not a unit of time.*seconds"):
        optimizer.record_metric("duration", 3, "MB", tags={"pipeline": "other"})


# -- Deployments -------------------------------------------------------------------------------------
def _scripts(where: Path, port: int) -> None:
    (where / "scripts").mkdir(parents=True, exist_ok=True)
    pre = where / "scripts" / "pre-deploy.sh"
    pre.write_text('#!/bin/sh\necho "pre $DEPLOY_VERSION" >> hooks.log\n')
    smoke = where / "scripts" / "smoke-test.sh"
    smoke.write_text(f'#!/bin/sh\npython3 -c "import urllib.request as u; '
                     f'print(u.urlopen(\'http://127.0.0.1:{port}/version\').read().decode())" >> hooks.log\n')
    for script in (pre, smoke):
        script.chmod(0o755)


def test_the_staging_snippet_as_written_fails_naming_its_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    from engine import DeploymentOrchestrator, Environment, EnvironmentType

    monkeypatch.chdir(tmp_path)
    orchestrator = DeploymentOrchestrator(workspace_dir=tmp_path / "ws")
    staging_env = Environment(
        name="staging", type=EnvironmentType.STAGING, host="staging.example.com", port=22, user="deploy",
        docker_registry="registry.example.com",
        health_checks=[{"url": "http://staging.example.com/health", "timeout": 30}],
        pre_deploy_hooks=["./scripts/pre-deploy.sh"], post_deploy_hooks=["./scripts/smoke-test.sh"],
    )
    orchestrator.add_environment(staging_env)   # or the name the original uses; keep both
    deployment = orchestrator.create_deployment(name="api-v2.1.0", version="2.1.0", environment_name="staging",
        artifacts=["dist/api-2.1.0.tar.gz"], strategy="rolling", rollback_on_failure=True)
    with pytest.raises(TargetError, match=r"ssh staging\.example\.com:22"):
        orchestrator.deploy("api-v2.1.0")   # result.status, result.duration, result.logs
    assert deployment.status == "planned" and orchestrator.get_deployment("api-v2.1.0").status == "planned"
    anyio.run(orchestrator.aclose)


@pytest.fixture(scope="session")
def port_pool() -> Any:
    return services.PortPool(18800, 18829)


@pytest.mark.ssh
def test_the_staging_snippet_pointed_at_a_real_sshd_deploys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sshd_hosts: list[Any]  # noqa: F811
) -> None:
    from engine import DeploymentOrchestrator, Environment, EnvironmentType

    sshd = sshd_hosts[0]
    monkeypatch.chdir(tmp_path)
    services.make_site_tarball(tmp_path / "dist" / "api-2.1.0.tar.gz", "2.1.0")
    orchestrator = DeploymentOrchestrator(workspace_dir=tmp_path / "ws")
    _scripts(tmp_path / "ws", SSH_SITE_PORT)   # hooks run in the workspace
    staging_env = Environment(
        name="staging", type=EnvironmentType.STAGING, host=sshd.host, port=sshd.port, user=sshd.user,
        docker_registry="registry.example.com",
        health_checks=[{"url": "http://127.0.0.1:{port}/health", "timeout": 30}],
        pre_deploy_hooks=["./scripts/pre-deploy.sh"], post_deploy_hooks=["./scripts/smoke-test.sh"],
        # What this sshd needs beyond host/port/user: its key, its host key, a directory and a server.
        target={"kind": "ssh", "key_file": str(sshd.key_path), "known_hosts": str(sshd.known_hosts),
                "deploy_path": f"{sshd.extra['deploy_path']}/{{service}}", "ports": [SSH_SITE_PORT],
                "command": "busybox httpd -f -p {host}:{port} -h {release_dir}"},
    )
    orchestrator.add_environment(staging_env)
    orchestrator.create_deployment(name="api-v2.1.0", version="2.1.0", environment_name="staging",
        artifacts=["dist/api-2.1.0.tar.gz"], strategy="rolling", rollback_on_failure=True)
    try:
        result = orchestrator.deploy("api-v2.1.0")
        assert result.status == "success", result.reason
        assert result.duration > 0 and any("2.1.0" in line for line in result.logs)
        assert served(SSH_SITE_PORT, "version") == "2.1.0"
        assert (tmp_path / "ws" / "hooks.log").read_text().split() == ["pre", "2.1.0", "2.1.0"]
    finally:
        async def stop() -> None:
            target = orchestrator.target_for(staging_env)
            for inst in await target.instances("staging"):
                await target.stop(inst)
            await orchestrator.aclose()

        anyio.run(stop)


# -- The compatibility proxy -------------------------------------------------------------------------
async def call_module_function(client: mcp.Client, **kwargs: Any) -> dict[str, Any]:
    result = await client.call_tool("call_module_function", kwargs)
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


@pytest.mark.anyio
async def test_the_original_agent_code_over_mcp(
    make_server: MakeServer, project: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    (project / "pipeline.yaml").write_text(LOCAL_PIPELINE_YAML.replace("trigger:", "name: main-build\ntrigger:"))
    (project / "deployment_config.yaml").write_text(DEPLOYMENT_CONFIG)
    monkeypatch.chdir(project)
    server = make_server()
    async with mcp.Client(server, elicitation_callback=elicit_answer("accept")) as client:
        result = await call_module_function(client, module="ci_cd_automation", function="run_pipeline",
                                            args={"config_path": "pipeline.yaml"})
        assert result["status"] == "success" and result["result"]["status"] == "succeeded"
        result = await call_module_function(client, module="ci_cd_automation", function="manage_deployments",
                                            args={"config_path": "deployment_config.yaml"})
        assert result["status"] == "success" and result["deployment_id"] is not None
        deployed = result["deployment_id"]
        # A release whose health check fails: the agent sees a failure and the deployment to roll back.
        (project / "broken").mkdir()
        (project / "broken" / "site").mkdir()
        (project / "broken" / "site" / "version").write_text("9\n")
        bad = await call_module_function(client, module="ci_cd_automation", function="manage_deployments",
                                         args={"config_path": "deployment_config.yaml", "version": "9",
                                               "environment": "staging", "rollback_on_failure": False,
                                               "artifacts": [str(project / "broken")]})
        if bad["status"] != "success":
            rollback = await client.call_tool("call_module_function", {
                "module": "ci_cd_automation", "function": "handle_rollback",
                "args": {"deployment_id": bad["deployment_id"], "strategy": "blue_green",
                         "reason": "health checks failed"}})
            immediate = await call_module_function(
                client, module="ci_cd_automation", function="handle_rollback",
                args={"deployment_id": bad["deployment_id"], "strategy": "immediate", "reason": "health checks"})
    assert bad["status"] == "failure" and bad["deployment_id"] != deployed
    # blue_green switches a router back; this environment has none, and the answer names it.
    assert rollback.is_error and "router" in text(rollback)
    assert immediate["status"] == "success" and immediate["result"]["to_version"] == result["result"][
        "deployments"][0]["version"]
    assert all(served(p, "health") == "ok" for p in SITE_PORTS)
