"""KubernetesTarget and KubernetesServiceRouter.

No Kubernetes API server can be installed on the test machines, so most tests run against a FAKE
API server (`kube_fake.py`): real HTTP on 127.0.0.1, serving exactly the API paths the target and
router use, with a tiny controller that completes (or, for an image named "broken", fails) a
rollout. `test_real_cluster_round_trip` runs against a real cluster when KUBECONFIG is set and is
skipped otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.deploy.routers.base import ROUTERS, Backend
from engine.deploy.targets.base import TARGETS, Address, Instance, Release, TargetContext
from engine.deploy.targets.kubernetes import (
    KubernetesRouterConfig,
    KubernetesServiceRouter,
    KubernetesTarget,
    KubernetesTargetConfig,
    replica_split,
    rollout_state,
)
from engine.errors import InputError, RouterError, TargetError
from tests.engine.deploy.targets.kube_fake import FakeKubeAPI, apply_json_patch, fake_kube_api

pytestmark = [pytest.mark.k8s]


@pytest.fixture
def kube(port_pool: Any) -> Iterator[FakeKubeAPI]:
    with fake_kube_api(port_pool.take()) as api:
        yield api


def make_target(tmp_path: Path, url: str, **settings: Any) -> KubernetesTarget:
    config = KubernetesTargetConfig.model_validate(
        {"kind": "kubernetes", "api_url": url, "poll_interval": 0.01, "rollout_timeout": 10, **settings}
    )
    return KubernetesTarget(config, TargetContext(environment="prod", state_dir=tmp_path))


def make_router(tmp_path: Path, url: str, **settings: Any) -> KubernetesServiceRouter:
    config = KubernetesRouterConfig.model_validate({"kind": "kubernetes", "api_url": url, **settings})
    return KubernetesServiceRouter(config, TargetContext(environment="prod", state_dir=tmp_path))


def rel(version: str, image: str, color: str | None = None) -> Release:
    return Release(service="web", version=version, deployment_id=f"d-{version}", artifacts=(image,), color=color)


# -- pure decisions ------------------------------------------------------------------------------
def _dep(gen: int, observed: int, replicas: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"generation": gen},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": observed, **status},
    }


@pytest.mark.parametrize(
    ("dep", "state"),
    [
        (_dep(2, 1), "progressing"),
        (_dep(2, 2, updatedReplicas=1, replicas=2, availableReplicas=1), "progressing"),
        (_dep(2, 2, updatedReplicas=2, replicas=3, availableReplicas=2), "progressing"),
        (_dep(2, 2, updatedReplicas=2, replicas=2, availableReplicas=1), "progressing"),
        (_dep(2, 2, updatedReplicas=2, replicas=2, availableReplicas=2), "done"),
        (_dep(2, 2, conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]), "failed"),
    ],
)
def test_rollout_state_follows_kubectl(dep: dict[str, Any], state: str) -> None:
    assert rollout_state(dep)[0] == state


@pytest.mark.parametrize(
    ("weights", "total", "expected"),
    [
        ({"a": 9, "b": 1}, 10, {"a": 9, "b": 1}),
        ({"a": 90, "b": 10}, 4, {"a": 3, "b": 1}),
        ({"a": 1, "b": 1}, 4, {"a": 2, "b": 2}),
        ({"a": 1, "b": 0}, 4, {"a": 4, "b": 0}),
        ({"a": 99, "b": 1}, 2, {"a": 1, "b": 1}),
        ({"a": 0, "b": 0}, 4, {"a": 0, "b": 0}),
    ],
)
def test_replica_split_follows_weights(weights: dict[str, int], total: int, expected: dict[str, int]) -> None:
    assert replica_split(weights, total) == expected


def test_fake_json_patch_escapes_pointers() -> None:
    doc = {"metadata": {"annotations": {}}}
    out = apply_json_patch(doc, [{"op": "add", "path": "/metadata/annotations/cicd-mcp~1version", "value": "2"}])
    assert out == {"metadata": {"annotations": {"cicd-mcp/version": "2"}}}


def test_registries_and_slots(tmp_path: Path) -> None:
    assert TARGETS["kubernetes"] is KubernetesTarget
    assert ROUTERS["kubernetes"] is KubernetesServiceRouter
    target = make_target(tmp_path, "http://127.0.0.1:1", deployment="{service}-app", namespace="shop")
    assert [(s.slot, s.host, s.port) for s in target.slots("Web")] == [("web-app", "web-app.shop.svc", 8080)]
    assert [s.slot for s in target.slots("web", "green")] == ["web-app-green"]
    with pytest.raises(InputError, match="unknown colour"):
        target.slots("web", "red")


@pytest.mark.anyio
async def test_release_without_image_names_the_setting(tmp_path: Path) -> None:
    target = make_target(tmp_path, "http://127.0.0.1:1")
    with pytest.raises(InputError, match="target.image"):
        await target.prepare(Release(service="web", version="1", deployment_id="d"))
    templated = make_target(tmp_path, "http://127.0.0.1:1", image="reg.example/{service}:{version}")
    ready = await templated.prepare(Release(service="web", version="3", deployment_id="d"))
    assert ready.prepared["image"] == "reg.example/web:3"


# -- against the fake API server -----------------------------------------------------------------
@pytest.mark.anyio
async def test_start_creates_then_patches_and_waits_for_the_rollout(tmp_path: Path, kube: FakeKubeAPI) -> None:
    target = make_target(tmp_path, kube.url, replicas=3)
    (slot,) = target.slots("web")
    first = await target.start(await target.prepare(rel("1", "reg.example/web:1")), slot)
    assert (first.version, first.ref, first.deployment_id) == ("1", "web", "d-1")
    dep = kube.deployments[("default", "web")]
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "reg.example/web:1"
    assert dep["metadata"]["labels"]["cicd-mcp/service"] == "web"
    assert dep["metadata"]["annotations"]["cicd-mcp/version"] == "1"

    await target.start(await target.prepare(rel("2", "reg.example/web:2")), slot)
    dep = kube.deployments[("default", "web")]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "reg.example/web:2"
    assert dep["metadata"]["generation"] == 2
    assert dep["status"]["availableReplicas"] == 3  # start returned only once the rollout was done
    assert dep["spec"]["template"]["metadata"]["annotations"]["cicd-mcp/deployment-id"] == "d-2"

    (seen,) = await target.instances("web")
    assert (seen.version, seen.alive, seen.slot) == ("2", True, "web")
    assert await target.address(seen) == Address("web.default.svc", 8080)

    await target.stop(seen)
    assert kube.deployments[("default", "web")]["spec"]["replicas"] == 0
    assert await target.instances("web") == []
    await target.stop(seen)  # stopped already: nothing to do

    # exactly the documented paths, and every PATCH a JSON patch
    used = {(m, p.replace("/web", "/{name}")) for m, p, _ in kube.requests}
    assert used == {
        ("GET", "/apis/apps/v1/namespaces/default/deployments/{name}"),
        ("POST", "/apis/apps/v1/namespaces/default/deployments"),
        ("PATCH", "/apis/apps/v1/namespaces/default/deployments/{name}"),
        ("GET", "/apis/apps/v1/namespaces/default/deployments"),
    }
    assert {c for m, _, c in kube.requests if m == "PATCH"} == {"application/json-patch+json"}
    await target.close()


@pytest.mark.anyio
async def test_a_failed_rollout_is_a_target_error(tmp_path: Path, kube: FakeKubeAPI) -> None:
    target = make_target(tmp_path, kube.url)
    with pytest.raises(TargetError, match="rollout of web failed: progress deadline exceeded"):
        await target.start(await target.prepare(rel("9", "reg.example/web:broken")), target.slots("web")[0])
    # nothing is left running a release that never became available
    assert kube.deployments[("default", "web")]["spec"]["replicas"] == 0
    assert await target.instances("web") == []
    await target.close()


@pytest.mark.anyio
async def test_a_missing_container_name_is_an_input_error(tmp_path: Path, kube: FakeKubeAPI) -> None:
    target = make_target(tmp_path, kube.url)
    await target.start(await target.prepare(rel("1", "img:1")), target.slots("web")[0])
    picky = make_target(tmp_path, kube.url, container="sidecar")
    with pytest.raises(InputError, match="no container 'sidecar'"):
        await picky.start(await picky.prepare(rel("2", "img:2")), picky.slots("web")[0])
    await target.close()
    await picky.close()


@pytest.mark.anyio
async def test_unreachable_api_is_a_target_error(tmp_path: Path, port_pool: Any) -> None:
    target = make_target(tmp_path, f"http://127.0.0.1:{port_pool.take()}")
    with pytest.raises(TargetError, match="kubernetes: listing Deployments of web"):
        await target.instances("web")
    await target.close()


@pytest.mark.anyio
async def test_router_switches_the_selector_and_splits_replicas(tmp_path: Path, kube: FakeKubeAPI) -> None:
    target = make_target(tmp_path, kube.url, replicas=2)
    router = make_router(tmp_path, kube.url, replicas=10, port=80, target_port=8080)
    blue = await target.start(await target.prepare(rel("1", "img:1", "blue")), target.slots("web", "blue")[0])
    green = await target.start(await target.prepare(rel("2", "img:2", "green")), target.slots("web", "green")[0])
    backends = [Backend(blue, await target.address(blue)), Backend(green, await target.address(green))]

    await router.switch("web", "blue", backends)
    svc = kube.services[("default", "web")]
    assert svc["spec"]["selector"] == {"cicd-mcp/service": "web", "cicd-mcp/color": "blue"}
    assert svc["spec"]["ports"] == [{"port": 80, "targetPort": 8080}]
    assert {b.instance.slot: b.weight for b in await router.backends("web")} == {"web-blue": 2, "web-green": 0}

    # canary at 10%: both colours selected, pods split 9:1
    await router.set_backends("web", [Backend(blue, backends[0].address, 90), Backend(green, backends[1].address, 10)])
    assert kube.services[("default", "web")]["spec"]["selector"] == {"cicd-mcp/service": "web"}
    assert kube.deployments[("default", "web-blue")]["spec"]["replicas"] == 9
    assert kube.deployments[("default", "web-green")]["spec"]["replicas"] == 1
    assert {b.instance.slot: b.weight for b in await router.backends("web")} == {"web-blue": 9, "web-green": 1}

    # all weight on green: the selector picks green alone
    await router.set_backends("web", [Backend(blue, backends[0].address, 0), Backend(green, backends[1].address, 1)])
    assert kube.services[("default", "web")]["spec"]["selector"]["cicd-mcp/color"] == "green"
    assert await router.address("web") == Address("web.default.svc", 80)
    await router.close()
    await target.close()


@pytest.mark.anyio
async def test_router_errors_are_router_errors(tmp_path: Path, port_pool: Any) -> None:
    router = make_router(tmp_path, f"http://127.0.0.1:{port_pool.take()}")
    inst = Instance(service="web", slot="web-blue", color="blue", ref="web-blue")
    with pytest.raises(RouterError, match="kubernetes"):
        await router.switch("web", "blue", [Backend(inst, Address("h", 1))])
    await router.close()


# -- a real cluster --------------------------------------------------------------------------------
@pytest.mark.anyio
@pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs a real cluster: set KUBECONFIG")
async def test_real_cluster_round_trip(tmp_path: Path) -> None:
    """Runs against the cluster KUBECONFIG names; the image (CICD_K8S_TEST_IMAGE) must be pullable there."""
    image = os.environ.get("CICD_K8S_TEST_IMAGE", "registry.k8s.io/pause:3.9")
    namespace = os.environ.get("CICD_K8S_TEST_NAMESPACE", "default")
    service = f"cicd-test-{uuid.uuid4().hex[:6]}"
    config = KubernetesTargetConfig.model_validate(
        {
            "kind": "kubernetes",
            "namespace": namespace,
            "rollout_timeout": 180,
            "poll_interval": 1,
        }
    )
    target = KubernetesTarget(config, TargetContext(environment="k8s", state_dir=tmp_path))
    (slot,) = target.slots(service)
    try:
        inst = await target.start(
            await target.prepare(Release(service=service, version="1", deployment_id="d-1", artifacts=(image,))), slot
        )
        (seen,) = await target.instances(service)
        assert (seen.version, seen.alive) == ("1", True)
        await target.stop(inst)
        assert await target.instances(service) == []
    finally:
        from kubernetes import client

        api = target.api._connect()
        client.AppsV1Api(api).delete_namespaced_deployment(slot.slot, namespace)
        await target.close()


# -- through the orchestrator (fake API) ---------------------------------------------------------
@pytest.mark.parametrize("strategy", ["recreate", "rolling", "blue_green"])
def test_orchestrator_deploys_and_rolls_back_on_the_fake_cluster(
    tmp_path: Path, kube: FakeKubeAPI, strategy: str
) -> None:
    """The pods do not exist, so the health check asks the API whether the slot's Deployment has
    available replicas (as `kubectl rollout status` would); the rollout gate is the target's own.
    Canary is left out here: its analysis probes the pods over HTTP/TCP, which a fake cannot
    answer; its replica split is tested on the router above."""
    from engine.deploy import DeploymentOrchestrator, DeploymentStatus, Environment

    api = {"api_url": kube.url}
    ready = (
        'python3 -c "import json,sys,urllib.request; d=json.load(urllib.request.urlopen('
        f"'{kube.url}/apis/apps/v1/namespaces/default/deployments/{{host}}')); "
        "sys.exit(0 if d['status'].get('availableReplicas', 0) > 0 else 1)\""
    )
    env = Environment.model_validate(
        {
            "name": "k8s",
            "type": "testing",
            "health_checks": [{"type": "command", "command": ready, "retries": 3, "interval": 0.05, "timeout": 5}],
            "target": {
                "kind": "kubernetes",
                "poll_interval": 0.01,
                "rollout_timeout": 10,
                "replicas": 2,
                "address_host": "{deployment}",
                **api,
            },
            "router": {"kind": "kubernetes", "replicas": 4, **api},
        }
    )
    orch = DeploymentOrchestrator(workspace_dir=tmp_path / "ws")
    orch.register_environment(env)
    options = {
        "blue_green": {"scale_down_delay": 0},
        "canary": {"steps": [50, 100], "analysis_window": 0},
    }.get(strategy, {})
    try:
        for version, image in (("1", "reg.example/web:1"), ("2", "reg.example/web:2")):
            orch.create_deployment(f"web-{version}", version, "k8s", [image], strategy, True, **options)
            result = orch.deploy(f"web-{version}")
            assert result.status == DeploymentStatus.SUCCESS, result.reason
        images = {
            name: d["spec"]["template"]["spec"]["containers"][0]["image"]
            for (_, name), d in kube.deployments.items()
            if d["spec"]["replicas"] > 0
        }
        assert set(images.values()) == {"reg.example/web:2"}, images

        orch.create_deployment("web-3", "3", "k8s", ["reg.example/web:broken"], strategy, True, **options)
        result = orch.deploy("web-3")
        assert result.status == DeploymentStatus.ROLLED_BACK, result.reason
        assert "progress deadline exceeded" in (result.reason or "")
        live = {
            name: d["spec"]["template"]["spec"]["containers"][0]["image"]
            for (_, name), d in kube.deployments.items()
            if d["spec"]["replicas"] > 0
        }
        assert set(live.values()) == {"reg.example/web:2"}, live
        if strategy in ("blue_green", "canary"):
            selector = kube.services[("default", "k8s")]["spec"]["selector"]
            (serving,) = list(live)
            assert selector.get("cicd-mcp/color") == serving.rsplit("-", 1)[1]
    finally:
        anyio.run(orch.aclose)
