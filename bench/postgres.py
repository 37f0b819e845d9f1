"""PostgreSQL store benchmarks, each a ratio or a count measured in one run against a PostgreSQL
server started here (Debian's postgresql 15, a temp data dir, 127.0.0.1).

1. The scheduler benchmark's 500-job DAG of `true` (bench/scheduler.py), run with the
   PostgreSQL store and with the SQLite store, alternately: median wall time ratio.
   Goal: PostgreSQL / SQLite <= 1.5.
2. Four servers (`python -m server serve --transport http`, each with a workspace of its own)
   sharing one PostgreSQL database, under bench/load.py's load split between them (clients
   running pipelines, concurrent pipeline_health calls): errors (goal 0), every run a client
   was told about stored with that final status (nothing lost), p50/p99 per tool; and, for
   scale, the same load on one server with the SQLite store (p99 ratio).
3. How soon a waiter sees a run's change committed by another connection: woken by the
   server's one LISTEN connection (engine.store.notify.Hub, as wait_for_run waits) against
   reading the run every 0.25 s (as it did before); medians of --wakes changes.

    python3 bench/postgres.py [--repeat 3] [--workers 2] [--servers 4] [--clients 20] [--runs 3]
                              [--health 200] [--wakes 40] [--skip-scheduler] [--skip-load] [--json]

The server runs with synchronous_commit=off: a commit returns before its WAL reaches the disk,
as the SQLite store's WAL with synchronous=NORMAL does; both keep every commit through a
process crash.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# bench/mcp.py would shadow the SDK: this directory must not be on the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


services = _load("cicd_bench_services", ROOT / "scripts" / "services.py")


def new_database(server: Any, name: str) -> str:
    import psycopg

    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return str(server.url_for(name))


def bench_scheduler(server: Any, repeat: int, workers: int) -> dict[str, Any]:
    from engine.pipeline.manager import PipelineManager
    from engine.store import open_store

    scheduler = _load("cicd_bench_scheduler", BENCH / "scheduler.py")
    graph = scheduler.layered_dag()
    spec = scheduler.as_pipeline("dag500", graph, dict.fromkeys(graph, "true"))
    times: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeat):
            for dialect in ("sqlite", "postgresql"):
                ws = Path(tmp) / f"{dialect}{r}"
                url = new_database(server, f"sched{r}") if dialect == "postgresql" else ""
                store = open_store(ws, url=url)
                manager = PipelineManager(ws, store=store, max_workers=workers)
                start = time.perf_counter()
                run = manager.run_pipeline(spec)
                times[dialect].append(time.perf_counter() - start)
                store.close()
                assert run.status.value == "succeeded", run.reason
    pg, lite = statistics.median(times["postgresql"]), statistics.median(times["sqlite"])
    # On a shared machine one slow repetition moves a median of few; the fastest of each (the
    # run least disturbed) is reported beside it.
    fastest = min(times["postgresql"]) / min(times["sqlite"])
    return {"jobs": len(graph), "workers": workers, "repeat": repeat,
            "postgresql_s": round(pg, 3), "sqlite_s": round(lite, 3), "ratio": round(pg / lite, 2),
            "ratio_of_fastest": round(fastest, 2),
            "all_s": {k: [round(v, 3) for v in vs] for k, vs in times.items()}, "goal": "<= 1.5"}


def bench_wake(server: Any, changes: int) -> dict[str, Any]:
    """Seconds from a commit (another connection) until a waiter knows: Hub wake vs a 0.25 s poll."""
    from engine.store import notify, open_store
    from engine.store import runs as runs_repo

    poll = 0.25
    with tempfile.TemporaryDirectory() as tmp:
        url = new_database(server, "wake")
        store, writer = open_store(Path(tmp), url=url), open_store(Path(tmp), url=url)
        hub_s: list[float] = []
        poll_s: list[float] = []

        def commit(i: int) -> float:
            runs_repo.insert_run(writer, f"w-{i}", pipeline="p", status="queued", created_at=1.0, variables={},
                                 context={}, spec_path=None, spec_json="{}", max_workers=1)
            return time.perf_counter()

        async def poller(i: int, committed: list[float]) -> None:
            while await anyio.to_thread.run_sync(lambda: runs_repo.get_run(store, f"w-{i}")) is None:
                await anyio.sleep(poll)
            poll_s.append(time.perf_counter() - committed[0])

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                hub = notify.Hub(store, "runs", tg)
                hub.arm("-")
                while not hub.listening:
                    await anyio.sleep(0.01)
                for i in range(changes):
                    armed, committed = hub.arm(f"w-{i}"), [0.0]
                    async with anyio.create_task_group() as pair:
                        pair.start_soon(poller, i, committed)
                        await anyio.sleep(0.01 + poll * (i % 8) / 8)   # commits fall all over the poll cycle
                        committed[0] = await anyio.to_thread.run_sync(commit, i)
                        assert await hub.wait(armed, 10.0)
                        hub_s.append(time.perf_counter() - committed[0])
                tg.cancel_scope.cancel()

        try:
            anyio.run(main)
        finally:
            store.close()
            writer.close()
    hub_med, poll_med = statistics.median(hub_s), statistics.median(poll_s)
    return {"changes": changes, "hub_median_ms": round(hub_med * 1000, 1), "hub_max_ms": round(max(hub_s) * 1000, 1),
            "poll_median_ms": round(poll_med * 1000, 1), "poll_max_ms": round(max(poll_s) * 1000, 1),
            "ratio": round(hub_med / poll_med, 3)}


def bench_load(server: Any, args: argparse.Namespace, servers: int, *, postgres: bool = True) -> dict[str, Any]:
    """The load split over `servers` servers on one PostgreSQL database (or one SQLite workspace)."""
    from engine.store import open_store
    from server.tokens import TokenStore
    from server.trust import Level

    load = _load("cicd_bench_load", BENCH / "load.py")
    url = new_database(server, f"shared{servers}") if postgres else ""
    tmp = Path(tempfile.mkdtemp(prefix="cicd-pgload-"))
    policy = tmp / "policy.yaml"
    policy.write_text("version: 1\nstdio: {level: untrusted}\nhttp: {anonymous_level: untrusted, tokens: []}\n")
    pipelines = []
    for i in range(args.clients):
        p = tmp / f"load-{i}.yaml"
        p.write_text(load.PIPELINE.format(i=i))
        pipelines.append(p)
    home = tmp / "ws0"  # the SQLite store lives in the (only) server's workspace
    with open_store(home, url=url) as store:
        token, _ = TokenStore(store).create(Level.TRUSTED, "load")
    ports = services.PortPool(18700, 18799).take_many(servers)
    procs = []
    for n, port in enumerate(ports):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        env.update(PIPELINE_WORKSPACE=str(tmp / f"ws{n}"), PYTHONPATH=str(ROOT))
        if url:
            env["PIPELINE_STORE_URL"] = url
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", str(port),
             "--policy", str(policy)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    try:
        import socket

        for proc, port in zip(procs, ports, strict=True):
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit("a server did not start")
                time.sleep(0.05)

        def share(total: int, n: int) -> int:
            return total // servers + (1 if n < total % servers else 0)

        results: list[dict[str, Any]] = []

        async def everything() -> None:
            async def one(n: int, port: int) -> None:
                part = argparse.Namespace(**{**vars(args), "clients": share(args.clients, n),
                                             "health": share(args.health, n),
                                             "health_sessions": max(1, share(args.health_sessions, n))})
                mine = pipelines[sum(share(args.clients, k) for k in range(n)):][:part.clients]
                results.append(await load.run_load(f"http://127.0.0.1:{port}/mcp", token, mine, part))

            async with anyio.create_task_group() as tg:
                for n, port in enumerate(ports):
                    tg.start_soon(one, n, port)

        t0 = time.perf_counter()
        anyio.run(everything)
        wall = time.perf_counter() - t0
    finally:
        stderr = []
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            stderr.append(proc.stderr.read().decode() if proc.stderr else "")
            if proc.stderr:
                proc.stderr.close()

    latencies: dict[str, list[float]] = {"run_pipeline": [], "pipeline_health": []}
    errors: list[str] = []
    told: dict[str, str] = {}
    for out in results:
        for tool, values in out["latencies"].items():
            latencies[tool].extend(values)
        errors.extend(out["errors"])
        told.update(dict(out["run_ids"]))
    with open_store(home, url=url) as store:
        stored = {r["run_id"]: r["status"] for r in store.query("SELECT run_id, status FROM runs")}
        audited = store.query_one("SELECT COUNT(*) AS n FROM audit WHERE caller = 'token:load'")
    calls = sum(len(v) for v in latencies.values())
    return {
        "servers": servers, "store": "postgresql" if url else "sqlite",
        "clients": args.clients, "runs_per_client": args.runs, "health_calls": args.health,
        "wall_s": round(wall, 2), "calls_completed": calls, "throughput_calls_per_s": round(calls / wall, 1),
        "latency": {tool: {"n": len(v), "p50_ms": round(load.percentile(v, 50) * 1000, 1),
                           "p99_ms": round(load.percentile(v, 99) * 1000, 1)} for tool, v in latencies.items()},
        "errors": len(errors), "error_samples": errors[:5],
        "runs_expected": args.clients * args.runs, "runs_reported": len(told), "runs_stored": len(stored),
        "runs_missing_from_store": len([r for r in told if r not in stored]),
        "runs_status_mismatch": len([r for r, s in told.items() if stored.get(r) != s]),
        "runs_not_finished": len([s for s in stored.values() if s in ("queued", "running")]),
        "audit_records": audited["n"] if audited else 0,
        "server_stderr_tail": [s.splitlines()[-3:] for s in stderr if s.strip()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--health", type=int, default=200)
    parser.add_argument("--health-sessions", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--keepalive-expiry", type=float, default=5.0)
    parser.add_argument("--skip-scheduler", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true", help="no single-server SQLite run of the load")
    parser.add_argument("--wakes", type=int, default=40, help="changes timed for the wake benchmark (0: none)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    server = services.start_postgres(Path(tempfile.mkdtemp(prefix="cicd-pg-", dir="/tmp")),
                                     services.PortPool(18900, 18949).take(),
                                     settings={"synchronous_commit": "off", "max_connections": "300"})
    report: dict[str, Any] = {}
    try:
        if args.wakes:
            report["wake"] = bench_wake(server, args.wakes)
        if not args.skip_scheduler:
            report["scheduler"] = bench_scheduler(server, args.repeat, args.workers)
        if not args.skip_load:
            report["load"] = bench_load(server, args, args.servers)
            if not args.skip_baseline:
                # The same load on one server with the embedded store, for scale.
                report["load_baseline_one_sqlite_server"] = bench_load(server, args, 1, postgres=False)
                base = report["load_baseline_one_sqlite_server"]["latency"]
                report["load_p99_ratio_vs_baseline"] = {
                    tool: round(v["p99_ms"] / base[tool]["p99_ms"], 2) if base[tool]["p99_ms"] else None
                    for tool, v in report["load"]["latency"].items()}
    finally:
        server.stop()
    print(json.dumps(report, indent=2))
    load_ok = "load" not in report or (report["load"]["errors"] == 0 and report["load"]["runs_missing_from_store"] == 0
                                       and report["load"]["runs_status_mismatch"] == 0)
    return 0 if load_ok else 1


if __name__ == "__main__":
    sys.exit(main())
