"""The Router seam: who gets a service's traffic.

A router is told the complete set of backends for a service and their weights, and makes the
world match it (nginx: write an upstream file, `nginx -t`, reload; Kubernetes: patch a Service
selector). Weights are relative integers; 0 means "no new traffic" (drained). Blue-green is
"all weight on one colour" (`switch`), canary is "weights split between stable and canary".

Contract (for implementers)
---------------------------
Registered in ``ROUTERS`` as ``"kind": "package.module:ClassName"``; the class has
``config_model`` (a ``RouterConfig`` subclass with ``kind: Literal["<kind>"]``) and is built as
``ClassName(config, context)`` with the environment's ``TargetContext`` (no I/O in the
constructor). Async methods, idempotent:

``set_backends(service, backends)``
    Route traffic for ``service`` to exactly ``backends`` in proportion to their weights.
    Validates the new configuration before it takes effect; when validation or the reload
    fails, raises ``RouterError`` and the previous configuration keeps serving.
``switch(service, color, backends)``
    Blue-green: all traffic to the backends whose instance has ``color``; the others are
    kept at weight 0 (drained, not removed) so a switch back is instant.
``backends(service) -> list[Backend]``
    What the router sends traffic to now (from its own state: the file it wrote, the selector).
``address(service) -> Address | None``
    Where clients reach the service through the router (nginx's listen address), if known.
``close()``
    Stop using the router. It does not stop a router process it did not start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from engine._registry import LazyRegistry
from engine.deploy.targets.base import Address, Instance, TargetContext

__all__ = ["ROUTERS", "Backend", "Router", "RouterConfig", "RouterFactory", "switch_weights"]


@dataclass(frozen=True)
class Backend:
    """One upstream of a service: an instance, where it answers, and its share of traffic."""

    instance: Instance
    address: Address
    weight: int = 1

    @property
    def drained(self) -> bool:
        return self.weight <= 0


def switch_weights(backends: Sequence[Backend], color: str) -> list[Backend]:
    """All weight on `color`: its backends get weight 1, the others 0 (drained)."""
    return [replace(b, weight=1 if b.instance.color == color else 0) for b in backends]


class RouterConfig(BaseModel):
    """Base of every router kind's settings (the `router:` mapping of an environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str


@runtime_checkable
class Router(Protocol):
    """Who gets a service's traffic. See the module docstring for the contract."""

    async def set_backends(self, service: str, backends: Sequence[Backend]) -> None: ...

    async def switch(self, service: str, color: str, backends: Sequence[Backend]) -> None: ...

    async def backends(self, service: str) -> list[Backend]: ...

    async def address(self, service: str) -> Address | None: ...

    async def close(self) -> None: ...


class RouterFactory(Protocol):
    config_model: type[RouterConfig]

    def __call__(self, config: Any, context: TargetContext) -> Router: ...


ROUTERS: LazyRegistry[RouterFactory] = LazyRegistry(
    "router",
    {
        "nginx": "engine.deploy.routers.nginx:NginxRouter",
        # A Service-selector router lives beside the kubernetes target that it belongs with.
        "kubernetes": "engine.deploy.targets.kubernetes:KubernetesServiceRouter",
    },
)
