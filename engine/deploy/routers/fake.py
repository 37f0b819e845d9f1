"""FakeRouter: remembers the backends it was given, for logic tests. `fail_next` makes the next
change raise RouterError (the previous backends stay), as a failed nginx reload would."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from engine.deploy.routers.base import Backend, RouterConfig, switch_weights
from engine.deploy.targets.base import Address, TargetContext
from engine.errors import RouterError

__all__ = ["FakeRouter", "FakeRouterConfig"]


class FakeRouterConfig(RouterConfig):
    kind: Literal["fake"] = "fake"


class FakeRouter:
    config_model: ClassVar[type[RouterConfig]] = FakeRouterConfig

    def __init__(self, config: FakeRouterConfig | None = None, context: TargetContext | None = None) -> None:
        self.config = config or FakeRouterConfig()
        self.routes: dict[str, list[Backend]] = {}
        self.history: list[tuple[str, list[tuple[str | None, int]]]] = []
        self.fail_next = False

    async def set_backends(self, service: str, backends: Sequence[Backend]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RouterError("fake router: reload failed")
        self.routes[service] = list(backends)
        self.history.append((service, [(b.instance.version, b.weight) for b in backends]))

    async def switch(self, service: str, color: str, backends: Sequence[Backend]) -> None:
        await self.set_backends(service, switch_weights(backends, color))

    async def backends(self, service: str) -> list[Backend]:
        return list(self.routes.get(service, []))

    async def address(self, service: str) -> Address | None:
        return None

    async def close(self) -> None:
        return None

    def weights(self, service: str) -> dict[str | None, int]:
        """Total weight per version (a test helper)."""
        out: dict[str | None, int] = {}
        for b in self.routes.get(service, []):
            out[b.instance.version] = out.get(b.instance.version, 0) + b.weight
        return out
