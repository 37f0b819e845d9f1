"""The Target seam: where a service's instances run, and the contract every target implements.

Theory of operation
-------------------
The orchestrator never knows what kind of target it talks to. It asks the target for the
*slots* a service occupies (the places instances go: a port, a host, a replica index), asks it
to *prepare* a release (copy / upload / build the artifact, once), then *starts* the release
into a slot and *stops* instances, and asks for an instance's *address* so health checks and the
router can reach it. Everything about the world (processes, containers, SSH hosts, pods) stays
inside the target; everything about the rollout (order, batches, gates) stays in the strategies.

Contract (for implementers of local, docker, ssh, kubernetes)
-------------------------------------------------------------
A target kind is registered in ``TARGETS`` as ``"kind": "package.module:ClassName"``. The class:

* has a class attribute ``config_model``: a ``TargetConfig`` subclass (pydantic, extra=forbid)
  with ``kind: Literal["<kind>"]`` and the kind's settings. It is validated from the ``target:``
  mapping of an environment, so error messages name the field.
* is constructed as ``ClassName(config, context)`` with that model and a ``TargetContext``.
  The constructor does no I/O and must not fail on an unreachable world.
* must not import its SDK (docker, paramiko, kubernetes) at module level: import it inside
  methods, so ``import engine.deploy`` stays cheap and a machine without the SDK can still
  use the other kinds.
* translates every foreign exception into ``engine.errors.TargetError`` (with a message a human
  can act on) where it enters, once. Bad configuration found late is ``InputError``.

Methods (all async except ``slots``; all idempotent — the orchestrator and the rollback executor
may call them again after a crash or a retry):

``slots(service, color) -> list[Instance]``
    The places instances of ``service`` go, as unstarted ``Instance`` values (``version`` and
    ``ref`` None; ``slot``, ``host``, ``port``, ``color`` set). ``color=None`` is the ordinary
    set (recreate, rolling, canary). ``color="blue"``/``"green"`` is that colour's set for
    blue-green; the two colours' sets must not overlap (different ports / container names /
    Deployments). A target whose config cannot give two colours raises ``InputError`` saying
    which setting to add. Pure: computed from the config, no I/O.

``prepare(release) -> Release``
    Make the release startable on the target: copy the artifact into a release directory,
    upload and unpack a tarball, build or check an image. Returns the release with
    ``prepared`` filled in (e.g. ``{"release_dir": ...}`` or ``{"image": ...}``). Preparing a
    version that is already prepared re-uses it (rollback re-prepares the previous version).

``start(release, slot) -> Instance``
    Start ``release`` (a prepared one) in ``slot`` (one of ``slots()``), replacing nothing:
    the orchestrator stops what occupies the slot first when it must. Returns the running
    instance (``version``, ``ref``, ``deployment_id`` set). Returns once the instance was
    launched; it does not wait for health (the orchestrator does). Raises ``TargetError``
    when it cannot be launched at all.

``stop(instance) -> None``
    Stop the instance (gracefully, then forcibly) and forget it. Stopping an instance that
    is already gone is not an error.

``instances(service) -> list[Instance]``
    What runs now for ``service``, read from the world (pid files, container labels, ...),
    so a new process finds what an earlier one started. Includes instances that have died
    but are still recorded, with ``alive=False``.

``address(instance) -> Address``
    Where health checks and the router reach the instance.

``close() -> None``
    Release clients / connections. The target may be used no more.

Skeleton::

    class DockerTargetConfig(TargetConfig):
        kind: Literal["docker"] = "docker"
        ...

    class DockerTarget:
        config_model: ClassVar[type[TargetConfig]] = DockerTargetConfig

        def __init__(self, config: DockerTargetConfig, context: TargetContext) -> None: ...

``engine.deploy.targets.fake.FakeTarget`` is a complete (in-memory) example.

Blue-green, canary and rolling with a router need ``address()`` to be reachable from the
router (nginx runs on the engine's machine for local, docker and ssh targets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict

from engine._registry import LazyRegistry

__all__ = [
    "COLORS",
    "TARGETS",
    "Address",
    "Instance",
    "Release",
    "Target",
    "TargetConfig",
    "TargetContext",
    "TargetFactory",
    "color_ports",
    "other_color",
]

COLORS = ("blue", "green")
_Color = TypeVar("_Color", bound=str)


def color_ports(
    ports: Sequence[int], chosen: Mapping[_Color, Sequence[int]] | None, offset: int
) -> dict[str, list[int]]:
    """The ports of each colour: `chosen` (a target's `color_ports`) as given, a colour left out
    having none (the target says which setting to add when that colour is wanted); without it,
    blue on `ports` and green on `ports` + `offset`."""
    if chosen is not None:
        named = {str(color): list(p) for color, p in chosen.items()}
        return {color: named.get(color, []) for color in COLORS}
    return {"blue": list(ports), "green": [p + offset for p in ports]}


def other_color(color: str | None) -> str:
    """The colour that is not `color` (blue when there is none yet)."""
    return "green" if color == "blue" else "blue"


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Release:
    """One version of a service, as the target will start it.

    `artifacts` are what the deployment was given (directories, tarballs, image references),
    as absolute paths where they are paths. `prepared` is filled by `Target.prepare`.
    """

    service: str
    version: str
    deployment_id: str
    artifacts: tuple[str, ...] = ()
    color: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    prepared: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Instance:
    """One place a service runs (a slot), and what runs there once started.

    `slot` is stable across versions (a port, a host name, "web-blue-0"); two instances of the
    same service never share a slot at once. `ref` is the target's handle (pid, container id,
    pod name). `data` carries target-specific details as strings (log path, release dir, ...).
    """

    service: str
    slot: str
    host: str = "127.0.0.1"
    port: int | None = None
    color: str | None = None
    version: str | None = None
    deployment_id: str | None = None
    ref: str | None = None
    alive: bool = True
    data: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "slot": self.slot,
            "host": self.host,
            "port": self.port,
            "color": self.color,
            "version": self.version,
            "deployment_id": self.deployment_id,
            "ref": self.ref,
            "alive": self.alive,
            "data": dict(self.data),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Instance:
        return cls(
            service=str(raw["service"]),
            slot=str(raw["slot"]),
            host=str(raw.get("host") or "127.0.0.1"),
            port=raw.get("port"),
            color=raw.get("color"),
            version=raw.get("version"),
            deployment_id=raw.get("deployment_id"),
            ref=raw.get("ref"),
            alive=bool(raw.get("alive", True)),
            data={str(k): str(v) for k, v in (raw.get("data") or {}).items()},
        )


class TargetConfig(BaseModel):
    """Base of every target kind's settings (the `target:` mapping of an environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str


@dataclass(frozen=True)
class TargetContext:
    """What a target gets besides its own config.

    `state_dir` is a directory owned by this environment's target (release dirs, pid files,
    logs): `<workspace>/deploy/<environment>/`. `host`, `port`, `user`, `docker_registry` are
    the environment's general fields, usable as defaults.
    """

    environment: str
    state_dir: Path
    host: str | None = None
    port: int | None = None
    user: str | None = None
    docker_registry: str | None = None


@runtime_checkable
class Target(Protocol):
    """Where a service's instances run. See the module docstring for the contract."""

    def slots(self, service: str, color: str | None = None) -> list[Instance]: ...

    async def prepare(self, release: Release) -> Release: ...

    async def start(self, release: Release, slot: Instance) -> Instance: ...

    async def stop(self, instance: Instance) -> None: ...

    async def instances(self, service: str) -> list[Instance]: ...

    async def address(self, instance: Instance) -> Address: ...

    async def close(self) -> None: ...


class TargetFactory(Protocol):
    """A target class: `config_model` to validate its settings, and `(config, context) -> Target`."""

    config_model: type[TargetConfig]

    def __call__(self, config: Any, context: TargetContext) -> Target: ...


TARGETS: LazyRegistry[TargetFactory] = LazyRegistry(
    "target",
    {
        "local": "engine.deploy.targets.local:LocalTarget",
        "docker": "engine.deploy.targets.docker:DockerTarget",
        "ssh": "engine.deploy.targets.ssh:SSHTarget",
        "kubernetes": "engine.deploy.targets.kubernetes:KubernetesTarget",
    },
)
