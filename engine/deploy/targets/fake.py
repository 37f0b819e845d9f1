"""FakeTarget: an in-memory target for logic tests of the orchestrator and strategies.

It runs nothing. Tests choose which versions fail to start (`fail_start`) or answer unhealthy
(`unhealthy`, read by `FakeTarget.probe`, which a test passes as the health checker). Every call
is recorded in `calls` so a test can assert the order of operations. Real targets have their own
tests against real processes, containers and hosts.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import ClassVar, Literal

from engine.deploy.targets.base import Address, Instance, Release, TargetConfig, TargetContext
from engine.errors import InputError, TargetError

__all__ = ["FakeTarget", "FakeTargetConfig"]


class FakeTargetConfig(TargetConfig):
    kind: Literal["fake"] = "fake"
    slots: int = 2
    base_port: int = 20000


class FakeTarget:
    config_model: ClassVar[type[TargetConfig]] = FakeTargetConfig

    def __init__(self, config: FakeTargetConfig | None = None, context: TargetContext | None = None) -> None:
        self.config = config or FakeTargetConfig()
        self.context = context
        self.running: dict[tuple[str, str], Instance] = {}
        self.prepared: dict[tuple[str, str], Release] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_start: set[str] = set()
        self.unhealthy: set[str] = set()
        self._ids = itertools.count(1)

    def slots(self, service: str, color: str | None = None) -> list[Instance]:
        offset = {None: 0, "blue": 100, "green": 200}.get(color)
        if offset is None:
            raise InputError(f"fake target: unknown colour {color!r}")
        out = []
        for i in range(self.config.slots):
            port = self.config.base_port + offset + i
            slot = f"{color}-{i}" if color else str(i)
            out.append(Instance(service=service, slot=slot, port=port, color=color))
        return out

    async def prepare(self, release: Release) -> Release:
        self.calls.append(("prepare", release.version))
        ready = replace(release, prepared={"fake": release.version})
        self.prepared[(release.service, release.version)] = ready
        return ready

    async def start(self, release: Release, slot: Instance) -> Instance:
        self.calls.append(("start", f"{slot.slot}={release.version}"))
        if (release.service, release.version) not in self.prepared:
            raise TargetError(f"fake target: {release.service} {release.version} was not prepared")
        if release.version in self.fail_start:
            raise TargetError(f"fake target: {release.version} refuses to start")
        key = (slot.service, slot.slot)
        if key in self.running:
            raise TargetError(f"fake target: slot {slot.slot} is occupied")
        inst = replace(
            slot,
            version=release.version,
            deployment_id=release.deployment_id,
            ref=str(next(self._ids)),
            color=release.color if release.color is not None else slot.color,
        )
        self.running[key] = inst
        return inst

    async def stop(self, instance: Instance) -> None:
        self.calls.append(("stop", f"{instance.slot}={instance.version}"))
        self.running.pop((instance.service, instance.slot), None)

    async def instances(self, service: str) -> list[Instance]:
        return [i for (svc, _), i in sorted(self.running.items()) if svc == service]

    async def address(self, instance: Instance) -> Address:
        return Address(instance.host, instance.port or 0)

    async def close(self) -> None:
        self.calls.append(("close", ""))

    def serving(self, service: str) -> set[str | None]:
        """Versions running now (a test helper)."""
        return {i.version for (svc, _), i in self.running.items() if svc == service}

    def is_healthy(self, instance: Instance) -> bool:
        live = self.running.get((instance.service, instance.slot))
        return live is not None and live.version not in self.unhealthy
