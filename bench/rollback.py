"""Rollback benchmark: time from `execute_rollback` to the old version serving, per strategy,
against the same operations done directly on the target and router in the same run.

Setup: the local target (2 instances of tests/engine/deploy/app/server.py) behind a real nginx
started here; health checks poll every 50 ms in both arms. Each round deploys v2 over v1 with
the real orchestrator, then rolls back either with the engine (plan made beforehand, not timed)
or by hand: `target.stop/prepare/start`, a plain /health poll loop, `router.set_backends` — the
same operations in the strategy's order, without the journal, the events or the store.

Measured per arm: "serving" = first answer of the old version through nginx (a prober polls
every 5 ms), "done" = the call returned (engine: every step journaled and v1 recorded live).

    python3 bench/rollback.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.deploy import DeploymentOrchestrator, DeploymentStatus, Environment  # noqa: E402
from engine.deploy.routers.base import Backend  # noqa: E402
from engine.deploy.targets.base import Release  # noqa: E402
from engine.rollback import RollbackManager  # noqa: E402
from tests.engine.deploy.helpers import APP_COMMAND, make_release  # noqa: E402

PORTS = iter(range(18650, 18700))
CHECK = {"type": "http", "url": "http://{host}:{port}/health", "timeout": 2, "retries": 200, "interval": 0.05}
DEPLOY = {"immediate": "rolling", "rolling": "rolling", "blue_green": "blue_green", "canary": "canary"}
OPTIONS: dict[str, dict[str, Any]] = {
    "rolling": {},
    "blue_green": {"scale_down_delay": 0.0},
    "canary": {"steps": [100], "analysis_window": 0.0, "probe_interval": 0.05},
}


def start_nginx(root: Path) -> tuple[Path, Path]:
    sites = root / "cicd"
    sites.mkdir(parents=True)
    (root / "tmp").mkdir()
    temp = "".join(f"    {k}_temp_path {root}/tmp/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = root / "nginx.conf"
    conf.write_text(
        f"user root;\nworker_processes 1;\npid {root}/nginx.pid;\nerror_log {root}/error.log warn;\n"
        f"events {{ worker_connections 512; }}\nhttp {{\n    access_log off;\n{temp}    include {sites}/*.conf;\n}}\n"
    )
    subprocess.run(["nginx", "-p", str(root), "-c", str(conf)], check=True)
    return conf, sites


class FirstSeen(threading.Thread):
    """Polls `url` every 5 ms; records when `body` was first answered."""

    def __init__(self, url: str, body: str) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=1) as client:
            while not self.stop.is_set() and self.at is None:
                try:
                    if client.get(self.url, headers={"Connection": "close"}).text.strip() == self.body:
                        self.at = time.perf_counter()
                except httpx.HTTPError:
                    pass
                time.sleep(0.005)


async def wait_healthy(port: int) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            try:
                if (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await anyio.sleep(0.05)


async def raw_rollback(orch: DeploymentOrchestrator, strategy: str, art: str, v1_dep: str, before: list[Any]) -> None:
    """The operations a rollback needs, called straight on the target and router."""
    env = orch.get_environment("svc")
    target, router = orch.target_for(env), orch.router_for(env)
    assert router is not None
    release = await target.prepare(Release("svc", "1", v1_dep, (art,)))
    slots = [s for s in before if s.version == "1"]
    current = [i for i in await target.instances("svc") if i.version == "2"]

    async def backends(weights: dict[str, int]) -> list[Backend]:
        running = [i for i in await target.instances("svc") if i.alive]
        return [Backend(i, await target.address(i), weights.get(str(i.version), 1)) for i in running]

    if strategy in ("immediate", "rolling"):
        groups = [slots] if strategy == "immediate" else [[s] for s in slots]
        for group in groups:
            ids = {s.slot for s in group}
            if strategy == "rolling":  # drain the batch first, as the engine's rolling plan does
                running = [i for i in await target.instances("svc") if i.alive]
                await router.set_backends(
                    "svc", [Backend(i, await target.address(i), 0 if i.slot in ids else 1) for i in running]
                )
            for inst in current:
                if inst.slot in ids:
                    await target.stop(inst)
            for slot in group:
                await target.start(release, slot)
            for slot in group:
                assert slot.port is not None
                await wait_healthy(slot.port)
            await router.set_backends("svc", await backends({}))
        return
    for slot in slots:
        await target.start(release, slot)
    for slot in slots:
        assert slot.port is not None
        await wait_healthy(slot.port)
    await router.set_backends("svc", await backends({"1": 1, "2": 0}))
    for inst in current:
        await target.stop(inst)
    await router.set_backends("svc", await backends({}))


def bench_strategy(strategy: str, rounds: int, nginx: tuple[Path, Path, Path], tmp: Path) -> dict[str, Any]:
    prefix, conf, sites = nginx
    listen = next(PORTS)
    env = Environment.model_validate(
        {
            "name": "svc",
            "target": {
                "kind": "local",
                "command": APP_COMMAND,
                "ports": [next(PORTS), next(PORTS)],
                "color_ports": {"blue": [next(PORTS), next(PORTS)], "green": [next(PORTS), next(PORTS)]},
            },
            "router": {
                "kind": "nginx",
                "listen": listen,
                "conf": str(conf),
                "prefix": str(prefix),
                "sites_dir": str(sites),
            },
            "health_checks": [CHECK],
        }
    )
    ws = tmp / strategy
    orch = DeploymentOrchestrator(workspace_dir=ws)
    orch.register_environment(env)
    arts = {v: str(make_release(tmp / "arts", v)) for v in ("1", "2")}
    n = 0

    def deploy(version: str) -> Any:
        nonlocal n
        n += 1
        orch.create_deployment(
            f"svc-{n}", version, "svc", [arts[version]], DEPLOY[strategy], True, **OPTIONS[DEPLOY[strategy]]
        )
        result = orch.deploy(f"svc-{n}")
        assert result.status == DeploymentStatus.SUCCESS, result.reason
        return result

    v1 = deploy("1")
    out: dict[str, list[float]] = {
        "engine_serving": [],
        "engine_done": [],
        "raw_serving": [],
        "raw_done": [],
        "plan": [],
    }
    url = f"http://127.0.0.1:{listen}/version"
    try:
        for _ in range(rounds):
            for arm in ("engine", "raw"):
                v2 = deploy("2")
                before = orch.history.get(v2.deployment_id).before
                manager = RollbackManager(workspace_dir=ws, orchestrator=orch)
                t = time.perf_counter()
                plan = manager.create_rollback_plan(v2.deployment_id, strategy, "bench")
                if arm == "engine":
                    out["plan"].append(time.perf_counter() - t)
                seen = FirstSeen(url, "1")
                seen.start()
                t0 = time.perf_counter()
                if arm == "engine":
                    result = anyio.run(manager.execute_rollback, plan.plan_id)
                    assert result.status == "completed", result.errors
                else:
                    anyio.run(raw_rollback, orch, strategy, arts["1"], v1.deployment_id, before)
                t1 = time.perf_counter()
                seen.join(timeout=10)
                seen.stop.set()
                assert seen.at is not None, f"{arm}: v1 never answered through nginx"
                out[f"{arm}_serving"].append(seen.at - t0)
                out[f"{arm}_done"].append(t1 - t0)
    finally:

        async def stop_all() -> None:
            target = orch.target_for(env)
            for inst in await target.instances("svc"):
                await target.stop(inst)
            await orch.aclose()

        anyio.run(stop_all)
    med = {k: statistics.median(v) for k, v in out.items() if v}
    return {
        "strategy": strategy,
        **{k: round(v, 3) for k, v in med.items()},
        "ratio_serving": round(med["engine_serving"] / med["raw_serving"], 2),
        "ratio_done": round(med["engine_done"] / med["raw_done"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cicd-rb-bench-"))
    prefix = tmp / "nginx"
    conf, sites = start_nginx(prefix)
    rows = []
    try:
        for strategy in ("immediate", "rolling", "blue_green", "canary"):
            rows.append(bench_strategy(strategy, args.rounds, (prefix, conf, sites), tmp))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        subprocess.run(["nginx", "-p", str(prefix), "-c", str(conf), "-s", "stop"], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        "\n| strategy | engine: v1 serving (s) | raw: v1 serving (s) | ratio | engine: done (s) | raw: done (s) "
        "| ratio | planning (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['strategy']} | {r['engine_serving']} | {r['raw_serving']} | ×{r['ratio_serving']} "
            f"| {r['engine_done']} | {r['raw_done']} | ×{r['ratio_done']} | {r['plan']} |"
        )


if __name__ == "__main__":
    main()
