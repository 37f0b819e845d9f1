"""Benchmark: the MCP server over stdio, as ratios against baselines measured in the same run.

1. Round trip: the median time of a `tools/call` of pipeline_health with 1,000 stored runs
   (10,000 job records, made by bench/insights.py's generator), against a trivial `echo` tool
   on a bare MCPServer of the same SDK over the same transport. Calls alternate between the two
   servers so that load on the machine hits both alike. Goal: <= 1.5x.
2. Cold start: from spawning the process to the first `tools/list` response, our server
   against a bare MCPServer with one tool (heavy SDKs - docker, paramiko, kubernetes - must
   load only when first used). Alternating, median of --starts. Goal: <= 1.2x.
3. Listing: the size of our `tools/list` answer as sent (characters / 4 ~ tokens), for the
   policy's stdio caller. Goal: <= 4,000 tokens.

    python3 bench/mcp.py [--calls 300] [--starts 7] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# This file is named mcp.py: its own directory must not shadow the SDK.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))

import mcp  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

from engine.store import open_store  # noqa: E402

ECHO_SERVER = """\
from mcp.server.mcpserver import MCPServer

server = MCPServer("echo")


@server.tool()
def echo(text: str) -> str:
    return text


server.run()
"""

GOALS = {"round_trip": 1.5, "cold_start": 1.2}
LISTING_GOAL_TOKENS = 4000


def populate_runs(workspace: Path, runs: int) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_insights", BENCH / "insights.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)   # bench/insights.py: realistic runs, made inside SQLite
    JOBS_PER_RUN, populate = generator.JOBS_PER_RUN, generator.populate

    store = open_store(workspace)
    try:
        populate(store, runs * JOBS_PER_RUN)
        n = store.query_one("SELECT COUNT(*) AS n FROM runs")
        assert n is not None and n["n"] == runs, f"expected {runs} runs, the generator made {n and n['n']}"
    finally:
        store.close()


def params(workspace: Path, echo_file: Path) -> tuple[StdioServerParameters, StdioServerParameters]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["PIPELINE_WORKSPACE"] = str(workspace)
    env["PYTHONPATH"] = str(ROOT)
    ours = StdioServerParameters(command=sys.executable,
                                 args=["-m", "server", "serve", "--policy", str(ROOT / "trust_policy.yaml")],
                                 env=env, cwd=str(ROOT))
    bare = StdioServerParameters(command=sys.executable, args=[str(echo_file)], env=env, cwd=str(ROOT))
    return ours, bare


async def round_trips(ours: StdioServerParameters, bare: StdioServerParameters, calls: int) -> dict[str, float]:
    t_ours: list[float] = []
    t_bare: list[float] = []
    async with mcp.Client(ours) as c_ours, mcp.Client(bare) as c_bare:
        for i in range(calls + 20):   # the first 20 of each warm up
            t0 = time.perf_counter()
            r = await c_bare.call_tool("echo", {"text": "x"})
            t1 = time.perf_counter()
            h = await c_ours.call_tool("pipeline_health", {})
            t2 = time.perf_counter()
            assert not r.is_error and not h.is_error, (r, h)
            if i >= 20:
                t_bare.append(t1 - t0)
                t_ours.append(t2 - t1)
        assert h.structured_content and h.structured_content["pipelines"][0]["runs"] > 0
    ours_ms, bare_ms = statistics.median(t_ours) * 1000, statistics.median(t_bare) * 1000
    return {"pipeline_health_ms": ours_ms, "echo_ms": bare_ms, "ratio": ours_ms / bare_ms}


async def listing_tokens(p: StdioServerParameters) -> dict[str, int]:
    async with mcp.Client(p) as client:
        listing = await client.list_tools()
    wire = listing.model_dump_json(by_alias=True, exclude_none=True)
    return {"tools": len(listing.tools), "chars": len(wire), "tokens": len(wire) // 4}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def cold_start(p: StdioServerParameters) -> tuple[float, float]:
    """(wall seconds to the first tools/list answer, CPU seconds of the server's whole life)."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    async with mcp.Client(p) as client:
        tools = await client.list_tools()
        elapsed = time.perf_counter() - t0
    assert tools.tools
    # The client has reaped the server here, so its CPU time is counted.
    return elapsed, _children_cpu() - cpu0


async def cold_starts(ours: StdioServerParameters, bare: StdioServerParameters, starts: int) -> dict[str, float]:
    w_ours, w_bare, c_ours, c_bare = [], [], [], []
    for _ in range(starts):
        w, c = await cold_start(bare)
        w_bare.append(w)
        c_bare.append(c)
        w, c = await cold_start(ours)
        w_ours.append(w)
        c_ours.append(c)
    ours_ms, bare_ms = statistics.median(w_ours) * 1000, statistics.median(w_bare) * 1000
    cpu_ours, cpu_bare = statistics.median(c_ours) * 1000, statistics.median(c_bare) * 1000
    # Wall time is the goal; CPU time (same ratio when the machine is idle) shows what a busy
    # machine's scheduling adds to the wall-clock figures.
    return {"server_ms": ours_ms, "bare_ms": bare_ms, "ratio": ours_ms / bare_ms,
            "server_cpu_ms": cpu_ours, "bare_cpu_ms": cpu_bare, "cpu_ratio": cpu_ours / cpu_bare}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000, help="stored runs (default 1000)")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--starts", type=int, default=7)
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cicd-bench-mcp-") as tmp:
        workspace = Path(tmp) / "ws"
        populate_runs(workspace, args.runs)
        echo_file = Path(tmp) / "echo_server.py"
        echo_file.write_text(ECHO_SERVER)
        ours, bare = params(workspace, echo_file)
        rt = anyio.run(round_trips, ours, bare, args.calls)
        cs = anyio.run(cold_starts, ours, bare, args.starts)
        listing = anyio.run(listing_tokens, ours)
    results = {"round_trip": rt, "cold_start": cs, "listing": listing, "runs": args.runs, "calls": args.calls,
               "starts": args.starts}
    print(f"round trip  pipeline_health ({args.runs} runs) {rt['pipeline_health_ms']:.2f} ms"
          f" / echo {rt['echo_ms']:.2f} ms = {rt['ratio']:.2f}x (goal <= {GOALS['round_trip']}x)")
    print(f"cold start  server {cs['server_ms']:.0f} ms / bare MCPServer {cs['bare_ms']:.0f} ms"
          f" = {cs['ratio']:.2f}x (goal <= {GOALS['cold_start']}x); CPU {cs['server_cpu_ms']:.0f} ms"
          f" / {cs['bare_cpu_ms']:.0f} ms = {cs['cpu_ratio']:.2f}x")
    print(f"tools/list  {listing['tools']} tools, {listing['chars']} characters ~ {listing['tokens']} tokens"
          f" (goal <= {LISTING_GOAL_TOKENS})")
    print(json.dumps(results))
    missed = [k for k, goal in GOALS.items() if results[k]["ratio"] > goal]  # type: ignore[index]
    if listing["tokens"] > LISTING_GOAL_TOKENS:
        missed.append("listing")
    if missed:
        print("missed: " + ", ".join(missed), file=sys.stderr)
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
