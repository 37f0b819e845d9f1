"""Benchmark: deployments on a real Docker engine (started here, with the FROM-scratch busybox images).

1. Rolling deploy of N containers (default 10), engine vs the same work done straight with the
   docker SDK in the same run: for each slot in turn, stop the old container, start the new one on
   the same port (init=True, labels), poll /health every 50 ms until it answers 200. The engine arm
   is `DeploymentOrchestrator.deploy` with strategy rolling (batch 1) and an http check polling
   every 50 ms; no router. Rounds alternate v1 -> v2 and v2 -> v1; medians; ratio = engine / raw.
2. Failed health verdict -> old version serving again, for blue-green and rolling: deploy
   `svc:bad-health` over v1 (2 instances behind a real nginx). t0 = the `health_failed` event;
   "serving" = first moment after t0 at which every instance of the old version answers v1 on its
   own port and nginx answers v1 (a 5 ms prober); "rolled back" = deploy() returned ROLLED_BACK
   (old version verified healthy and recorded live).

Run: python3 bench/deploy.py [--containers 10] [--rounds 3] [--readme bench/README.md]
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import services  # noqa: E402

from engine.deploy import DeploymentOrchestrator, DeploymentStatus, Environment  # noqa: E402
from engine.deploy.targets.docker import LABEL  # noqa: E402
from engine.events import Event  # noqa: E402

CHECK = {"type": "http", "url": "http://{host}:{port}/health", "expect_status": 200, "timeout": 2,
         "retries": 100, "interval": 0.05}


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


def wait_healthy(client: httpx.Client, port: int) -> None:
    while True:
        try:
            if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)


def raw_rolling(docker_client: Any, ports: list[int], image: str, version: str, env: str) -> None:
    """The same work without the engine: per slot, stop old, start new, wait healthy."""
    with httpx.Client(timeout=2) as http:
        for i, port in enumerate(ports):
            for old in docker_client.containers.list(
                all=True, filters={"label": [f"{LABEL}.environment={env}", f"{LABEL}.slot={i}"]}
            ):
                old.stop(timeout=10)
                old.remove(force=True)
            docker_client.containers.run(
                image, detach=True, init=True, name=f"raw-{i}-{version}-{time.monotonic_ns()}",
                labels={f"{LABEL}.environment": env, f"{LABEL}.slot": str(i), f"{LABEL}.version": version},
                ports={"8080/tcp": ("127.0.0.1", port)},
            )
            wait_healthy(http, port)


def bench_rolling(base_url: str, pool: services.PortPool, n: int, rounds: int, tmp: Path) -> dict[str, Any]:
    import docker

    client = docker.DockerClient(base_url=base_url, timeout=60)
    eng_ports, raw_ports = pool.take_many(n), pool.take_many(n)
    env = Environment.model_validate({
        "name": "bench", "type": "testing", "health_checks": [CHECK],
        "target": {"kind": "docker", "base_url": base_url, "ports": eng_ports},
    })
    orch = DeploymentOrchestrator(workspace_dir=tmp / "ws-rolling")
    orch.register_environment(env)
    engine_times: list[float] = []
    raw_times: list[float] = []
    try:
        images = {"1": "svc:v1", "2": "svc:v2"}
        orch.create_deployment("bench-0", "1", "bench", [images["1"]], "rolling", True)
        assert orch.deploy("bench-0").status == DeploymentStatus.SUCCESS
        raw_rolling(client, raw_ports, images["1"], "1", "raw")
        for r in range(rounds):
            version = "2" if r % 2 == 0 else "1"
            name = f"bench-{r + 1}"
            orch.create_deployment(name, version, "bench", [images[version]], "rolling", True)
            t = time.perf_counter()
            result = orch.deploy(name)
            engine_times.append(time.perf_counter() - t)
            assert result.status == DeploymentStatus.SUCCESS, result.reason
            t = time.perf_counter()
            raw_rolling(client, raw_ports, images[version], version, "raw")
            raw_times.append(time.perf_counter() - t)
            print(f"  rolling round {r + 1}: engine {engine_times[-1]:.2f}s raw {raw_times[-1]:.2f}s", flush=True)
    finally:
        for c in client.containers.list(all=True, filters={"label": f"{LABEL}.environment=raw"}):
            c.remove(force=True)

        async def stop_all() -> None:
            target = orch.target_for(env)
            for inst in await target.instances(env.service_name):
                await target.stop(inst)
            await orch.aclose()

        anyio.run(stop_all)
        client.close()
    eng, raw = statistics.median(engine_times), statistics.median(raw_times)
    return {"containers": n, "engine": eng, "raw": raw, "ratio": eng / raw}


class AllServe(threading.Thread):
    """Polls the urls every 5 ms once armed; records when they all first answered `body`."""

    def __init__(self, urls: list[str], body: str) -> None:
        super().__init__(daemon=True)
        self.urls, self.body = urls, body
        self.armed = threading.Event()
        self.stopping = threading.Event()
        self.at: float | None = None

    def run(self) -> None:
        with httpx.Client(timeout=1) as client:
            self.armed.wait()
            while not self.stopping.is_set() and self.at is None:
                ok = True
                for url in self.urls:
                    try:
                        ok = ok and client.get(url, headers={"Connection": "close"}).text.strip() == self.body
                    except httpx.HTTPError:
                        ok = False
                if ok:
                    self.at = time.perf_counter()
                time.sleep(0.005)


def bench_failure(base_url: str, pool: services.PortPool, strategy: str, rounds: int, tmp: Path,
                  nginx: tuple[Path, Path, Path]) -> dict[str, Any]:
    prefix, conf, sites = nginx
    ports = pool.take_many(2)
    listen = pool.take()
    env = Environment.model_validate({
        "name": f"fail-{strategy}", "type": "testing", "health_checks": [{**CHECK, "retries": 5}],
        "target": {"kind": "docker", "base_url": base_url, "ports": ports,
                   "color_ports": {"blue": pool.take_many(2), "green": pool.take_many(2)}},
        "router": {"kind": "nginx", "listen": listen, "conf": str(conf), "prefix": str(prefix),
                   "sites_dir": str(sites), "nginx": shutil.which("nginx") or "nginx"},
    })
    orch = DeploymentOrchestrator(workspace_dir=tmp / f"ws-{strategy}")
    orch.register_environment(env)
    options: dict[str, Any] = {"scale_down_delay": 0.0} if strategy == "blue_green" else {}
    serving: list[float] = []
    done: list[float] = []
    try:
        orch.create_deployment("good", "1", env.name, ["svc:v1"], strategy, True, **options)
        assert orch.deploy("good").status == DeploymentStatus.SUCCESS
        for r in range(rounds):
            live = anyio.run(orch.target_for(env).instances, env.service_name)
            urls = [f"http://127.0.0.1:{i.port}/version" for i in live] + [f"http://127.0.0.1:{listen}/version"]
            prober = AllServe(urls, "v1")
            failed_at: list[float] = []

            def on_event(event: Event, prober: AllServe = prober, failed_at: list[float] = failed_at) -> None:
                if event.kind == "health_failed" and not failed_at:
                    failed_at.append(time.perf_counter())
                    prober.armed.set()

            prober.start()
            orch.create_deployment(f"bad-{r}", "2", env.name, ["svc:bad-health"], strategy, True, **options)
            result = orch.deploy(f"bad-{r}", on_event=on_event)
            returned = time.perf_counter()
            assert result.status == DeploymentStatus.ROLLED_BACK, result.reason
            prober.armed.set()
            prober.join(timeout=30)
            prober.stopping.set()
            assert failed_at and prober.at is not None, "no health_failed event or v1 never served"
            serving.append(max(0.0, prober.at - failed_at[0]))
            done.append(returned - failed_at[0])
            print(f"  {strategy} round {r + 1}: serving {serving[-1]:.3f}s rolled back {done[-1]:.3f}s", flush=True)
    finally:
        async def stop_all() -> None:
            target = orch.target_for(env)
            for inst in await target.instances(env.service_name):
                await target.stop(inst)
            await orch.aclose()

        anyio.run(stop_all)
    return {"strategy": strategy, "serving": statistics.median(serving), "done": statistics.median(done)}


def readme_section(rolling: dict[str, Any], failures: list[dict[str, Any]], rounds: int, driver: str) -> str:
    lines = [
        "## Deployments",
        "",
        f"`python3 bench/deploy.py --containers {rolling['containers']} --rounds {rounds}` — a Docker engine of its "
        f"own ({driver}), images FROM scratch with busybox httpd, health polled every 50 ms in every arm. Medians "
        f"of {rounds} rounds, both arms measured in the same run.",
        "",
        f"Rolling deploy of {rolling['containers']} containers (batch 1): the orchestrator against the same work done "
        "straight with the docker SDK (per slot: stop old, start new with init and labels on the same port, poll "
        "/health until 200).",
        "",
        "| containers | engine (s) | docker SDK direct (s) | ratio (goal <= 1.2) |",
        "|---:|---:|---:|---:|",
        f"| {rolling['containers']} | {rolling['engine']:.2f} | {rolling['raw']:.2f} | x{rolling['ratio']:.2f} |",
        "",
        "From the failed health verdict (`health_failed` event) of `svc:bad-health` (/health answers 500) deployed "
        "over v1 (2 instances behind a real nginx): \"old serving\" = every old instance and nginx answer v1 "
        "(5 ms prober); \"rolled back\" = deploy() returned ROLLED_BACK, the old version verified and recorded live.",
        "",
        "| strategy | failed verdict -> old serving (s) | failed verdict -> rolled back (s) |",
        "|---|---:|---:|",
        *[f"| {f['strategy']} | {f['serving']:.3f} | {f['done']:.3f} |" for f in failures],
        "",
        "Blue-green never takes traffic off the old colour before the new one is verified, so the old version "
        "serves throughout and \"old serving\" is the prober's first poll; rolling has replaced one old instance "
        "when the verdict comes and must start it again.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--readme", type=Path, default=None, help="replace/append the Deployments section here")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="cicd-bd-", dir="/tmp"))
    tmp = Path(tempfile.mkdtemp(prefix="cicd-bench-deploy-"))
    pool = services.PortPool(18300, 18499)
    engine = services.start_docker(root)
    nginx_root = tmp / "nginx"
    conf, sites = start_nginx(nginx_root)
    try:
        services.build_test_images(engine.base_url, root / "contexts")
        print(f"docker engine up ({engine.storage_driver}); rolling deploy of {args.containers} containers", flush=True)
        rolling = bench_rolling(engine.base_url, pool, args.containers, args.rounds, tmp)
        failures = [bench_failure(engine.base_url, pool, s, args.rounds, tmp, (nginx_root, conf, sites))
                    for s in ("blue_green", "rolling")]
    finally:
        subprocess.run(["nginx", "-p", str(nginx_root), "-c", str(conf), "-s", "stop"], check=False)
        engine.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    section = readme_section(rolling, failures, args.rounds, engine.storage_driver)
    print(section)
    if args.readme:
        text = args.readme.read_text() if args.readme.exists() else ""
        start = text.find("## Deployments")
        if start >= 0:
            end = text.find("\n## ", start + 1)
            text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
        else:
            text = text.rstrip("\n") + "\n\n" + section
        args.readme.write_text(text)


if __name__ == "__main__":
    main()
