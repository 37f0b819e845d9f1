"""Secrets injected into a pipeline and a deployment never appear in a log file, a tool result,
an error, a resource, a report or an audit record.

The secret values are unique strings; after real runs and deployments that print them (whole,
split across writes, in failing output, in error paths) every place a user or an agent can
read is scanned for them: each tool result (text and structured), each resource, the server's
log records, and every byte the engine keeps on disk (state.db with its WAL and the audit
table in it, the log files). The job workspaces and artifacts are the job's own files and are
left out: a job that writes a secret into a file it ships has published it on purpose.
"""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp
import mcp_types as types
import pytest

from engine.settings import get_settings
from tests.engine.deploy.helpers import APP_COMMAND, make_release
from tests.reliability.conftest import MakeServer, free_port, text

pytestmark = pytest.mark.anyio

PIPE_SECRET = "pS3cr3t-rel1ab1l1ty-7f1c9a"
MULTILINE_SECRET = "line-one-k8Zq2\nline-two-Wm4Xp"
CALL_SECRET = "cS3cr3t-passed-by-call-44de"
DEPLOY_SECRET = "dS3cr3t-deploy-env-b3e0a1"
SECRETS = (PIPE_SECRET, *MULTILINE_SECRET.splitlines(), CALL_SECRET, DEPLOY_SECRET)

PIPELINE = """\
name: secretive
source: null
secrets: [DB_PASSWORD, SIGNING_KEY]
stages:
  - name: build
    jobs:
      - name: prints
        shell: bash
        commands:
          - echo "the password is $DB_PASSWORD"
          - printf '%s' "${DB_PASSWORD:0:9}"; sleep 0.3; printf '%s\\n' "${DB_PASSWORD:9}"
          - echo "$SIGNING_KEY"
          - echo "call variable $API_KEY"
          - env | grep -i -e password -e key
          - echo "$DB_PASSWORD" > shipped.txt
        artifacts: [shipped.txt]
      - name: fails
        commands:
          - echo "about to fail with $DB_PASSWORD" >&2
          - echo "and $API_KEY"
          - exit 3
  - name: after
    jobs:
      - name: times-out
        timeout: 1
        depends_on: []
        commands: ["echo waiting with $DB_PASSWORD; sleep 30"]
"""


@pytest.fixture
def secret_world(tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text(f"DB_PASSWORD={PIPE_SECRET}\n")
    monkeypatch.setenv("SIGNING_KEY", MULTILINE_SECRET)
    monkeypatch.setenv("RELIABILITY_DEPLOY_TOKEN", DEPLOY_SECRET)
    pipeline = tmp_path / "secretive.yaml"
    pipeline.write_text(PIPELINE)
    port = free_port()
    config = tmp_path / "deploy.yaml"
    config.write_text(textwrap.dedent(f"""\
        environments:
          - name: staging
            type: testing
            target: {{kind: local, command: "{APP_COMMAND}", ports: [{port}]}}
            strategy: recreate
            health_checks: [{{type: http, url: "http://{{host}}:{{port}}/health", retries: 50, interval: 0.1}}]
            post_deploy_hooks: ["echo deployed with $RELIABILITY_DEPLOY_TOKEN"]
          - name: broken
            type: testing
            target: {{kind: local, command: "{APP_COMMAND}", ports: [{free_port()}]}}
            pre_deploy_hooks: ["echo cannot deploy, token $RELIABILITY_DEPLOY_TOKEN rejected; exit 1"]
        """))
    settings = get_settings(PIPELINE_WORKSPACE=workspace, PIPELINE_SECRETS_FILE=secrets_file)
    yield {"settings": settings, "pipeline": pipeline, "config": config, "release": make_release(tmp_path, "1"),
           "workspace": workspace}

    async def stop() -> None:
        from engine.deploy.orchestrator import DeploymentOrchestrator

        orch = DeploymentOrchestrator(config, workspace)
        for name in ("staging", "broken"):
            env = orch.get_environment(name)
            target = orch.target_for(env)
            for inst in await target.instances(env.service_name):
                await target.stop(inst)
        await orch.aclose()

    anyio.run(stop)


def _result_text(result: types.CallToolResult) -> str:
    return text(result) + "\n" + json.dumps(result.structured_content or {})


def _leaks(where: str, content: str | bytes) -> list[str]:
    data = content.encode() if isinstance(content, str) else content
    return [f"{where}: contains {s[:12]}..." for s in SECRETS if s.encode() in data]


def _scan_disk(workspace: Path) -> list[str]:
    found = []
    for path in workspace.rglob("*"):
        rel = path.relative_to(workspace).parts
        # runs/<id>/jobs/... are job workspaces; artifacts are what jobs shipped on purpose.
        if not path.is_file() or "jobs" in rel[:3] or "artifacts" in rel:
            continue
        found += _leaks(str(path.relative_to(workspace)), path.read_bytes())
    return found


async def _read_all(client: mcp.Client, uri: str) -> str:
    got = await client.read_resource(uri)
    return "\n".join(getattr(c, "text", "") or "" for c in got.contents)


async def test_pipeline_secrets_reach_no_output(secret_world: dict[str, Any], make_server: MakeServer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = make_server(settings_=secret_world["settings"])
    leaks: list[str] = []
    async with mcp.Client(server) as client:
        run = await client.call_tool("run_pipeline", {"config_path": str(secret_world["pipeline"]),
                                                      "variables": {"API_KEY": CALL_SECRET}})
        leaks += _leaks("run_pipeline result", _result_text(run))
        out = run.structured_content
        assert out is not None and out["status"] == "failed", text(run)
        statuses = {j["name"]: j["status"] for j in out["jobs"]}
        assert statuses == {"prints": "succeeded", "fails": "failed", "times-out": "timed_out"}
        run_id = out["run_id"]
        # The secrets really went through the jobs: the masks are where they were printed.
        logs = await client.call_tool("get_job_logs", {"run_id": run_id, "tail": 5000})
        assert "the password is ***" in text(logs) and "call variable ***" in text(logs)
        leaks += _leaks("get_job_logs", _result_text(logs))
        for grep in ("password", "S3cr3t", "k8Zq2", ".*"):
            found = await client.call_tool("get_job_logs", {"run_id": run_id, "grep": grep})
            leaks += _leaks(f"get_job_logs grep={grep}", _result_text(found))
        for tool, args in (("get_run", {"run_id": run_id}), ("pipeline_health", {}),
                           ("pipeline_health", {"pipeline_name": "secretive"}),
                           ("analyze_performance", {"pipeline_name": "secretive"})):
            leaks += _leaks(tool, _result_text(await client.call_tool(tool, args)))
        leaks += _leaks("run resource", await _read_all(client, f"cicd://runs/{run_id}"))
        for job in statuses:
            leaks += _leaks(f"log resource {job}", await _read_all(client, f"cicd://runs/{run_id}/logs/{job}"))
        leaks += _leaks("report resource", await _read_all(client, "cicd://reports/secretive"))
        # Error paths: a bad call carrying secrets in its arguments.
        for args in ({"config_path": "/nonexistent/x.yaml", "variables": {"API_KEY": CALL_SECRET}},
                     {"config_path": str(secret_world["pipeline"]), "variables": {"BAD NAME": CALL_SECRET}},
                     {"pipeline": "secretive", "variables": {"API_KEY": CALL_SECRET}, "bogus": 1},
                     {"pipeline": "secretive", "config_path": "x", "variables": {"API_KEY": CALL_SECRET}}):
            leaks += _leaks(f"error {list(args)}", _result_text(await client.call_tool("run_pipeline", args)))
    leaks += _leaks("server log records", caplog.text)
    leaks += _scan_disk(secret_world["workspace"])
    audit = server.state.store.query("SELECT * FROM audit")
    assert audit
    leaks += _leaks("audit rows", json.dumps([dict(r) for r in audit]))
    assert not leaks, "\n".join(leaks)


async def test_deployment_secrets_in_successful_output(secret_world: dict[str, Any], make_server: MakeServer) -> None:
    server = make_server(settings_=secret_world["settings"])
    async with mcp.Client(server) as client:
        done = await client.call_tool("deploy", {"config_path": str(secret_world["config"]),
                                                 "environment": "staging", "version": "1",
                                                 "artifacts": [str(secret_world["release"])]})
    assert done.structured_content and done.structured_content["status"] == "success", text(done)
    assert not _leaks("deploy result", _result_text(done))


async def test_deployment_secrets_reach_no_output(secret_world: dict[str, Any], make_server: MakeServer) -> None:
    server = make_server(settings_=secret_world["settings"])
    leaks: list[str] = []
    async with mcp.Client(server) as client:
        failed = await client.call_tool("deploy", {"config_path": str(secret_world["config"]),
                                                   "environment": "broken", "version": "1",
                                                   "artifacts": [str(secret_world["release"])]})
        out = failed.structured_content
        assert out is not None and out["status"] == "failure", text(failed)
        assert "rejected" in _result_text(failed)   # the hook's output is there, so the secret could be
        leaks += _leaks("deploy result", _result_text(failed))
        leaks += _leaks("deployment resource", await _read_all(client, f"cicd://deployments/{out['deployment_id']}"))
    leaks += _scan_disk(secret_world["workspace"])
    assert not leaks, "\n".join(leaks)
