"""Load benchmark: the MCP server over streamable HTTP on loopback, many clients at once.

Starts `python -m server serve --transport http` on 127.0.0.1 (a port in 18700-18799) with a
fresh workspace and a trusted bearer token, then, at the same time:
  - `--clients` sessions (default 20), each running `--runs` small pipelines (default 3) with
    run_pipeline(wait=true), one after the other;
  - `--health` pipeline_health calls (default 200), all in flight at once, spread over
    `--health-sessions` sessions (default 20);
  - `--anonymous` sessions (default 500) opened without a token (an `initialize` each, 50 at a
    time) and left idle until the end: the server holds only as many as the policy's limit for
    anonymous callers allows (the rest get 429), and the trusted clients must not notice.
Everything is bounded: a fixed number of calls and `--timeout` seconds in all.

Reports throughput, p50/p99 latency per tool, errors (the goal is zero), whether every run a
client was told about is in the store with its final status (nothing lost), and the server's
peak memory (VmHWM of its process, and the RSS sampled every 50 ms).

    python3 bench/load.py [--clients 20] [--runs 3] [--health 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# bench/mcp.py would shadow the SDK: this directory must not be on the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))

PIPELINE = """\
name: load-{i}
source: null
stages:
  - name: build
    jobs:
      - name: compile
        commands: ["echo compiling", "echo built"]
      - name: lint
        commands: ["echo linting"]
  - name: test
    jobs:
      - name: unit
        commands: ["for n in 1 2 3 4 5; do echo test $n; done"]
"""


def free_port() -> int:
    for port in range(18700, 18800):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit("no free port in 18700-18799")


def memory_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def run_load(url: str, token: str, pipelines: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    import httpx2  # the HTTP client the SDK's transports use
    import mcp
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT

    latencies: dict[str, list[float]] = {"run_pipeline": [], "pipeline_health": []}
    errors: list[str] = []
    run_ids: list[tuple[str, str]] = []
    anonymous: dict[str, int] = {}

    async def anonymous_sessions(n: int) -> None:
        """Open `n` sessions without a token, 50 at a time, and leave them idle (never closed)."""
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "idle", "version": "1"}}}
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        limit = anyio.Semaphore(50)
        async with httpx2.AsyncClient(timeout=30, limits=httpx2.Limits(max_connections=50)) as hc:
            async def one() -> None:
                async with limit:
                    try:
                        r = await hc.post(url, json=initialize, headers=headers)
                        key = {200: "opened", 429: "refused_429"}.get(r.status_code, f"status_{r.status_code}")
                    except Exception as exc:  # noqa: BLE001 - counted, apart from the trusted clients' errors
                        key = f"error_{type(exc).__name__}"
                    anonymous[key] = anonymous.get(key, 0) + 1

            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(one)

    async def session(work: Any) -> None:
        try:
            async with httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {token}"},
                timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT),
                limits=httpx2.Limits(keepalive_expiry=args.keepalive_expiry)) as hc:
                async with mcp.Client(streamable_http_client(url, http_client=hc)) as client:
                    await work(client)
        except Exception as exc:  # noqa: BLE001 - counted as an error of the benchmark
            errors.extend(f"session: {type(e).__name__}: {e}"[:300] for e in _leaves(exc))

    async def timed(client: Any, tool: str, arguments: dict[str, Any]) -> Any:
        t0 = time.perf_counter()
        try:
            result = await client.call_tool(tool, arguments)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{tool}: {type(exc).__name__}: {exc}"[:300])
            return None
        latencies[tool].append(time.perf_counter() - t0)
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            errors.append(f"{tool}: {text}"[:300])
        return result

    def runner(i: int) -> Any:
        async def work(client: Any) -> None:
            for _ in range(args.runs):
                result = await timed(client, "run_pipeline", {"config_path": str(pipelines[i])})
                if result is not None and result.structured_content:
                    run_ids.append((result.structured_content["run_id"], result.structured_content["status"]))
        return work

    def health(n: int) -> Any:
        async def work(client: Any) -> None:
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(timed, client, "pipeline_health", {})
        return work

    per_session = [args.health // args.health_sessions + (1 if i < args.health % args.health_sessions else 0)
                   for i in range(args.health_sessions)]
    t0 = time.perf_counter()
    with anyio.fail_after(args.timeout):
        async with anyio.create_task_group() as tg:
            for i in range(args.clients):
                tg.start_soon(session, runner(i))
            for n in per_session:
                tg.start_soon(session, health(n))
            if args.anonymous:
                tg.start_soon(anonymous_sessions, args.anonymous)
    wall = time.perf_counter() - t0
    return {"wall": wall, "latencies": latencies, "errors": errors, "run_ids": run_ids, "anonymous": anonymous}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="pipelines per client")
    parser.add_argument("--health", type=int, default=200)
    parser.add_argument("--health-sessions", type=int, default=20)
    parser.add_argument("--anonymous", type=int, default=500, help="idle anonymous sessions opened beside them")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--keepalive-expiry", type=float, default=5.0,
                        help="seconds a client keeps an idle connection (the HTTP client's default is 5)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from engine.store import open_store
    from server.tokens import TokenStore
    from server.trust import Level

    tmp = Path(tempfile.mkdtemp(prefix="cicd-load-"))
    ws = tmp / "ws"
    policy = tmp / "policy.yaml"
    policy.write_text("version: 1\nstdio: {level: untrusted}\nhttp: {anonymous_level: untrusted, tokens: []}\n")
    pipelines = []
    for i in range(args.clients):
        p = tmp / f"load-{i}.yaml"
        p.write_text(PIPELINE.format(i=i))
        pipelines.append(p)
    with open_store(ws) as store:
        token, _ = TokenStore(store).create(Level.TRUSTED, "load")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PIPELINE_WORKSPACE=str(ws), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--transport", "http", "--port", str(port),
                             "--policy", str(policy)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    peak_rss = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak_rss[0] = max(peak_rss[0], memory_kb(proc.pid, "VmRSS"))
            time.sleep(0.05)

    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("server did not start")
            time.sleep(0.05)
        idle_rss = memory_kb(proc.pid, "VmRSS")
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = anyio.run(run_load, f"http://127.0.0.1:{port}/mcp", token, pipelines, args)
        stop.set()
        sampler.join()
        hwm = memory_kb(proc.pid, "VmHWM")
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()

    # Nothing lost: every run a client was told about is stored, finished, with the status it was told.
    with open_store(ws) as store:
        stored = {r["run_id"]: r["status"] for r in store.query("SELECT run_id, status FROM runs")}
        jobs = store.query_one("SELECT COUNT(*) AS n FROM jobs WHERE status = 'succeeded'")["n"]
    told = dict(out["run_ids"])
    missing = [r for r in told if r not in stored]
    mismatched = [r for r, s in told.items() if stored.get(r) not in (s,)]
    unreported = [r for r in stored if r not in told]
    calls = sum(len(v) for v in out["latencies"].values())
    report = {
        "clients": args.clients, "runs_per_client": args.runs, "health_calls": args.health,
        "wall_s": round(out["wall"], 2), "calls_completed": calls,
        "throughput_calls_per_s": round(calls / out["wall"], 1),
        "runs_per_s": round(len(out["latencies"]["run_pipeline"]) / out["wall"], 2),
        "latency": {tool: {"n": len(v), "p50_ms": round(percentile(v, 50) * 1000, 1),
                           "p99_ms": round(percentile(v, 99) * 1000, 1),
                           "mean_ms": round(statistics.fmean(v) * 1000, 1) if v else None}
                    for tool, v in out["latencies"].items()},
        "errors": len(out["errors"]), "error_samples": out["errors"][:5],
        "anonymous_sessions": {"attempted": args.anonymous, **out["anonymous"]},
        "runs_expected": args.clients * args.runs, "runs_reported": len(told), "runs_stored": len(stored),
        "runs_succeeded": sum(1 for s in stored.values() if s == "succeeded"), "jobs_succeeded": jobs,
        "runs_missing_from_store": len(missing), "runs_status_mismatch": len(mismatched),
        "runs_stored_not_reported": len(unreported),
        "server_idle_rss_mb": round(idle_rss / 1024, 1), "server_peak_rss_mb": round(peak_rss[0] / 1024, 1),
        "server_vmhwm_mb": round(hwm / 1024, 1),
        "server_stderr_lines": len([line for line in stderr.splitlines() if line.strip()]),
        "server_stderr_tail": stderr.splitlines()[-15:],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        lat = report["latency"]
        print(f"{args.clients} clients x {args.runs} pipelines + {args.health} concurrent pipeline_health calls, "
              f"{report['wall_s']} s wall")
        print("| tool | calls | p50 (ms) | p99 (ms) | mean (ms) |\n|---|---:|---:|---:|---:|")
        for tool, v in lat.items():
            print(f"| {tool} | {v['n']} | {v['p50_ms']} | {v['p99_ms']} | {v['mean_ms']} |")
        print(f"throughput {report['throughput_calls_per_s']} calls/s ({report['runs_per_s']} pipeline runs/s); "
              f"errors {report['errors']}")
        print(f"runs: expected {report['runs_expected']}, reported {report['runs_reported']}, stored "
              f"{report['runs_stored']}, succeeded {report['runs_succeeded']}, "
              f"missing {report['runs_missing_from_store']}, status mismatch {report['runs_status_mismatch']}")
        print(f"anonymous sessions beside them: {report['anonymous_sessions']}")
        print(f"server memory: idle {report['server_idle_rss_mb']} MB, peak RSS {report['server_peak_rss_mb']} MB, "
              f"VmHWM {report['server_vmhwm_mb']} MB")
        for e in report["error_samples"]:
            print("  error:", e)
        if report["errors"]:
            print("  server stderr (tail):", *report["server_stderr_tail"], sep="\n    ")
    ok = report["errors"] == 0 and report["runs_stored"] == report["runs_expected"] == report["runs_succeeded"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
