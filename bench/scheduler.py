"""Scheduler benchmarks, each a ratio against a baseline measured in the same run.

1. A 500-job DAG of `true` (layers of 10, each job depending on 2 of the layer before),
   run by the engine and by GNU `make -j<workers>` on an equivalent generated Makefile.
   Goal: engine / make <= 1.25.
2. A DAG of `sleep` jobs with a known critical path, workers enough for every branch:
   makespan / critical path. Goal: <= 1.02 (+50 ms).
3. One job printing 1 GiB: the engine process's peak RSS (VmHWM). Goal: < 150 MB.

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


def bench_make_ratio(workers: int, repeat: int) -> dict[str, object]:
    graph = layered_dag()
    engine_times, make_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        mk = Path(tmp) / "Makefile"
        mk.write_text(makefile(graph, "true"))
        for r in range(repeat):
            start = time.perf_counter()
            subprocess.run(["make", "-s", f"-j{workers}", "-f", str(mk), "all"], check=True, cwd=tmp)
            make_times.append(time.perf_counter() - start)
            manager = PipelineManager(Path(tmp) / f"ws{r}", max_workers=workers)
            spec = as_pipeline("dag500", graph, dict.fromkeys(graph, "true"))
            start = time.perf_counter()
            run = manager.run_pipeline(spec)
            engine_times.append(time.perf_counter() - start)
            assert run.status.value == "succeeded", run.reason
    e, m = statistics.median(engine_times), statistics.median(make_times)
    return {"jobs": len(graph), "workers": workers, "engine_s": round(e, 3), "make_s": round(m, 3),
            "ratio": round(e / m, 2), "goal": "<= 1.25", "engine_per_job_ms": round(e / len(graph) * 1000 * workers, 2)}


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
    results = {"make_ratio": bench_make_ratio(args.workers, args.repeat),
               "critical_path": bench_critical_path(args.repeat)}
    if not args.skip_big:
        results["big_output"] = bench_big_output()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
