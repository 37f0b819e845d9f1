"""Remote executor benchmark: does a pool of SSH hosts add capacity, and what does a job pay for it?

N independent 1-second jobs (`sleep 1`), run twice in the same process:
  - local: the local executor with 2 workers (the baseline: a 2-core machine's share);
  - ssh:   the ssh executor on 3 sshd hosts (scripts/services.py start_sshd, all on 127.0.0.1),
           each limited to 2 jobs (max_jobs: 2), the run given enough workers for every slot.
Reported: makespan ratio ssh / local (goal <= 0.4: the pool's 6 slots really run jobs at once),
and per-job overhead of each executor = mean (job duration - 1 s), i.e. what the executor adds
around the job's own second (for ssh: pack, SFTP upload, remote start, streaming, teardown).

    python3 bench/remote.py [--jobs 200] [--json]

The hosts are local daemons: the network costs loopback round trips only, so the overhead is a
floor for a real pool; all three hosts share this machine's cores with the runner.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.pipeline.executors.local import LocalExecutor  # noqa: E402
from engine.pipeline.executors.ssh import SSHExecutor  # noqa: E402
from engine.pipeline.manager import PipelineManager  # noqa: E402


def _services() -> Any:
    spec = importlib.util.spec_from_file_location("cicd_bench_services", ROOT / "scripts" / "services.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def pipeline(n: int) -> dict[str, Any]:
    return {"name": "remote-bench", "source": None, "stages": [{"name": "all", "jobs": [
        {"name": f"j{i:03d}", "commands": ["sleep 1"]} for i in range(n)]}]}


def measure(workspace: Path, executor: Any, workers: int, n: int) -> dict[str, float]:
    import anyio

    mgr = PipelineManager(workspace_dir=workspace, executor=executor, max_workers=workers)
    started = time.perf_counter()
    run = anyio.run(lambda: mgr.arun_pipeline(pipeline(n), max_workers=workers))
    makespan = time.perf_counter() - started
    bad = {name: j.reason for name, j in run.jobs.items() if not j.ok}
    if bad:
        raise SystemExit(f"{len(bad)} jobs failed, e.g. {next(iter(bad.items()))}")
    durations = [j.duration or 0.0 for j in run.jobs.values()]
    return {"makespan_s": round(makespan, 3), "job_mean_s": round(statistics.mean(durations), 4),
            "job_p50_s": round(statistics.median(durations), 4),
            "overhead_ms": round((statistics.mean(durations) - 1.0) * 1000, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    services = _services()
    base = Path(tempfile.mkdtemp(prefix="cicd-remote-bench-"))
    servers: list[Any] = []
    try:
        key = base / "id_ed25519"
        services.make_key(key)
        ports = services.PortPool(18600, 18699)
        servers.extend(services.start_sshd(base / f"host{i}", ports.take(), client_key=key) for i in range(3))
        known = base / "known_hosts"
        known.write_text("".join(s.known_hosts.read_text() for s in servers))
        pools = base / "pools.yaml"
        pools.write_text("pools:\n  default:\n"
                         f"    user: {servers[0].user}\n    key_file: {key}\n    known_hosts: {known}\n"
                         "    max_jobs: 2\n    hosts:\n"
                         + "".join(f"      - host: {s.host}\n        port: {s.port}\n        name: h{i}\n"
                                   f"        work_dir: {s.root / 'jobs'}\n" for i, s in enumerate(servers)))
        local = measure(base / "ws-local", LocalExecutor(), 2, args.jobs)
        ssh = measure(base / "ws-ssh", SSHExecutor(pools_file=pools, state_dir=base / "state"), 6, args.jobs)
    finally:
        for s in servers:
            s.stop()
    result = {
        "jobs": args.jobs, "local_2_workers": local, "ssh_3_hosts_x2": ssh,
        "makespan_ratio": round(ssh["makespan_s"] / local["makespan_s"], 3),
        "overhead_ratio": round(ssh["overhead_ms"] / local["overhead_ms"], 1) if local["overhead_ms"] > 0 else None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.jobs} x `sleep 1`")
    for label, m in (("local, 2 workers:      ", local), ("ssh, 3 hosts x 2 slots:", ssh)):
        print(f"  {label} makespan {m['makespan_s']:8.2f} s   per-job overhead {m['overhead_ms']:7.1f} ms")
    print(f"  makespan ratio ssh/local: x{result['makespan_ratio']}  (goal <= 0.4)")


if __name__ == "__main__":
    main()
