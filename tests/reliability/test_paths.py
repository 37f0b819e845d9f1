"""Paths and names from tool arguments and pipeline files: nothing read or written outside the
workspace and config roots; names that end up in file names, container names and SQL are
validated or parameterised.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest

from engine.settings import get_settings
from tests.engine.deploy.helpers import APP_COMMAND, make_release, served_version
from tests.reliability.conftest import MakeServer, count, free_port, text

pytestmark = pytest.mark.anyio

MARKER_PIPELINE = """\
name: {name}
source: null
stages:
  - name: s
    jobs:
      - name: j
        commands: ["touch {marker}"]
"""


@pytest.fixture
def roots(tmp_path: Path, workspace: Path) -> dict[str, Path]:
    """A config root holding pipelines, and a directory outside every root."""
    config = tmp_path / "configs"
    outside = tmp_path / "outside"
    config.mkdir()
    outside.mkdir()
    (config / "inside.yaml").write_text(MARKER_PIPELINE.format(name="inside", marker=tmp_path / "inside-ran"))
    (outside / "evil.yaml").write_text(MARKER_PIPELINE.format(name="evil", marker=tmp_path / "outside-ran"))
    os.symlink(outside / "evil.yaml", config / "link-out.yaml")
    return {"config": config, "outside": outside, "ws": workspace, "tmp": tmp_path}


def _server(make_server: MakeServer, roots: dict[str, Path]) -> Any:
    settings = get_settings(PIPELINE_WORKSPACE=roots["ws"], PIPELINE_CONFIG_PATH=roots["config"])
    return make_server(settings_=settings)


async def test_pipeline_inside_the_config_root_runs(make_server: MakeServer, roots: dict[str, Path]) -> None:
    server = _server(make_server, roots)
    async with mcp.Client(server) as client:
        by_path = await client.call_tool("run_pipeline", {"config_path": str(roots["config"] / "inside.yaml")})
        by_name = await client.call_tool("run_pipeline", {"pipeline": "inside"})
    assert not by_path.is_error and not by_name.is_error, text(by_path) + text(by_name)
    assert (roots["tmp"] / "inside-ran").exists()


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink"])
async def test_pipeline_outside_the_roots_is_refused(make_server: MakeServer, roots: dict[str, Path],
                                                      where: str) -> None:
    path = {"absolute": str(roots["outside"] / "evil.yaml"),
            "dotdot": str(roots["config"] / ".." / "outside" / "evil.yaml"),
            "symlink": str(roots["config"] / "link-out.yaml")}[where]
    server = _server(make_server, roots)
    async with mcp.Client(server) as client:
        result = await client.call_tool("run_pipeline", {"config_path": path})
    assert result.is_error and not (roots["tmp"] / "outside-ran").exists() and count(server, "runs") == 0


async def test_system_files_as_pipelines_leak_nothing(make_server: MakeServer, roots: dict[str, Path]) -> None:
    """Whatever the roots, a system file named as a pipeline is refused without echoing its content."""
    server = _server(make_server, roots)
    secret_line = "root:x:0:0"
    async with mcp.Client(server) as client:
        for path in ("/etc/passwd", "/etc/shadow", "/proc/self/environ", "/dev/zero", "/dev/urandom", "/",
                     str(roots["ws"] / "state.db"), "../../../../../../etc/passwd", "a" * 300, "b/" * 2000,
                     "nul\x00byte"):
            with anyio.fail_after(30):
                result = await client.call_tool("run_pipeline", {"config_path": path})
            assert result.is_error, path
            assert text(result).strip() != "Error executing tool run_pipeline", f"{path[:40]}: crashed the tool"
            assert secret_line not in text(result) and "PATH=" not in text(result), (path, text(result)[:300])
    assert count(server, "runs") == 0


async def test_job_names_and_run_ids_cannot_reach_files(make_server: MakeServer, roots: dict[str, Path]) -> None:
    server = _server(make_server, roots)
    async with mcp.Client(server) as client:
        ran = await client.call_tool("run_pipeline", {"config_path": str(roots["config"] / "inside.yaml")})
        run_id = ran.structured_content["run_id"] if ran.structured_content else ""
        for job in ("../../../../../../etc/passwd", "../state.db", "/etc/passwd", "j/../../state.db", "%2e%2e/x"):
            logs = await client.call_tool("get_job_logs", {"run_id": run_id, "job": job})
            assert logs.is_error and "root:x" not in text(logs) and "SQLite" not in text(logs), (job, text(logs))
        for run in ("../../etc", "..", "x/../../y", "/etc/passwd", "a' OR '1'='1"):
            got = await client.call_tool("get_run", {"run_id": run})
            assert got.is_error and "root:x" not in text(got)
        for uri in (f"cicd://runs/{run_id}/logs/..%2F..%2F..%2Fstate.db", f"cicd://runs/{run_id}/logs/%2Fetc%2Fpasswd",
                    "cicd://runs/..%2F..%2Fetc/logs/passwd", "cicd://reports/..%2F..%2Fetc%2Fpasswd",
                    "cicd://deployments/..%2F..%2Fstate.db"):
            try:
                read = await client.read_resource(uri)
            except mcp.shared.exceptions.MCPError:
                continue
            body = " ".join(getattr(c, "text", "") or "" for c in read.contents)
            assert "root:x" not in body and "SQLite format" not in body, uri


async def test_matrix_values_and_artifacts_stay_in_the_run(make_server: MakeServer, roots: dict[str, Path]) -> None:
    """Matrix values become job names and log file names; artifacts may be symlinks pointing out."""
    tmp = roots["tmp"]
    pipeline = roots["config"] / "tricky.yaml"
    pipeline.write_text(textwrap.dedent(f"""\
        name: tricky
        source: null
        stages:
          - name: s
            jobs:
              - name: m
                matrix: {{v: ["../../../../../../{tmp.name}/escaped", "a/b", "..", "x;touch {tmp}/injected"]}}
                commands: ["echo value=$v"]
              - name: links
                commands:
                  - ln -s /etc/passwd passwd-link
                  - ln -s ../../../../../state.db db-link
                  - mkdir d && ln -s /etc d/etc-link && echo inside > d/ok.txt
                artifacts: [passwd-link, db-link, d]
        """))
    server = _server(make_server, roots)
    async with mcp.Client(server) as client:
        ran = await client.call_tool("run_pipeline", {"config_path": str(pipeline)})
    out = ran.structured_content
    assert out is not None and out["status"] == "succeeded", text(ran)
    assert len([j for j in out["jobs"] if j["name"].startswith("m[")]) == 4
    assert not (tmp / "escaped").exists() and not (tmp / "injected").exists()
    run_dir = roots["ws"] / "runs" / out["run_id"]
    # Every file the run wrote is under its run directory.
    for path in run_dir.rglob("*"):
        assert path.resolve().is_relative_to(run_dir.resolve()) or path.is_symlink(), path
    arts = server.state.store.query("SELECT path, stored_path FROM artifacts WHERE run_id = ?", (out["run_id"],))
    assert {a["path"] for a in arts} == {"d/ok.txt"}
    for a in arts:
        assert "root:x" not in Path(a["stored_path"]).read_text()


@pytest.mark.parametrize("name", ["x' OR '1'='1", "x'; DROP TABLE runs; --", "%", "_", "\x00", "ü" * 500, "*"])
def test_names_reach_sql_only_as_parameters(tmp_path: Path, name: str) -> None:
    from engine.deploy.history import DeploymentHistory
    from engine.errors import InputError
    from engine.insights import PipelineMonitor, PipelineOptimizer
    from engine.pipeline.manager import PipelineManager
    from server.tokens import TokenStore
    from server.trust import Level

    manager = PipelineManager(tmp_path / "ws")
    manager.run_pipeline({"name": "real", "source": None,
                          "stages": [{"name": "s", "jobs": [{"name": "j", "commands": ["true"]}]}]})
    store = manager.store
    TokenStore(store).create(Level.TRUSTED, "keep")
    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for call in (lambda: manager.get_run(name), lambda: manager.cancel_run(name),
                 lambda: manager.read_log(name, name), lambda: DeploymentHistory(store).get(name),
                 lambda: TokenStore(store).revoke(name), lambda: manager.create_pipeline(name)):
        with pytest.raises(InputError):
            call()
    assert manager.list_runs(pipeline=name) == []
    assert PipelineMonitor(store=store).monitor_pipeline_health(name).pipelines[0].runs == 0
    try:
        PipelineOptimizer(store=store).analyze_performance(name, 7)
    except InputError:
        pass
    assert {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")} == tables
    assert count(store, "runs") == 1 and store.query_one("SELECT revoked_at FROM tokens")["revoked_at"] is None


# -- deployments ---------------------------------------------------------------------------------


@pytest.fixture
def deployed(tmp_path: Path, workspace: Path) -> Iterator[dict[str, Any]]:
    from engine.deploy.orchestrator import DeploymentOrchestrator

    port = free_port()
    config = tmp_path / "deploy.yaml"
    config.write_text(textwrap.dedent(f"""\
        environments:
          - name: staging
            type: testing
            target: {{kind: local, command: "{APP_COMMAND}", ports: [{port}]}}
            strategy: recreate
            health_checks: [{{type: http, url: "http://{{host}}:{{port}}/health", retries: 50, interval: 0.1}}]
        """))
    orch = DeploymentOrchestrator(config, workspace)
    orch.create_deployment("svc-1", "1", "staging", [str(make_release(tmp_path, "1"))])
    assert str(orch.deploy("svc-1").status) == "success"
    yield {"config": config, "port": port, "releases": workspace / "deploy" / "staging" / "releases",
           "tmp": tmp_path}

    async def stop() -> None:
        env = orch.get_environment("staging")
        target = orch.target_for(env)
        for inst in await target.instances(env.service_name):
            await target.stop(inst)
        await orch.aclose()

    anyio.run(stop)


@pytest.mark.parametrize("version", ["..", "."])
async def test_dot_versions_cannot_delete_releases(make_server: MakeServer, deployed: dict[str, Any],
                                                   version: str) -> None:
    release = make_release(deployed["tmp"], "evil")
    live = sorted(p.name for p in (deployed["releases"] / "staging").iterdir())
    server = make_server()
    async with mcp.Client(server) as client:
        result = await client.call_tool("deploy", {"config_path": str(deployed["config"]), "environment": "staging",
                                                   "version": version, "artifacts": [str(release)]})
    assert result.is_error or (result.structured_content or {}).get("status") != "success"
    assert (deployed["releases"] / "staging").is_dir(), "the releases directory was deleted"
    assert sorted(p.name for p in (deployed["releases"] / "staging").iterdir()) == live


@pytest.mark.parametrize("version", ["1;touch PWNED", "$(touch PWNED)", "`touch PWNED`", "../../../x", "a b"])
async def test_hostile_versions_are_quoted_or_refused(make_server: MakeServer, deployed: dict[str, Any],
                                                      version: str) -> None:
    """The version reaches a shell command ({version}) and a directory name: quoted and made safe."""
    release = make_release(deployed["tmp"], "hostile")
    server = make_server()
    async with mcp.Client(server) as client:
        await client.call_tool("deploy", {"config_path": str(deployed["config"]), "environment": "staging",
                                          "version": version, "artifacts": [str(release)]})
    ws = server.state.settings.workspace
    assert not list(ws.rglob("PWNED")) and not list(deployed["tmp"].rglob("PWNED"))
    assert not (ws / "deploy" / "x").exists() and not (ws / "x").exists()
    for path in (ws / "deploy").rglob("*"):
        assert path.resolve().is_relative_to(ws.resolve()), path


async def test_deploy_artifacts_are_confined_to_the_roots(make_server: MakeServer, deployed: dict[str, Any],
                                                          workspace: Path) -> None:
    """With a config root declared, a deployment copies only files under the roots: an artifact
    outside them, through '..' or through a symlink, is refused before anything changes."""
    tmp = deployed["tmp"]
    config_root = tmp / "configs"
    config_root.mkdir()
    config = config_root / "deploy.yaml"
    config.write_text(deployed["config"].read_text())
    outside = make_release(tmp / "outside", "6")
    inside = make_release(config_root / "releases", "7")
    os.symlink(outside, config_root / "link-out")
    settings = get_settings(PIPELINE_WORKSPACE=workspace, PIPELINE_CONFIG_PATH=config_root)
    server = make_server(settings_=settings)
    async with mcp.Client(server) as client:
        for version, artifact in (("6", str(outside)), ("6", str(config_root / "link-out")),
                                  ("6", str(config_root / ".." / "outside" / outside.name))):
            refused = await client.call_tool("deploy", {"config_path": str(config), "environment": "staging",
                                                        "version": version, "artifacts": [artifact]})
            assert refused.is_error and "artifacts[0]" in text(refused) and "outside the server's roots" in text(
                refused), text(refused)
            assert served_version(deployed["port"]) == "1"
        ok = await client.call_tool("deploy", {"config_path": str(config), "environment": "staging",
                                               "version": "7", "artifacts": [str(inside)]})
    assert not ok.is_error and (ok.structured_content or {}).get("status") == "success", text(ok)
    assert served_version(deployed["port"]) == "7"
    assert not (deployed["releases"] / "staging" / "6").exists()
