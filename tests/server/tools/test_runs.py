"""run_pipeline, get_run, get_job_logs, cancel_run and the compat tool, against real runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import mcp
import mcp_types as types
import pytest

from tests.server.conftest import MakeServer, audit_rows, policy_yaml
from tests.server.test_gate import MODES, text


async def call(client: mcp.Client, name: str, args: dict[str, Any], **kw: Any) -> dict[str, Any]:
    result = await client.call_tool(name, args, **kw)
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


async def wait_finished(client: mcp.Client, run_id: str) -> dict[str, Any]:
    with anyio.fail_after(120):
        while True:
            run = await call(client, "get_run", {"run_id": run_id})
            if run["status"] not in ("queued", "running"):
                return run
            await anyio.sleep(0.05)


def pgid_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.anyio
async def test_run_pipeline_succeeds_with_every_job(make_server: MakeServer, pipelines: dict[str, Path]) -> None:
    server = make_server()
    async with mcp.Client(server) as client:
        out = await call(client, "run_pipeline",
                         {"config_path": str(pipelines["ok"]), "variables": {"GREETING": "hi-there"}})
        logs = await call(client, "get_job_logs", {"run_id": out["run_id"], "job": "compile"})
    assert out["status"] == "succeeded" and out["pipeline"] == "ok-pipe"
    assert {j["name"]: j["status"] for j in out["jobs"]} == {"compile": "succeeded", "unit": "succeeded"}
    assert all(j["exit_code"] == 0 and j["attempts"] == 1 for j in out["jobs"])
    assert out["failed_jobs"] == [] and out["resource_uri"] == f"cicd://runs/{out['run_id']}"
    assert "succeeded" in out["summary"] and out["run_id"] in out["summary"]
    assert "built with hi-there" in logs["logs"][0]["text"]


@pytest.mark.anyio
async def test_failed_run_reports_failed_jobs_with_log_tail(make_server: MakeServer,
                                                           pipelines: dict[str, Path]) -> None:
    server = make_server()
    async with mcp.Client(server) as client:
        out = await call(client, "run_pipeline", {"config_path": str(pipelines["fail"])})
    assert out["status"] == "failed"
    (failed,) = out["failed_jobs"]
    assert failed["name"] == "broken" and failed["exit_code"] == 3
    assert "AssertionError: expected 2, got 3" in failed["log_tail"]
    assert "noise 1\n" not in failed["log_tail"]          # only the tail
    assert failed["log_note"].startswith("last 20 lines") and "resource" in failed["log_note"]
    assert failed["log_uri"] == f"cicd://runs/{out['run_id']}/logs/broken"
    assert "failed: broken" in out["summary"]


@pytest.mark.anyio
async def test_invalid_pipeline_is_a_tool_error_naming_file_and_line(make_server: MakeServer,
                                                                     tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nstages:\n  - name: s\n    jobs:\n      - name: j\n        comands: [echo]\n")
    server = make_server()
    async with mcp.Client(server) as client:
        result = await client.call_tool("run_pipeline", {"config_path": str(bad)})
        neither = await client.call_tool("run_pipeline", {})
    assert result.is_error and f"{bad}:6" in text(result) and "comands" in text(result)
    assert neither.is_error and "exactly one of config_path" in text(neither)
    assert audit_rows(server)[0].outcome == "error"


@pytest.mark.anyio
async def test_tool_errors_mask_secrets(make_server: MakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", "s3cr3t-value-42")
    server = make_server()
    async with mcp.Client(server) as client:
        result = await client.call_tool("run_pipeline", {"pipeline": "s3cr3t-value-42"})
    assert result.is_error
    assert "s3cr3t-value-42" not in text(result) and "***" in text(result)
    assert "unknown pipeline '***'" in text(result)


@pytest.mark.anyio
async def test_progress_notifications_follow_the_jobs(make_server: MakeServer, pipelines: dict[str, Path]) -> None:
    server = make_server()
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(p: float, total: float | None, message: str | None) -> None:
        seen.append((p, total, message))

    async with mcp.Client(server) as client:
        out = await call(client, "run_pipeline", {"config_path": str(pipelines["ok"])}, progress_callback=progress)
        silent = await call(client, "run_pipeline", {"config_path": str(pipelines["ok"])})
    assert out["status"] == silent["status"] == "succeeded"
    messages = [m or "" for _, _, m in seen]
    for job in ("compile", "unit"):
        assert any(job in m and "start" in m for m in messages), messages
        assert any(job in m and "succeeded" in m for m in messages), messages
    assert seen[-1][0] == seen[-1][1] == 2
    progress_values = [p for p, _, _ in seen]
    assert progress_values == sorted(progress_values)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_client_cancellation_cancels_the_run(make_server: MakeServer, pipelines: dict[str, Path],
                                                   mode: str) -> None:
    server = make_server()
    long_started = anyio.Event()

    async def progress(p: float, total: float | None, message: str | None) -> None:
        if message and "long" in message and "start" in message:
            long_started.set()

    async with mcp.Client(server, mode=mode) as client:
        async with anyio.create_task_group() as tg:
            async def run() -> None:
                # The run outlives a cancelled call unless the caller asked otherwise.
                await client.call_tool("run_pipeline", {"config_path": str(pipelines["slow"]),
                                                        "cancel_on_disconnect": True},
                                       progress_callback=progress)

            tg.start_soon(run)
            with anyio.fail_after(60):
                await long_started.wait()
            # "started" is announced just before the process starts: wait until its group is on record.
            with anyio.fail_after(30):
                while True:
                    row = server.state.store.query_one("SELECT run_id, recovery_json FROM jobs WHERE name = 'long'")
                    if row is not None and row["recovery_json"]:
                        break
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        run_id = row["run_id"]
        final = await wait_finished(client, run_id)
        with anyio.fail_after(30):   # the server finishes the cancelled call on its own time
            while not [r for r in audit_rows(server) if r.tool == "run_pipeline"]:
                await anyio.sleep(0.02)
    assert final["status"] == "cancelled"
    assert {j["name"]: j["status"] for j in final["jobs"]}["long"] == "cancelled"
    assert not pgid_alive(json.loads(row["recovery_json"])["pgid"])
    (audited,) = [r for r in audit_rows(server) if r.tool == "run_pipeline"]
    assert (audited.decision, audited.outcome) == ("allowed", "cancelled")


@pytest.mark.anyio
async def test_wait_false_returns_at_once_and_cancel_run_stops_it(make_server: MakeServer,
                                                                  pipelines: dict[str, Path]) -> None:
    server = make_server()
    async with mcp.Client(server) as client:
        started = await call(client, "run_pipeline", {"config_path": str(pipelines["slow"]), "wait": False})
        assert started["status"] in ("queued", "running")
        run_id = started["run_id"]
        with anyio.fail_after(60):
            while True:
                live = await call(client, "get_run", {"run_id": run_id})
                if any(j["name"] == "long" and j["status"] == "running" for j in live["jobs"]):
                    break
                await anyio.sleep(0.05)
        cancelled = await call(client, "cancel_run", {"run_id": run_id})
        assert cancelled["cancel_requested"] is True
        final = await wait_finished(client, run_id)
        again = await call(client, "cancel_run", {"run_id": run_id})
    assert final["status"] == "cancelled"
    assert again["cancel_requested"] is False and "already ended" in again["summary"]


@pytest.mark.anyio
async def test_wait_false_with_a_bad_pipeline_fails_in_the_call(make_server: MakeServer, tmp_path: Path) -> None:
    server = make_server()
    async with mcp.Client(server) as client:
        result = await client.call_tool("run_pipeline", {"config_path": str(tmp_path / "missing.yaml"),
                                                         "wait": False})
    assert result.is_error and "missing.yaml" in text(result)


@pytest.mark.anyio
async def test_get_job_logs_is_bounded_and_says_what_was_cut(make_server: MakeServer,
                                                              pipelines: dict[str, Path]) -> None:
    server = make_server()
    async with mcp.Client(server) as client:
        run = await call(client, "run_pipeline", {"config_path": str(pipelines["fail"])})
        rid = run["run_id"]
        tail = await call(client, "get_job_logs", {"run_id": rid, "job": "broken", "tail": 3})
        grep = await call(client, "get_job_logs", {"run_id": rid, "job": "broken", "grep": r"noise 4\d", "tail": 5})
        failed = await call(client, "get_job_logs", {"run_id": rid, "failed_only": True})
        every = await call(client, "get_job_logs", {"run_id": rid})
        unknown = await client.call_tool("get_job_logs", {"run_id": rid, "job": "nope"})
        bad_re = await client.call_tool("get_job_logs", {"run_id": rid, "grep": "("})
        no_run = await client.call_tool("get_run", {"run_id": "20990101-000000-abcdef"})
    (log,) = tail["logs"]
    assert log["lines_returned"] == 3 and log["truncated"] is True and "last 3 lines" in log["note"]
    assert "AssertionError" in log["text"] and "noise 1\n" not in log["text"]
    (g,) = grep["logs"]
    assert g["lines_returned"] == 5 and g["truncated"] is True and "10 matching lines" in g["note"]
    assert "noise 49" in g["text"] and "noise 40" not in g["text"]
    assert [item["job"] for item in failed["logs"]] == ["broken"]
    assert {item["job"] for item in every["logs"]} == {"broken", "fine"}
    assert unknown.is_error and "no job 'nope'" in text(unknown) and "broken" in text(unknown)
    assert bad_re.is_error and "regular expression" in text(bad_re)
    assert no_run.is_error and "no run" in text(no_run)


@pytest.mark.anyio
async def test_compat_call_module_function_runs_a_pipeline(make_server: MakeServer,
                                                           pipelines: dict[str, Path]) -> None:
    server = make_server()
    async with mcp.Client(server) as client:
        out = await call(client, "call_module_function", {
            "module": "ci_cd_automation", "function": "run_pipeline",
            "arguments": {"config_path": str(pipelines["ok"])}})
        bad_args = await client.call_tool("call_module_function", {
            "module": "ci_cd_automation", "function": "run_pipeline", "arguments": {"nope": 1}})
        bad_module = await client.call_tool("call_module_function", {
            "module": "os", "function": "run_pipeline", "arguments": {}})
    assert out["tool"] == "run_pipeline" and out["result"]["status"] == "succeeded"
    assert bad_args.is_error and "arguments for run_pipeline" in text(bad_args)
    assert bad_module.is_error and "ci_cd_automation" in text(bad_module)


@pytest.mark.anyio
async def test_every_tool_declares_schemas_and_honest_annotations(make_server: MakeServer) -> None:
    server = make_server(policy_yaml(compatibility="true"))  # call_module_function is listed only then
    async with mcp.Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"run_pipeline", "pipeline_health", "get_run", "get_job_logs", "cancel_run",
            "call_module_function"} <= set(tools)
    for tool in tools.values():
        assert tool.title and tool.description and tool.output_schema and tool.annotations
        assert "summary" in tool.output_schema["properties"]
        assert tool.input_schema.get("additionalProperties") is False
    assert tools["run_pipeline"].annotations.destructive_hint is True  # type: ignore[union-attr]
    for name in ("pipeline_health", "get_run", "get_job_logs"):
        assert tools[name].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert isinstance(tools["get_job_logs"], types.Tool)


@pytest.mark.anyio
async def test_big_runs_are_cut_and_say_so(make_server: MakeServer, pipelines: dict[str, Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from server.tools import _present, runs

    monkeypatch.setattr(_present, "MAX_JOBS_LISTED", 1)
    monkeypatch.setattr(runs, "LOGS_BUDGET_BYTES", 10)
    server = make_server()
    async with mcp.Client(server) as client:
        out = await call(client, "run_pipeline", {"config_path": str(pipelines["fail"])})
        logs = await call(client, "get_job_logs", {"run_id": out["run_id"]})
        whole = await client.read_resource(out["resource_uri"])
    # The failed job is the one kept.
    assert [j["name"] for j in out["jobs"]] == ["broken"] and out["jobs_omitted"] == 1
    assert [item["job"] for item in logs["logs"]] == ["broken"] and logs["jobs_omitted"] == ["fine"]
    assert logs["logs"][0]["truncated"] and "output limit" in logs["summary"]
    content = whole.contents[0]
    assert isinstance(content, types.TextResourceContents)
    assert {j["name"] for j in json.loads(content.text)["jobs"]} == {"broken", "fine"}
