"""tool_manifests/ must describe exactly the registered tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.settings import get_settings
from engine.store import SQLiteStore
from server.app import build_server
from server.manifests import check_manifests, render_manifests, write_manifests
from server.trust import load_policy
from tests.server.conftest import REPO


def _server(tmp_path: Path):  # type: ignore[no-untyped-def]
    return build_server(load_policy(REPO / "trust_policy.yaml"),
                        settings=get_settings(PIPELINE_WORKSPACE=tmp_path), store=SQLiteStore(":memory:"))


def test_tool_manifests_are_up_to_date(tmp_path: Path) -> None:
    problems = check_manifests(_server(tmp_path), REPO / "tool_manifests")
    assert not problems, "\n".join(problems) + "\nregenerate with `cicd-mcp manifests`"


def test_manifest_content_and_staleness_detection(tmp_path: Path) -> None:
    server = _server(tmp_path)
    docs = {name: json.loads(text) for name, text in render_manifests(server).items()}
    run = docs["run_pipeline.json"]
    assert run["trustLevel"] == "trusted" and run["annotations"]["destructiveHint"] is True
    assert run["inputSchema"]["properties"]["wait"]["type"] == "boolean"
    assert "summary" in run["outputSchema"]["properties"]
    assert docs["pipeline_health.json"]["trustLevel"] == "untrusted"

    out = tmp_path / "m"
    write_manifests(server, out)
    assert check_manifests(server, out) == []
    (out / "get_run.json").write_text("{}")
    (out / "old_tool.json").write_text("{}")
    (out / "cancel_run.json").unlink()
    problems = check_manifests(server, out)
    assert any("get_run.json is out of date" in p for p in problems)
    assert any("old_tool.json describes a tool that is not registered" in p for p in problems)
    assert any("cancel_run.json is missing" in p for p in problems)


def test_the_server_takes_its_schemas_from_the_manifests_unless_their_fields_differ(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from server import app
    from server.tools._registry import input_schema

    copy = tmp_path / "manifests"
    shutil.copytree(REPO / "tool_manifests", copy)
    cancel = json.loads((copy / "cancel_run.json").read_text())
    cancel["inputSchema"]["properties"]["run_id"]["description"] = "from the manifest"
    (copy / "cancel_run.json").write_text(json.dumps(cancel))
    stale = json.loads((copy / "get_run.json").read_text())
    stale["inputSchema"]["properties"]["gone_field"] = {"type": "string"}
    (copy / "get_run.json").write_text(json.dumps(stale))
    monkeypatch.setattr(app, "_MANIFESTS", copy)
    server = _server(tmp_path / "ws")
    tools = {t.name: t for t in server.registered_tools()}
    assert tools["cancel_run"].parameters["properties"]["run_id"]["description"] == "from the manifest"
    assert tools["get_run"].parameters == input_schema(server.specs["get_run"])   # stale: generated instead
    # The manifests themselves are rendered from the models, never from the server's tools.
    assert check_manifests(server, REPO / "tool_manifests") == []
