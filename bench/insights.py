"""Benchmark: PipelineOptimizer.analyze_performance over 10k, 100k and 1M stored job records.

The records are generated inside SQLite (recursive CTEs), shaped like real runs: ten
jobs per run (build -> seven parallel tests -> package -> publish), a failed run in
ten, one job in fifty passing on its second attempt, one attempt row per attempt, all
within the analysis window. Each size gets its own fresh store; the analysis runs in
a child process so its peak memory (ru_maxrss) is its own. Time is the best of three.

Run: python3 bench/insights.py [--sizes 10000,100000,1000000] [--readme bench/README.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.store import SQLiteStore  # noqa: E402

JOBS_PER_RUN = 10
PIPELINE = "bench"
_NEEDS = {
    0: [],
    **{i: ["build"] for i in range(1, 8)},
    8: [f"test-{i}" for i in range(1, 8)],
    9: ["package"],
}
_NAMES = {0: "build", **{i: f"test-{i}" for i in range(1, 8)}, 8: "package", 9: "publish"}


def populate(store: SQLiteStore, job_records: int, *, now: float | None = None) -> None:
    """Fill the store with `job_records` job rows (and their runs and attempts)."""
    now = time.time() if now is None else now
    runs = max(1, job_records // JOBS_PER_RUN)
    span = 6 * 86400.0  # all inside a 7-day window
    step = span / runs
    t0 = now - span
    names = " UNION ALL ".join(
        f"SELECT {i} AS idx, '{_NAMES[i]}' AS name, '{json.dumps(_NEEDS[i])}' AS needs" for i in range(10)
    )
    with store.transaction() as conn:
        # A big page cache for the bulk load only (the analysis runs elsewhere, with defaults).
        conn.execute("PRAGMA cache_size = -1048576")
        conn.execute(
            """
            WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ? - 1)
            INSERT INTO runs (run_id, pipeline, status, created_at, started_at, finished_at, duration,
                              max_workers)
            SELECT printf('r%08d', i), ?, CASE WHEN i % 10 = 9 THEN 'failed' ELSE 'succeeded' END,
                   ? + i * ?, ? + i * ?, ? + i * ? + 60 + (i % 17), 60 + (i % 17) + i * 0.00001, 4
              FROM seq
            """,
            (runs, PIPELINE, t0, step, t0, step, t0, step),
        )
        # Pseudo-random but deterministic per (run, job): random() would be drawn anew at
        # each use of a column of a flattened subquery.
        conn.execute(
            f"""
            INSERT INTO jobs (run_id, name, pipeline, stage, base_name, needs_json, status, ready_at,
                              started_at, finished_at, duration, queue_wait, cpu_user, cpu_system,
                              peak_rss_kb, exit_code, attempts)
            SELECT run_id, name, pipeline, 'main', name, needs,
                   CASE WHEN rstatus = 'failed' AND idx = 8 THEN 'failed' ELSE 'succeeded' END,
                   started_at + idx, started_at + idx + 0.1, started_at + idx + 0.1 + dur, dur, 0.1,
                   dur * 0.6, dur * 0.1, 20000 + h % 200000, 0, CASE WHEN h % 50 = 0 THEN 2 ELSE 1 END
              FROM (SELECT r.run_id, r.pipeline, r.started_at, r.status AS rstatus, n.idx, n.name, n.needs,
                           1 + ((r.rowid * 7919 + n.idx * 104729) % 10007) / 1000.0 AS dur,
                           (r.rowid * 2654435761 + n.idx * 40503) % 1000003 AS h
                      FROM runs r CROSS JOIN ({names}) n
                     WHERE r.pipeline = ?)
            """,
            (PIPELINE,),
        )
        conn.execute(
            """
            INSERT INTO attempts (run_id, job, attempt, status, started_at, finished_at, duration, exit_code)
            SELECT run_id, name, 1, CASE WHEN attempts > 1 THEN 'failed' ELSE status END,
                   started_at, started_at + duration / attempts, duration / attempts,
                   CASE WHEN attempts > 1 THEN 1 ELSE 0 END
              FROM jobs WHERE pipeline = ?
            UNION ALL
            SELECT run_id, name, 2, status, finished_at - duration / 2, finished_at, duration / 2, 0
              FROM jobs WHERE pipeline = ? AND attempts = 2
            """,
            (PIPELINE, PIPELINE),
        )


def _analyze(path: str, repeats: int) -> dict[str, float]:
    """In a child process: time analyze_performance (best of `repeats`) and report peak RSS."""
    from engine.insights import PipelineOptimizer

    def status_kb(field: str) -> int:
        # VmHWM (peak RSS) belongs to this process image; ru_maxrss would carry the parent's peak
        # across fork and exec.
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"{field} not in /proc/self/status")

    store = SQLiteStore(path)
    baseline = status_kb("VmRSS")
    best = float("inf")
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = PipelineOptimizer(store=store).analyze_performance(PIPELINE, 7)
        best = min(best, time.perf_counter() - start)
    assert result is not None and result.status == "ok", result
    peak = status_kb("VmHWM")
    jobs = result.duration_stats.jobs if result.duration_stats else {}
    return {
        "seconds": best,
        "peak_rss_mb": peak / 1024,
        "rss_growth_mb": (peak - baseline) / 1024,
        "jobs_counted": float(sum(s.count for s in jobs.values())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--readme", type=Path, default=None, help="append the results to this markdown file")
    parser.add_argument("--analyze", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.analyze:
        print(json.dumps(_analyze(args.analyze, args.repeats)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="insights-bench-") as tmp:
        for size in sizes:
            path = os.path.join(tmp, f"state-{size}.db")
            start = time.perf_counter()
            store = SQLiteStore(path)
            populate(store, size)
            # Fold the write-ahead log into the database so the analysing process starts clean.
            store.query("PRAGMA wal_checkpoint(TRUNCATE)")
            store.close()
            load = time.perf_counter() - start
            out = subprocess.run(
                [sys.executable, __file__, "--analyze", path, "--repeats", str(args.repeats)],
                check=True,
                capture_output=True,
                text=True,
            )
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            assert int(figures["jobs_counted"]) == size, figures
            figures.update(size=size, load_seconds=load, db_mb=os.path.getsize(path) / 2**20)
            results.append(figures)
            print(
                f"{size:>9,} jobs: analyze {figures['seconds']:.3f} s, "
                f"peak RSS {figures['peak_rss_mb']:.1f} MB "
                f"(+{figures['rss_growth_mb']:.1f} MB during analysis); load {load:.1f} s, "
                f"db {figures['db_mb']:.0f} MB",
                flush=True,
            )
            os.remove(path)
    lines = [
        "",
        "## Insights",
        "",
        "`python3 bench/insights.py` — `PipelineOptimizer.analyze_performance` over generated job records",
        "(10 jobs per run, 1 run in 10 failed, 1 job in 50 retried, all inside the 7-day window; one",
        "pipeline holds all of them, the worst case). Time is the best of "
        f"{args.repeats}; peak RSS is the analysing",
        "process's own (VmHWM); \"added\" is peak minus the RSS after imports and opening the store.",
        "Load = generating the rows through the engine's schema and the insights triggers",
        "(bulk INSERT ... SELECT).",
        "",
        "| job records | analyze (s) | growth vs previous size | peak RSS (MB) | RSS added by analysis (MB) "
        "| load (s) | db (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    prev = None
    for r in results:
        growth = (
            "–"
            if prev is None
            else f"×{r['seconds'] / prev['seconds']:.2f} for ×{r['size'] / prev['size']:g} rows"
        )
        lines.append(
            f"| {r['size']:,} | {r['seconds']:.3f} | {growth} | {r['peak_rss_mb']:.1f} "
            f"| {r['rss_growth_mb']:.1f} "
            f"| {r['load_seconds']:.1f} | {r['db_mb']:.0f} |"
        )
        prev = r
    text = "\n".join(lines) + "\n"
    print(text)
    if args.readme:
        with args.readme.open("a", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
