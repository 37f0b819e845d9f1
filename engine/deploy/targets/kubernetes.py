"""KubernetesTarget and KubernetesServiceRouter: a service is a Deployment (one per colour) behind a Service.

Slots are Deployments: `<service>` for the ordinary set (Kubernetes rolls its pods itself),
`<service>-blue` and `<service>-green` for blue-green and canary. `start` creates the Deployment
or points its container at the release's image (a JSON patch), and waits for the rollout the way
`kubectl rollout status` does (`rollout_state`); `stop` scales it to zero, keeping its history.

The router owns the Service: blue-green switches its selector to a colour; a canary keeps both
colours selected and splits `replicas` pods between them in proportion to the weights, so the
traffic ratio is the replica ratio.

The official `kubernetes` client is imported inside methods (an optional dependency). Its calls
block, so they run in worker threads; `_call` is the one place ApiException and transport errors
become TargetError (RouterError for the router). The API paths used are exactly:
`/apis/apps/v1/namespaces/{ns}/deployments[/{name}]` (list with labelSelector, create, read,
JSON-patch) and `/api/v1/namespaces/{ns}/services[/{name}]` (create, read, JSON-patch).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Literal, TypeVar

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field

from engine.deploy.routers.base import Backend, RouterConfig
from engine.deploy.targets.base import Address, Instance, Release, TargetConfig, TargetContext
from engine.errors import CicdError, InputError, RouterError, TargetError

__all__ = [
    "KubernetesRouterConfig",
    "KubernetesServiceRouter",
    "KubernetesTarget",
    "KubernetesTargetConfig",
    "replica_split",
    "rollout_state",
]

T = TypeVar("T")
PREFIX = "cicd-mcp"
_DNS = re.compile(r"[^a-z0-9-]")


# -- pure decisions ------------------------------------------------------------------------------
def rollout_state(deployment: Mapping[str, Any]) -> tuple[str, str]:
    """("done" | "progressing" | "failed", why) for a Deployment as the API returns it (kubectl's rules)."""
    meta, spec, status = deployment.get("metadata", {}), deployment.get("spec", {}), deployment.get("status") or {}
    if int(meta.get("generation", 0)) > int(status.get("observedGeneration", 0)):
        return "progressing", "waiting for the controller to see the new spec"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "failed", f"progress deadline exceeded: {cond.get('message', '')}".strip()
    want = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    if updated < want:
        return "progressing", f"{updated} of {want} new replicas updated"
    if int(status.get("replicas", 0)) > updated:
        return "progressing", f"{int(status.get('replicas', 0)) - updated} old replicas are pending termination"
    available = int(status.get("availableReplicas", 0))
    if available < updated:
        return "progressing", f"{available} of {updated} updated replicas are available"
    return "done", f"{available} replicas available"


def replica_split(weights: Mapping[str, int], total: int) -> dict[str, int]:
    """Pods per Deployment so that their ratio follows `weights` (every positive weight gets >= 1)."""
    positive = {k: w for k, w in weights.items() if w > 0}
    out = dict.fromkeys(weights, 0)
    if not positive:
        return out
    total = max(total, len(positive))
    whole = sum(positive.values())
    shares = {k: max(1, round(total * w / whole)) for k, w in positive.items()}
    # Rounding may overshoot: take the excess from the largest share, keeping each >= 1.
    while sum(shares.values()) > total:
        biggest = max(shares, key=lambda k: shares[k])
        if shares[biggest] <= 1:
            break
        shares[biggest] -= 1
    out.update(shares)
    return out


def _name(text: str) -> str:
    return _DNS.sub("-", text.lower()).strip("-")[:63] or "svc"


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


# -- configuration -------------------------------------------------------------------------------
class _ApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(default="default", description="Namespace of the Deployments and the Service.")
    api_url: str | None = Field(default=None, description="API server URL; default: kubeconfig or in-cluster.")
    token: str | None = Field(default=None, description="Bearer token for api_url.")
    verify_ssl: bool = Field(default=True, description="Verify the API server's certificate (api_url).")
    kubeconfig: str | None = Field(default=None, description="Kubeconfig file (default KUBECONFIG, ~/.kube/config).")
    context: str | None = Field(default=None, description="Kubeconfig context.")
    request_timeout: float = Field(default=30, gt=0, le=600, description="Seconds one API call may take.")


class KubernetesTargetConfig(TargetConfig, _ApiSettings):
    kind: Literal["kubernetes"] = "kubernetes"
    deployment: str = Field(default="{service}", description="Deployment name ({service}); colours add -<colour>.")
    container: str | None = Field(default=None, description="Container whose image is set (default: the first).")
    image: str | None = Field(default=None, description="Image when the artifacts name none: {service} {version}.")
    replicas: int = Field(default=1, ge=1, le=1000, description="Pods of a Deployment when it is started.")
    container_port: int = Field(default=8080, ge=1, le=65535, description="The port the pods listen on.")
    address_host: str = Field(
        default="{deployment}.{namespace}.svc",
        description="Host health checks use for a slot: {deployment} {namespace}.",
    )
    rollout_timeout: float = Field(default=300, gt=0, le=86400, description="Seconds a rollout may take.")
    poll_interval: float = Field(default=1.0, gt=0, le=60, description="Seconds between rollout status reads.")


class KubernetesRouterConfig(RouterConfig, _ApiSettings):
    kind: Literal["kubernetes"] = "kubernetes"
    service: str = Field(default="{service}", description="Service name ({service}).")
    port: int = Field(default=80, ge=1, le=65535, description="The Service's port.")
    target_port: int = Field(default=8080, ge=1, le=65535, description="The pods' port.")
    replicas: int = Field(default=4, ge=1, le=1000, description="Pods split between the colours during a canary.")
    address_host: str | None = Field(default=None, description="Where clients reach the Service (default: its DNS).")


# -- the API edge ----------------------------------------------------------------------------------
class _Api:
    """Clients for one API server, built lazily; every call goes through `call`."""

    def __init__(self, settings: _ApiSettings, error: type[CicdError]) -> None:
        self.settings = settings
        self.error = error
        self._client: Any = None

    def _connect(self) -> Any:
        from kubernetes import client, config

        if self._client is None:
            if self.settings.api_url:
                conf = client.Configuration()
                conf.host = self.settings.api_url.rstrip("/")
                conf.verify_ssl = self.settings.verify_ssl
                conf.retries = 0
                if self.settings.token:
                    conf.api_key = {"authorization": self.settings.token}
                    conf.api_key_prefix = {"authorization": "Bearer"}
                self._client = client.ApiClient(conf)
            elif self.settings.kubeconfig or os.environ.get("KUBECONFIG") or os.path.exists(
                os.path.expanduser("~/.kube/config")
            ):
                self._client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=self.settings.kubeconfig, context=self.settings.context
                )
            else:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                self._client = client.ApiClient()
        return self._client

    async def call(self, what: str, fn: Callable[[Any, Any], T]) -> T:
        """Run `fn(apps_v1, core_v1)` in a worker thread; API and transport errors become `self.error`."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config.config_exception import ConfigException

        def run() -> T:
            try:
                api = self._connect()
                return fn(client.AppsV1Api(api), client.CoreV1Api(api))
            except ApiException as exc:
                detail = exc.reason
                try:
                    detail = json.loads(exc.body or "{}").get("message") or detail
                except (ValueError, AttributeError):
                    pass
                raise self.error(f"kubernetes: {what}: {exc.status} {detail}") from exc
            except ConfigException as exc:
                raise self.error(f"kubernetes: {what}: no usable cluster configuration: {exc}") from exc
            except (OSError, ValueError) as exc:  # urllib3 errors are OSErrors; bad JSON is a ValueError
                raise self.error(f"kubernetes: {what}: {type(exc).__name__}: {exc}") from exc
            except Exception as exc:
                import urllib3.exceptions

                if isinstance(exc, urllib3.exceptions.HTTPError):
                    raise self.error(f"kubernetes: {what}: {exc}") from exc
                raise

        return await anyio.to_thread.run_sync(run)

    @property
    def timeout(self) -> float:
        return self.settings.request_timeout

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await anyio.to_thread.run_sync(client.close)


def _json(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


def _read_or_none(read: Callable[[], Any]) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        return _json(read())
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


# -- the target ----------------------------------------------------------------------------------
class KubernetesTarget:
    """Deployments on a Kubernetes cluster. See the module docstring."""

    config_model: ClassVar[type[TargetConfig]] = KubernetesTargetConfig

    def __init__(self, config: KubernetesTargetConfig, context: TargetContext) -> None:
        self.config = config
        self.context = context
        self.api = _Api(config, TargetError)

    def _deployment_name(self, service: str, color: str | None) -> str:
        base = _name(self.config.deployment.replace("{service}", service))
        return f"{base}-{color}" if color else base

    def _instance(self, service: str, name: str, color: str | None) -> Instance:
        host = self.config.address_host.replace("{deployment}", name).replace("{namespace}", self.config.namespace)
        return Instance(service=service, slot=name, host=host, port=self.config.container_port, color=color)

    def slots(self, service: str, color: str | None = None) -> list[Instance]:
        """One slot per Deployment: `<deployment>`, or `<deployment>-<color>`.

        Raises:
            InputError: the colour is unknown.
        """
        if color not in (None, "blue", "green"):
            raise InputError(f"kubernetes target: unknown colour {color!r} (blue or green)")
        return [self._instance(service, self._deployment_name(service, color), color)]

    async def prepare(self, release: Release) -> Release:
        """Resolve the image: an artifact that is an image reference, else `image` from the config.

        Raises:
            InputError: no image can be named.
        """
        ref = next((a for a in release.artifacts if not a.startswith(("/", "./"))), None)
        if ref is None and self.config.image:
            ref = self.config.image.replace("{service}", release.service).replace("{version}", release.version)
        if ref is None:
            raise InputError(
                f"kubernetes target: {release.service} {release.version} names no image "
                "(give an image reference as artifact, or set target.image)"
            )
        return replace(release, prepared={**release.prepared, "image": ref})

    def _manifest(self, release: Release, slot: Instance, image: str) -> dict[str, Any]:
        color = release.color if release.color is not None else slot.color
        labels = {
            "app.kubernetes.io/name": _name(slot.service), f"{PREFIX}/service": _name(slot.service),
            f"{PREFIX}/slot": slot.slot, f"{PREFIX}/color": color or "none",
        }
        notes = {f"{PREFIX}/version": release.version, f"{PREFIX}/deployment-id": release.deployment_id}
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": slot.slot, "namespace": self.config.namespace, "labels": labels, "annotations": notes},
            "spec": {
                "replicas": self.config.replicas,
                "selector": {"matchLabels": {f"{PREFIX}/service": _name(slot.service), f"{PREFIX}/slot": slot.slot}},
                "template": {
                    "metadata": {"labels": labels, "annotations": notes},
                    "spec": {"containers": [{
                        "name": self.config.container or _name(slot.service), "image": image,
                        "ports": [{"containerPort": self.config.container_port}],
                    }]},
                },
            },
        }

    def _patch(self, current: Mapping[str, Any], release: Release, image: str) -> list[dict[str, Any]]:
        """The JSON patch that points `current` at `release` (image, annotations, replicas)."""
        containers = current["spec"]["template"]["spec"]["containers"]
        names = [c.get("name") for c in containers]
        index = names.index(self.config.container) if self.config.container in names else 0
        if self.config.container and self.config.container not in names:
            raise InputError(f"kubernetes target: Deployment {current['metadata']['name']} has no container "
                             f"{self.config.container!r} (it has {names})")
        ops: list[dict[str, Any]] = [
            {"op": "replace", "path": f"/spec/template/spec/containers/{index}/image", "value": image},
            {"op": "replace", "path": "/spec/replicas",
             "value": int(current["spec"].get("replicas") or 0) or self.config.replicas},
        ]
        for where in ("/metadata", "/spec/template/metadata"):
            node = current["metadata"] if where == "/metadata" else current["spec"]["template"].get("metadata", {})
            if "annotations" not in node:
                ops.append({"op": "add", "path": f"{where}/annotations", "value": {}})
            for key, value in ((f"{PREFIX}/version", release.version),
                               (f"{PREFIX}/deployment-id", release.deployment_id)):
                ops.append({"op": "add", "path": f"{where}/annotations/{_pointer(key)}", "value": value})
        return ops

    async def start(self, release: Release, slot: Instance) -> Instance:
        """Create the slot's Deployment or set its image, then wait for the rollout to finish.

        A rollout that fails or times out leaves the Deployment scaled to zero.

        Raises:
            TargetError: the API refused, or the rollout failed or timed out.
        """
        if "image" not in release.prepared:
            release = await self.prepare(release)
        image = release.prepared["image"]
        ns = self.config.namespace
        timeout = self.api.timeout

        def apply(apps: Any, core: Any) -> None:
            current = _read_or_none(lambda: apps.read_namespaced_deployment(
                slot.slot, ns, _preload_content=False, _request_timeout=timeout))
            if current is None:
                apps.create_namespaced_deployment(ns, self._manifest(release, slot, image),
                                                  _preload_content=False, _request_timeout=timeout)
            else:
                apps.patch_namespaced_deployment(slot.slot, ns, self._patch(current, release, image),
                                                 _preload_content=False, _request_timeout=timeout)

        await self.api.call(f"setting {slot.slot} to {image}", apply)
        try:
            await self._wait_rollout(slot.slot)
        except TargetError:
            # The slot was empty before start (the orchestrator stops occupants first): leave it
            # empty again rather than running a release that never became available.
            with anyio.CancelScope(shield=True):
                await self.stop(replace(slot, ref=slot.slot))
            raise
        color = release.color if release.color is not None else slot.color
        return replace(slot, version=release.version, deployment_id=release.deployment_id, ref=slot.slot,
                       color=color, alive=True, data={"image": image, "namespace": ns})

    async def _wait_rollout(self, name: str) -> None:
        deadline = time.monotonic() + self.config.rollout_timeout
        why = ""
        while time.monotonic() < deadline:
            found = await self.api.call(f"reading {name}", lambda apps, core: _json(
                apps.read_namespaced_deployment(name, self.config.namespace, _preload_content=False,
                                                _request_timeout=self.api.timeout)))
            state, why = rollout_state(found)
            if state == "done":
                return
            if state == "failed":
                raise TargetError(f"kubernetes: rollout of {name} failed: {why}")
            await anyio.sleep(self.config.poll_interval)
        raise TargetError(f"kubernetes: rollout of {name} did not finish in {self.config.rollout_timeout:g}s: {why}")

    async def stop(self, instance: Instance) -> None:
        """Scale the instance's Deployment to zero (it stays, with its history); gone is fine.

        Raises:
            TargetError: the API refused.
        """
        name, ns = instance.ref or instance.slot, self.config.namespace

        def scale(apps: Any, core: Any) -> None:
            current = _read_or_none(lambda: apps.read_namespaced_deployment(
                name, ns, _preload_content=False, _request_timeout=self.api.timeout))
            if current is not None and int(current["spec"].get("replicas") or 0) > 0:
                apps.patch_namespaced_deployment(name, ns, [{"op": "replace", "path": "/spec/replicas", "value": 0}],
                                                 _preload_content=False, _request_timeout=self.api.timeout)

        await self.api.call(f"scaling {name} to 0", scale)

    async def instances(self, service: str) -> list[Instance]:
        """The service's Deployments that have replicas, with their version and availability.

        Raises:
            TargetError: the API refused.
        """
        selector = f"{PREFIX}/service={_name(service)}"
        found = await self.api.call(f"listing Deployments of {service}", lambda apps, core: _json(
            apps.list_namespaced_deployment(self.config.namespace, label_selector=selector, _preload_content=False,
                                            _request_timeout=self.api.timeout)))
        out = []
        for item in found.get("items", []):
            if int(item.get("spec", {}).get("replicas") or 0) == 0:
                continue
            meta = item["metadata"]
            labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
            color = labels.get(f"{PREFIX}/color")
            base = self._instance(service, meta["name"], None if color in (None, "none") else color)
            out.append(replace(
                base, version=notes.get(f"{PREFIX}/version"), deployment_id=notes.get(f"{PREFIX}/deployment-id"),
                ref=meta["name"], alive=int((item.get("status") or {}).get("availableReplicas") or 0) > 0,
                data={"namespace": self.config.namespace},
            ))
        return sorted(out, key=lambda i: i.slot)

    async def address(self, instance: Instance) -> Address:
        """The slot's in-cluster address (`address_host`, `container_port`)."""
        return Address(instance.host, instance.port or self.config.container_port)

    async def close(self) -> None:
        await self.api.close()


# -- the router ----------------------------------------------------------------------------------
class KubernetesServiceRouter:
    """The Service in front of a service's Deployments: selector switch, or a replica-ratio split."""

    config_model: ClassVar[type[RouterConfig]] = KubernetesRouterConfig

    def __init__(self, config: KubernetesRouterConfig, context: TargetContext) -> None:
        self.config = config
        self.context = context
        self.api = _Api(config, RouterError)

    def _service_name(self, service: str) -> str:
        return _name(self.config.service.replace("{service}", service))

    async def _ensure_selector(self, service: str, selector: dict[str, str]) -> None:
        name, ns, timeout = self._service_name(service), self.config.namespace, self.api.timeout

        def apply(apps: Any, core: Any) -> None:
            current = _read_or_none(lambda: core.read_namespaced_service(
                name, ns, _preload_content=False, _request_timeout=timeout))
            if current is None:
                body = {
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": ns, "labels": {f"{PREFIX}/service": _name(service)}},
                    "spec": {"selector": selector,
                             "ports": [{"port": self.config.port, "targetPort": self.config.target_port}]},
                }
                core.create_namespaced_service(ns, body, _preload_content=False, _request_timeout=timeout)
            elif current.get("spec", {}).get("selector") != selector:
                patch = [{"op": "replace", "path": "/spec/selector", "value": selector}]
                core.patch_namespaced_service(name, ns, patch, _preload_content=False, _request_timeout=timeout)

        await self.api.call(f"setting the selector of Service {name}", apply)

    async def _scale(self, replicas: Mapping[str, int]) -> None:
        ns, timeout = self.config.namespace, self.api.timeout

        def apply(apps: Any, core: Any) -> None:
            for name, count in replicas.items():
                patch = [{"op": "replace", "path": "/spec/replicas", "value": count}]
                apps.patch_namespaced_deployment(name, ns, patch, _preload_content=False, _request_timeout=timeout)

        await self.api.call("scaling Deployments to the traffic split", apply)

    async def set_backends(self, service: str, backends: Sequence[Backend]) -> None:
        """Route to `backends` by weight: one colour selected alone, or both with a replica ratio.

        Raises:
            RouterError: the API refused.
        """
        base = {f"{PREFIX}/service": _name(service)}
        live = [b for b in backends if not b.drained]
        colors = {b.instance.color for b in live}
        if len(colors) == 1 and None not in colors:
            await self._ensure_selector(service, {**base, f"{PREFIX}/color": str(colors.pop())})
            return
        if len(live) > 1:
            weights = {str(b.instance.ref or b.instance.slot): b.weight for b in backends}
            await self._scale({k: v for k, v in replica_split(weights, self.config.replicas).items() if v > 0})
        await self._ensure_selector(service, base)

    async def switch(self, service: str, color: str, backends: Sequence[Backend]) -> None:
        """All traffic to `color`: the Service selects that colour's pods only.

        Raises:
            RouterError: the API refused.
        """
        await self._ensure_selector(service, {f"{PREFIX}/service": _name(service), f"{PREFIX}/color": color})

    async def backends(self, service: str) -> list[Backend]:
        """The service's Deployments with replicas; weight = replicas when the selector picks them, else 0.

        Raises:
            RouterError: the API refused.
        """
        name, ns, timeout = self._service_name(service), self.config.namespace, self.api.timeout

        def read(apps: Any, core: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
            svc = _read_or_none(lambda: core.read_namespaced_service(
                name, ns, _preload_content=False, _request_timeout=timeout))
            deps = _json(apps.list_namespaced_deployment(ns, label_selector=f"{PREFIX}/service={_name(service)}",
                                                         _preload_content=False, _request_timeout=timeout))
            return svc, deps

        svc, deps = await self.api.call(f"reading Service {name}", read)
        if svc is None:
            return []
        selector: dict[str, str] = svc.get("spec", {}).get("selector") or {}
        out = []
        for item in deps.get("items", []):
            replicas = int(item.get("spec", {}).get("replicas") or 0)
            if replicas == 0:
                continue
            meta = item["metadata"]
            labels = meta.get("labels") or {}
            selected = all(labels.get(k) == v for k, v in selector.items())
            color = labels.get(f"{PREFIX}/color")
            inst = Instance(service=service, slot=meta["name"], ref=meta["name"],
                            color=None if color in (None, "none") else color,
                            version=(meta.get("annotations") or {}).get(f"{PREFIX}/version"))
            out.append(Backend(inst, Address(f"{meta['name']}.{ns}.svc", self.config.target_port),
                               replicas if selected else 0))
        return sorted(out, key=lambda b: b.instance.slot)

    async def address(self, service: str) -> Address | None:
        host = self.config.address_host or f"{self._service_name(service)}.{self.config.namespace}.svc"
        return Address(host, self.config.port)

    async def close(self) -> None:
        await self.api.close()
