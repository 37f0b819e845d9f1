"""Scheduler benchmarks, each a ratio against a baseline measured in the same run.

1. A 500-job DAG of `true` (layers of 10, each job depending on 2 of the layer before),
   run by the engine (`local` executor) and by GNU `make -j<workers>` on an equivalent
   generated Makefile. Goal: engine / make <= 1.25. Beside it, the floor of any scheduler built
   as this one is (an anyio task per job, a worker thread per running job, a process per job): the
   same DAG run by a bare loop that does nothing but start `true` and wait for it, as the local
   executor does (new session, output on a pipe). What is between the floor and make is the
   loop and its threads; what is between the engine and the floor is the engine's work. A second
   floor starts each job from the loop itself (posix_spawn, a pidfd on the loop, no thread); a
   third is a plain synchronous loop (posix_spawn, os.wait), Python doing what make does.
2. The same DAG under the `sandbox` executor (bubblewrap) vs `local`, in the same run. Goal: <= 1.3.
   Beside it, bubblewrap's own cost: `bwrap` with the sandbox's mounts running `true` vs `true`.
3. A DAG of `sleep` jobs with a known critical path, workers enough for every branch:
   makespan / critical path. Goal: <= 1.02 (+50 ms).
4. Workspaces: a 200 MB source tree of 10,000 files and 20 jobs; the time to prepare (and release)
   the 20 job workspaces vs one `cp -a` of the tree. Goal: <= 0.2.
5. One job printing 1 GiB (default executor): the engine process's peak RSS (VmHWM). Goal: < 150 MB.

    python3 bench/scheduler.py [--workers N] [--repeat K] [--skip-big] [--quick]

`--quick` is one repetition without the 1 GiB job: a check that nothing got slower, in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.pipeline.manager import PipelineManager  # noqa: E402
from engine.spec import dag  # noqa: E402


def layered_dag(layers: int = 50, width: int = 10, fan_in: int = 2, seed: int = 7) -> dict[str, list[str]]:
    rng = random.Random(seed)
    graph: dict[str, list[str]] = {}
    for layer in range(layers):
        for i in range(width):
            name = f"j{layer:03d}-{i:02d}"
            graph[name] = [] if layer == 0 else sorted(rng.sample([f"j{layer - 1:03d}-{k:02d}" for k in range(width)],
                                                                  fan_in))
    return graph


def as_pipeline(name: str, graph: dict[str, list[str]], commands: dict[str, str]) -> dict[str, object]:
    return {"name": name, "source": None, "stages": [{"name": "all", "jobs": [
        {"name": n, "commands": [commands[n]], "depends_on": deps} for n, deps in graph.items()]}]}


def makefile(graph: dict[str, list[str]], command: str) -> str:
    lines = [".PHONY: all " + " ".join(graph), "all: " + " ".join(graph)]
    for n, deps in graph.items():
        lines.append(f"{n}: {' '.join(deps)}")
        lines.append(f"\t@{command}")
    return "\n".join(lines) + "\n"


def _engine_seconds(tmp: str, tag: str, graph: dict[str, list[str]], workers: int, executor: str) -> float:
    os.environ["PIPELINE_EXECUTOR"] = executor
    try:
        manager = PipelineManager(Path(tmp) / f"ws-{tag}", max_workers=workers)
        spec = as_pipeline("dag500", graph, dict.fromkeys(graph, "true"))
        start = time.perf_counter()
        run = manager.run_pipeline(spec)
        elapsed = time.perf_counter() - start
        assert run.status.value == "succeeded", run.reason
        manager.store.close()
        return elapsed
    finally:
        os.environ.pop("PIPELINE_EXECUTOR", None)


def _floor_seconds(graph: dict[str, list[str]], workers: int) -> float:
    """The same DAG by a bare anyio loop: a task per job waiting on its needs' events, a worker
    limit, a thread per job that starts `true` and reads its output to the end. No store, no log,
    no workspace, no environment: what a scheduler of this shape cannot go below."""
    import anyio

    true = shutil.which("true") or "/bin/true"

    def work() -> None:
        proc = subprocess.Popen([true], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # noqa: S603
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        assert proc.stdout is not None
        proc.stdout.read()
        proc.wait()

    async def main() -> None:
        done = {n: anyio.Event() for n in graph}
        limiter = anyio.CapacityLimiter(workers)

        async def job(name: str) -> None:
            for dep in graph[name]:
                await done[dep].wait()
            async with limiter:
                await anyio.to_thread.run_sync(work)
            done[name].set()

        async with anyio.create_task_group() as tg:
            for name in graph:
                tg.start_soon(job, name)

    start = time.perf_counter()
    anyio.run(main)
    return time.perf_counter() - start


def _floor_pidfd_seconds(graph: dict[str, list[str]], workers: int) -> float:
    """The same DAG on a bare asyncio loop that starts each job itself (`posix_spawn`, new session)
    and learns of its end from a pidfd on the loop: no thread, no pipe, no store."""
    import asyncio

    true = shutil.which("true") or "/bin/true"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = {n: asyncio.Event() for n in graph}
        slots = asyncio.Semaphore(workers)

        async def job(name: str) -> None:
            for dep in graph[name]:
                await done[dep].wait()
            async with slots:
                pid = os.posix_spawn(true, [true], os.environ, setsid=True)
                fd = os.pidfd_open(pid)
                ended = loop.create_future()
                loop.add_reader(fd, ended.set_result, None)
                try:
                    await ended
                finally:
                    loop.remove_reader(fd)
                    os.close(fd)
                os.waitpid(pid, 0)
            done[name].set()

        await asyncio.gather(*(job(n) for n in graph))

    start = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - start


def _floor_sync_seconds(graph: dict[str, list[str]], workers: int) -> float:
    """The same DAG by a synchronous loop: start what is ready up to `workers`, `os.wait` for one."""
    true = shutil.which("true") or "/bin/true"
    waiting = {n: set(deps) for n, deps in graph.items()}
    users: dict[str, list[str]] = {}
    for name, deps in graph.items():
        for dep in deps:
            users.setdefault(dep, []).append(name)
    ready = [n for n, deps in waiting.items() if not deps]
    running: dict[int, str] = {}
    start = time.perf_counter()
    while ready or running:
        while ready and len(running) < workers:
            running[os.posix_spawn(true, [true], os.environ, setsid=True)] = ready.pop(0)
        pid, _ = os.wait()
        finished = running.pop(pid)
        for user in users.get(finished, []):
            waiting[user].discard(finished)
            if not waiting[user]:
                ready.append(user)
    return time.perf_counter() - start


def bench_bwrap_cost(n: int = 100) -> dict[str, object]:
    """`true` under bwrap with the sandbox executor's mounts and namespaces vs `true`, one after another."""
    from engine.pipeline.executors import JobCommand
    from engine.pipeline.executors.sandbox import bwrap_argv, sandbox_unavailable

    why = sandbox_unavailable()
    if why is not None:
        return {"skipped": why}
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        (Path(tmp) / "home").mkdir()
        ws.mkdir()
        command = JobCommand(job="j", commands=("true",), env={}, cwd=ws, workspace=ws, shell="bash",
                             timeout=None, run_id="r", home=Path(tmp) / "home")
        wrapped = [*bwrap_argv(command, shutil.which("bwrap") or "bwrap"), "true"]
        times: dict[str, list[float]] = {"true": [], "bwrap": []}
        for _ in range(n):
            for key, argv in (("true", ["true"]), ("bwrap", wrapped)):
                start = time.perf_counter()
                subprocess.run(argv, check=True)  # noqa: S603
                times[key].append(time.perf_counter() - start)
    t, b = statistics.median(times["true"]), statistics.median(times["bwrap"])
    return {"true_ms": round(t * 1000, 2), "bwrap_true_ms": round(b * 1000, 2), "added_ms": round((b - t) * 1000, 2)}


def bench_make_ratio(workers: int, repeat: int) -> dict[str, object]:
    """Engine (local) vs make, and sandbox vs local, interleaved so that both ratios see the same load."""
    graph = layered_dag()
    local_times, sandbox_times, make_times, floor_times, pidfd_times, sync_times = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        mk = Path(tmp) / "Makefile"
        mk.write_text(makefile(graph, "true"))
        for r in range(repeat):
            start = time.perf_counter()
            subprocess.run(["make", "-s", f"-j{workers}", "-f", str(mk), "all"], check=True, cwd=tmp)
            make_times.append(time.perf_counter() - start)
            floor_times.append(_floor_seconds(graph, workers))
            pidfd_times.append(_floor_pidfd_seconds(graph, workers))
            sync_times.append(_floor_sync_seconds(graph, workers))
            local_times.append(_engine_seconds(tmp, f"local{r}", graph, workers, "local"))
            sandbox_times.append(_engine_seconds(tmp, f"sandbox{r}", graph, workers, "sandbox"))
    e, m, sb = statistics.median(local_times), statistics.median(make_times), statistics.median(sandbox_times)
    f, fp, fs = statistics.median(floor_times), statistics.median(pidfd_times), statistics.median(sync_times)
    return {
        "make": {"jobs": len(graph), "workers": workers, "engine_s": round(e, 3), "make_s": round(m, 3),
                 "ratio": round(e / m, 2), "goal": "<= 1.25",
                 "engine_per_job_ms": round(e / len(graph) * 1000 * workers, 2),
                 "floor_s": round(f, 3), "floor_vs_make": round(f / m, 2), "engine_vs_floor": round(e / f, 2),
                 "floor_pidfd_s": round(fp, 3), "floor_pidfd_vs_make": round(fp / m, 2),
                 "floor_sync_s": round(fs, 3), "floor_sync_vs_make": round(fs / m, 2)},
        "sandbox": {"sandbox_s": round(sb, 3), "local_s": round(e, 3), "ratio": round(sb / e, 2), "goal": "<= 1.3",
                    "sandbox_per_job_ms": round((sb - e) / len(graph) * 1000 * workers, 2)},
    }


def _make_tree(root: Path, files: int = 10_000, total: int = 200 * 1024 * 1024) -> None:
    size = total // files
    block = bytes(range(256)) * (size // 256 + 1)
    for i in range(files):
        d = root / f"d{i // 100:03d}" / f"e{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.dat").write_bytes(block[i % 256: i % 256 + size])


def bench_workspaces(jobs: int = 20) -> dict[str, object]:
    from engine.pipeline._workspace import SourceView, prepare_workspace, release_workspace

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        src, state = Path(tmp) / "src", Path(tmp) / "state"
        _make_tree(src)
        state.mkdir()
        subprocess.run(["sync"], check=False)
        start = time.perf_counter()
        subprocess.run(["cp", "-a", str(src), str(Path(tmp) / "copy")], check=True)
        cp = time.perf_counter() - start
        prep = release = 0.0
        view = SourceView(src, state)   # its walk (once per run) is counted in the preparation
        hows = []
        for j in range(jobs):
            ws = state / "runs" / "r" / "jobs" / f"j{j}" / "workspace"
            start = time.perf_counter()
            hows.append(prepare_workspace(ws, view=view, inherited=[], working_directory=None))
            prep += time.perf_counter() - start
            assert (ws / "d000" / "e0" / "f00000.dat").exists()
            start = time.perf_counter()
            release_workspace(ws)      # after the job, off the scheduler's loop
            release += time.perf_counter() - start
    return {"files": 10_000, "bytes": 200 * 1024 * 1024, "jobs": jobs, "how": sorted(set(hows)),
            "workspaces_s": round(prep, 3), "release_s": round(release, 3), "cp_a_s": round(cp, 3),
            "ratio": round(prep / cp, 3), "ratio_with_release": round((prep + release) / cp, 3), "goal": "<= 0.2"}


def bench_critical_path(repeat: int) -> dict[str, object]:
    rng = random.Random(3)
    graph = layered_dag(layers=5, width=4, fan_in=2, seed=3)
    durations = {n: round(rng.uniform(0.2, 0.8), 2) for n in graph}
    length, path = dag.critical_path(graph, durations)
    spans = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeat):
            manager = PipelineManager(Path(tmp) / f"ws{r}", max_workers=len(graph))
            run = manager.run_pipeline(as_pipeline("sleepy", graph, {n: f"sleep {d}" for n, d in durations.items()}))
            assert run.status.value == "succeeded"
            start = min(j.started_at for j in run.jobs.values() if j.started_at)
            end = max(j.finished_at for j in run.jobs.values() if j.finished_at)
            spans.append(end - start)
    makespan = statistics.median(spans)
    return {"jobs": len(graph), "critical_path_s": round(length, 3), "critical_path": path,
            "makespan_s": round(makespan, 3), "ratio": round(makespan / length, 4),
            "overhead_s": round(makespan - length, 3), "goal": "<= 1.02 (+50 ms)"}


_BIG_CHILD = """
import sys
from engine.pipeline.manager import PipelineManager
m = PipelineManager(sys.argv[1], max_workers=1)
run = m.run_pipeline({"name": "big-output", "source": None, "stages": [{"name": "s", "jobs": [
    {"name": "print-1g", "commands": ["head -c 1073741824 /dev/zero | tr '\\\\0' x | fold -w 99"]}]}]})
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
size = __import__('os').path.getsize(run.jobs['print-1g'].log_path)
print(run.status.value, hwm, size)
"""


def bench_big_output() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _BIG_CHILD, str(Path(tmp) / "ws")], capture_output=True,
                             text=True, check=True, cwd=ROOT)
        elapsed = time.perf_counter() - start
        status, hwm_kb, log_size = out.stdout.split()
    return {"printed_bytes": 1 << 30, "log_bytes": int(log_size), "status": status,
            "engine_peak_rss_mb": round(int(hwm_kb) / 1024, 1), "seconds": round(elapsed, 1),
            "throughput_mb_s": round((1 << 30) / (1 << 20) / elapsed, 1), "goal": "< 150 MB"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--quick", action="store_true", help="--repeat 1 --skip-big")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.skip_big = 1, True
    if not shutil.which("make"):
        sys.exit("GNU make is needed for the baseline (apt-get install make)")
    ratios = bench_make_ratio(args.workers, args.repeat)
    results = {"make_ratio": ratios["make"], "sandbox_ratio": ratios["sandbox"],
               "bwrap_cost": bench_bwrap_cost(), "critical_path": bench_critical_path(args.repeat)}
    if not args.quick:
        results["workspaces"] = bench_workspaces()
    if not args.skip_big:
        results["big_output"] = bench_big_output()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
