"""One whole agent session over stdio, as an agent drives it: the server is a subprocess, the
client the official one. Every result stays within its budget and says what it cut; what the new
tools say is checked against the world (ports, processes, a run that outlives its session)."""

from __future__ import annotations

import json
import os
import socket
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest
from mcp.client.stdio import StdioServerParameters

from tests.engine.deploy.helpers import APP_COMMAND, make_release
from tests.server.conftest import REPO, policy_yaml
from tests.server.test_serve import server_env

BUDGET = 8000
PORTS = (18843, 18844)   # outside every suite's port pool (this module runs beside the others)

# Ten failing jobs, each printing two 2 MB lines: what blew results up to 661,541 characters.
NOISY = "name: noisy\nstages:\n  - name: test\n    jobs:\n" + "".join(
    f"      - name: job{i}\n        commands:\n"
    "          - python3 -c \"import sys; [sys.stdout.write('E' * 2_000_000 + chr(10)) for _ in range(2)]\"\n"
    f"          - echo job{i} failed, see above\n          - exit 1\n"
    for i in range(10)
)

LATER = """\
name: later
stages:
  - name: work
    jobs:
      - name: slow
        commands:
          - sleep 3
          - echo finished-after-the-session
"""


def answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z" if Path(f"/proc/{pid}").exists() else False


class Session:
    """Calls with the budget checked on every result."""

    def __init__(self, client: mcp.Client) -> None:
        self.client = client
        self.sizes: dict[str, int] = {}

    async def call(self, tool: str, args: dict[str, Any], *, error: bool = False, **kw: Any) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args, **kw)
        body = "\n".join(c.text for c in result.content if c.type == "text")
        assert result.is_error == error, body[:2000]
        limit = args.get("max_chars", BUDGET)
        assert len(body) <= limit, (tool, len(body))
        if result.structured_content is not None:
            size = len(json.dumps(result.structured_content, ensure_ascii=False))
            assert size <= limit, (tool, size)
            self.sizes[tool] = max(self.sizes.get(tool, 0), size, len(body))
            return dict(result.structured_content)
        return {"text": body}


def params(workspace: Path, policy: Path) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "server", "serve", "--policy", str(policy)],
                                 env=server_env(workspace), cwd=str(REPO))


@pytest.mark.anyio
@pytest.mark.slow
async def test_one_agent_session_over_stdio(workspace: Path, tmp_path: Path) -> None:
    for port in PORTS:
        assert not answers(port), f"port {port} is taken by something else"
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml())
    noisy, later = tmp_path / "noisy.yaml", tmp_path / "later.yaml"
    noisy.write_text(NOISY)
    later.write_text(LATER)
    config = tmp_path / "deploy.yaml"
    config.write_text(textwrap.dedent(f"""\
        environments:
          - name: staging
            service: web
            target: {{kind: local, command: "{APP_COMMAND}", ports: [{PORTS[0]}, {PORTS[1]}]}}
            health_checks:
              - {{type: http, url: "http://{{host}}:{{port}}/health", expect_status: 200, timeout: 2,
                  retries: 30, interval: 0.1}}
        """))
    release = make_release(tmp_path / "artifacts", "1")
    beats: list[str] = []

    async def progress(p: float, total: float | None, message: str | None) -> None:
        beats.append(message or "")

    async with mcp.Client(params(workspace, policy)) as client:
        s = Session(client)
        listing = (await client.list_tools()).tools
        names = {t.name for t in listing}
        assert {"list_runs", "wait_for_run", "validate_pipeline", "environment_status", "stop_service",
                "get_service_logs"} <= names and "call_module_function" not in names
        assert all(t.output_schema and t.input_schema for t in listing)

        # Nothing runs to validate; a broken file is answered with where.
        checked = await s.call("validate_pipeline", {"config_path": str(noisy)})
        assert checked["valid"] and len(checked["jobs"]) == 10 and checked["waves"][0][0] == "job0"
        broken = await s.call("validate_pipeline", {"yaml": "name: x\nstages:\n  - name: a\n    jobs: 7\n"})
        assert not broken["valid"] and broken["errors"][0]["where"] == "<pipeline>:4:11"

        # The noisy run: 40 MB of output, one bounded answer that says what it left out.
        run = await s.call("run_pipeline", {"config_path": str(noisy)}, progress_callback=progress)
        assert run["status"] == "failed" and len(run["failed_jobs"]) + run["failed_jobs_omitted"] == 10
        assert all("chars cut" in f["log_tail"] and "get_job_logs" in f["log_note"] for f in run["failed_jobs"])
        assert "left out" in run["summary"] or run["failed_jobs_omitted"] == 0
        finished = [b for b in beats if " failed" in b and b.startswith("job")]
        assert len(finished) == 10, beats   # every finish event sent
        rid = run["run_id"]

        logs = await s.call("get_job_logs", {"run_id": rid, "failed_only": True})
        assert logs["logs"] and all(item["truncated"] and item.get("more") for item in logs["logs"])
        assert len(logs["logs"]) + len(logs["jobs_omitted"]) == 10
        page = await s.call("get_job_logs", {"run_id": rid, "job": "job3", "offset": 2, "head": 2,
                                             "timestamps": False})
        (log,) = page["logs"]
        assert log["lines_returned"] == len(log["text"].split("\n")) == 2 and log["next_offset"] == 4
        assert "chars cut" in log["text"] and not log["text"].startswith("20")   # no timestamp
        bigger = await s.call("get_job_logs", {"run_id": rid, "job": "job3", "offset": 2, "head": 2,
                                               "timestamps": False, "max_chars": 20000})
        assert len(bigger["logs"][0]["text"]) > len(log["text"])
        window = await client.read_resource(f"cicd://runs/{rid}/logs/job3?offset=2&limit=5")
        assert len(window.contents[0].text) < 64 * 1024 and "next window" in window.contents[0].text
        end = await client.read_resource(f"cicd://runs/{rid}/logs/job3")
        assert len(end.contents[0].text) < 300 * 1024 and "job3 failed, see above" in end.contents[0].text

        listed = await s.call("list_runs", {"pipeline": "noisy"})
        assert [r["run_id"] for r in listed["runs"]] == [rid]
        unknown = await client.call_tool("list_runs", {"pipeline": "noisyy"})
        assert unknown.is_error and "did you mean 'noisy'" in unknown.content[0].text

        # A run left behind: wait=false, then the session ends.
        started = await s.call("run_pipeline", {"config_path": str(later), "wait": False})
        later_id = started["run_id"]

        # Deploy, see it live, read its output, stop it: each answer checked against the world.
        deployed = await s.call("deploy", {"version": "1", "environment": "staging", "artifacts": [str(release)],
                                           "config_path": str(config)})
        assert deployed["status"] == "success"
        status = await s.call("environment_status", {"environment": "staging"})
        assert status["live_versions"] == ["1"] and len(status["instances"]) == 2
        assert all(i["answers"] for i in status["instances"]) and all(answers(p) for p in PORTS)
        pids = [int(i["ref"]) for i in status["instances"]]
        assert all(pid_alive(pid) for pid in pids)
        out = await s.call("get_service_logs", {"environment": "staging"})
        assert len(out["logs"]) == 2
        stopped = await s.call("stop_service", {"environment": "staging"})
        assert len(stopped["stopped"]) == 2 and not stopped["still_answering"]
        assert not any(answers(p) for p in PORTS)
        with anyio.fail_after(10):
            while any(pid_alive(pid) for pid in pids):
                await anyio.sleep(0.05)
        after = await s.call("environment_status", {"environment": "staging"})
        assert after["live_versions"] == [] and "nothing running" in after["summary"]

    # A new session: the run started by the closed one went on and finished.
    async with mcp.Client(params(workspace, policy)) as client:
        s = Session(client)
        with anyio.fail_after(90):
            while True:
                waited = await s.call("wait_for_run", {"run_id": later_id, "timeout": 10})
                if not waited["call_again"]:
                    break
        assert waited["status"] == "succeeded" and waited["finished"]
        tail = await s.call("get_job_logs", {"run_id": later_id, "job": "slow"})
        assert "finished-after-the-session" in tail["logs"][0]["text"]
    assert max(s.sizes.values()) <= BUDGET
