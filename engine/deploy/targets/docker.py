"""DockerTarget: a service's instances are containers on a Docker engine, one per published port.

The engine is reached through the docker SDK at `base_url` (default: `DOCKER_HOST`, else the
local socket). A release's artifact is an image reference (`registry/web:2`), or a build context
(a directory with a Dockerfile, or a tarball of one) built into `<service>:<version>` without
pulling anything. When the image is not on the engine, `pull` decides: `never` (the default)
makes it an error, `missing` pulls it, `always` pulls before every prepare.

Containers are found again through their labels (`io.cicd-mcp.*`: environment, service, slot,
version, deployment id, colour), so a new engine process sees what an earlier one started.
They run with `init=True` so that a stop is answered at once, and publish `container_port` on
`bind_address`:<slot port>.

Every docker SDK call runs in a worker thread and is wrapped by `_call`, the one place docker
and requests exceptions become `TargetError`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import anyio.to_thread
from pydantic import Field, field_validator, model_validator

from engine.deploy.targets.base import Address, Instance, Release, TargetConfig, TargetContext, color_ports
from engine.errors import InputError, TargetError

__all__ = ["LABEL", "DockerTarget", "DockerTargetConfig"]

LABEL = "io.cicd-mcp"
T = TypeVar("T")

_TAG_OK = re.compile(r"[^A-Za-z0-9_.-]")
_REPO_OK = re.compile(r"[^a-z0-9_.-]")
_TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


class DockerTargetConfig(TargetConfig):
    """Settings of the `docker` target kind."""

    kind: Literal["docker"] = "docker"
    base_url: str | None = Field(
        default=None,
        description="Docker engine URL (unix://..., tcp://...); default DOCKER_HOST or the local socket.",
    )
    image: str | None = Field(
        default=None,
        description="Image reference used when the artifacts name none; "
        "may use {service}, {version}, {registry}.",
    )
    pull: Literal["never", "missing", "always"] = Field(
        default="never",
        description="Whether a missing image is pulled. `never`: a missing image is an error.",
    )
    ports: list[int] = Field(default_factory=list, description="Host ports, one instance per port.")
    color_ports: dict[Literal["blue", "green"], list[int]] | None = Field(
        default=None, description="Host ports of each colour for blue-green and canary.",
    )
    color_port_offset: int = Field(
        default=100, ge=1, le=60000, description="Without color_ports: blue = ports, green = ports + offset.",
    )
    container_port: int = Field(default=8080, ge=1, le=65535, description="The service's port inside.")
    bind_address: str = Field(default="127.0.0.1", description="Host address the ports are published on.")
    command: list[str] | str | None = Field(default=None, description="Overrides the image's command.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment of every container.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels of every container.")
    network: str | None = Field(default=None, description="Docker network to attach the containers to.")
    stop_timeout: int = Field(default=10, ge=0, description="Seconds between SIGTERM and SIGKILL on stop.")
    timeout: float = Field(default=120, gt=0, description="Seconds one docker API call (a build) may take.")

    @field_validator("ports")
    @classmethod
    def _ports_in_range(cls, ports: list[int]) -> list[int]:
        bad = [p for p in ports if not 0 < p < 65536]
        if bad:
            raise ValueError(f"ports out of range: {bad}")
        if len(set(ports)) != len(ports):
            raise ValueError(f"ports listed twice: {ports}")
        return ports

    @model_validator(mode="after")
    def _colours(self) -> DockerTargetConfig:
        colors = self.colors()
        for color, ports in colors.items():
            if any(not 0 < p < 65536 for p in ports):
                raise ValueError(f"{color} ports out of range: {ports}")
        if set(colors["blue"]) & set(colors["green"]):
            raise ValueError("the blue and green ports overlap; each colour needs its own ports")
        return self

    def colors(self) -> dict[str, list[int]]:
        """The ports of each colour (see `color_ports`)."""
        return color_ports(self.ports, self.color_ports, self.color_port_offset)


def _docker_name(text: str) -> str:
    return _REPO_OK.sub("-", text.lower()).strip("-.") or "svc"


def default_tag(service: str, version: str) -> str:
    """The tag a build-context artifact is built as: `<service>:<version>`, made legal for docker."""
    return f"{_docker_name(service)}:{_TAG_OK.sub('-', version)[:128]}"


def is_build_context(artifact: str) -> bool:
    path = Path(artifact)
    if path.is_dir():
        return (path / "Dockerfile").is_file()
    return path.is_file() and artifact.endswith(_TARBALL_SUFFIXES)


def _close_failed_unix_connects() -> None:
    """Make the SDK close the socket of a unix connect that failed.

    docker-py 7.1's UnixHTTPConnection.connect creates a socket and connects it; when the engine
    is gone (socket file removed, daemon stopped) the connect raises and the socket is left for
    the garbage collector (a ResourceWarning, a file descriptor held until then). The same
    connect, closing the socket on failure, replaces it once per process.
    """
    import socket

    from docker.transport import unixconn

    cls: Any = unixconn.UnixHTTPConnection
    if getattr(cls.connect, "_closes_on_failure", False):
        return

    def connect(self: Any) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_socket)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    connect._closes_on_failure = True  # type: ignore[attr-defined]
    cls.connect = connect


class DockerTarget:
    """Containers on a Docker engine. See the module docstring."""

    config_model: ClassVar[type[TargetConfig]] = DockerTargetConfig

    def __init__(self, config: DockerTargetConfig, context: TargetContext) -> None:
        self.config = config
        self.context = context
        self._client: Any = None

    # ---------------------------------------------------------------- plumbing

    @property
    def _where(self) -> str:
        return self.config.base_url or os.environ.get("DOCKER_HOST") or "the local docker engine"

    def _connect(self) -> Any:
        import docker

        _close_failed_unix_connects()
        url = self.config.base_url or os.environ.get("DOCKER_HOST") or ""
        # Checked before every call, because the SDK leaks the socket of a failed unix connect
        # (and an engine can go away between two calls).
        if url.startswith("unix://") and not Path(url.removeprefix("unix://")).exists():
            self._drop_client()
            raise TargetError(f"docker: no engine socket at {url} (is dockerd running?)")
        if self._client is None:
            if self.config.base_url:
                self._client = docker.DockerClient(
                    base_url=self.config.base_url, timeout=int(self.config.timeout)
                )
            else:
                self._client = docker.from_env(timeout=int(self.config.timeout))
        return self._client

    async def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run `fn(client)` in a worker thread; docker and transport errors become TargetError."""
        import docker.errors
        import requests

        def run() -> T:
            try:
                return fn(self._connect())
            except docker.errors.DockerException as exc:
                raise TargetError(f"docker: {what} on {self._where} failed: {exc}") from exc
            except (requests.RequestException, OSError) as exc:
                # The engine went away mid-request: drop the client (closing its pooled sockets,
                # which the SDK would otherwise leave open) so the next call connects afresh.
                self._drop_client()
                raise TargetError(f"docker: {what}: cannot reach {self._where}: {exc}") from exc

        return await anyio.to_thread.run_sync(run)

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _labels(self, release: Release, slot: Instance) -> dict[str, str]:
        color = release.color if release.color is not None else slot.color
        return {
            **self.config.labels,
            f"{LABEL}.environment": self.context.environment,
            f"{LABEL}.service": slot.service,
            f"{LABEL}.slot": slot.slot,
            f"{LABEL}.port": str(slot.port),
            f"{LABEL}.version": release.version,
            f"{LABEL}.deployment-id": release.deployment_id,
            f"{LABEL}.color": color or "",
        }

    def _filters(self, service: str, slot: str | None = None) -> dict[str, list[str]]:
        labels = [f"{LABEL}.environment={self.context.environment}", f"{LABEL}.service={service}"]
        if slot is not None:
            labels.append(f"{LABEL}.slot={slot}")
        return {"label": labels}

    def _instance(self, container: Any) -> Instance:
        labels: Mapping[str, str] = container.labels
        port = labels.get(f"{LABEL}.port")
        return Instance(
            service=labels[f"{LABEL}.service"],
            slot=labels[f"{LABEL}.slot"],
            host=self._reach_host(),
            port=int(port) if port and port.isdigit() else None,
            color=labels.get(f"{LABEL}.color") or None,
            version=labels.get(f"{LABEL}.version"),
            deployment_id=labels.get(f"{LABEL}.deployment-id"),
            ref=container.id,
            alive=container.status == "running",
            data={"container": container.name, "image": str(container.attrs.get("Config", {}).get("Image"))},
        )

    def _reach_host(self) -> str:
        return "127.0.0.1" if self.config.bind_address in ("0.0.0.0", "") else self.config.bind_address

    # ---------------------------------------------------------------- the Target contract

    def slots(self, service: str, color: str | None = None) -> list[Instance]:
        """One slot per configured port: `ports` for the ordinary set, `<color>_ports` for a colour.

        Raises:
            InputError: the needed port list is not configured, or the colours' ports overlap.
        """
        if color is None:
            ports, field, prefix = self.config.ports, "ports", ""
        elif color in ("blue", "green"):
            ports, field, prefix = self.config.colors()[color], f"color_ports.{color}", f"{color}-"
        else:
            raise InputError(f"docker target: unknown colour {color!r} (blue or green)")
        if not ports:
            raise InputError(
                f"docker target of environment {self.context.environment!r}: set target.{field} "
                f"(host ports, one instance each)"
            )
        return [
            Instance(service=service, slot=f"{prefix}{i}", host=self._reach_host(), port=port, color=color)
            for i, port in enumerate(ports)
        ]

    def _image_ref(self, release: Release) -> str | None:
        """The image the artifacts or the config name, or None when it must be built."""
        for artifact in release.artifacts:
            if is_build_context(artifact):
                return None
            if artifact.startswith(("/", "./")) or os.path.exists(artifact):
                raise InputError(
                    f"docker target: artifact {artifact!r} is neither an image reference nor a build "
                    f"context (a directory with a Dockerfile, or a {'/'.join(_TARBALL_SUFFIXES)} file)"
                )
            return artifact
        if self.config.image:
            return self.config.image.format(
                service=release.service, version=release.version, registry=self.context.docker_registry or "",
            ).lstrip("/")
        raise InputError(
            f"docker target: deployment of {release.service} {release.version} names no image "
            f"(give an image reference or build context as artifact, or set target.image)"
        )

    async def prepare(self, release: Release) -> Release:
        """Make sure the release's image is on the engine: build a context, check (or pull) a reference.

        Raises:
            InputError: the artifacts name no usable image or context.
            TargetError: the image is missing and `pull` is never, or the build or pull failed.
        """
        ref = self._image_ref(release)
        if ref is None:
            context = next(a for a in release.artifacts if is_build_context(a))
            ref = tag = default_tag(release.service, release.version)
            image_id = await self._call(f"building {context}", lambda c: self._build(c, context, tag))
            registry = self.context.docker_registry
            if registry:
                # The environment's registry keeps what was built, so that other hosts (and a later
                # rollback) can pull the very image; unreachable, the deploy fails naming it.
                ref = f"{registry.rstrip('/')}/{tag}"
                await self._call(f"pushing {ref}", lambda c: self._push(c, tag, ref, registry))
        else:
            image_id = await self._call(f"looking up image {ref}", lambda c: self._ensure_image(c, ref))
        return replace(release, prepared={**release.prepared, "image": ref, "image_id": image_id})

    def _build(self, client: Any, context: str, tag: str) -> str:
        options: dict[str, Any] = {"tag": tag, "pull": False, "rm": True, "forcerm": True, "decode": True}
        log: list[str] = []
        error: str | None = None
        image_id: str | None = None
        with contextlib.ExitStack() as stack:
            if Path(context).is_dir():
                stream = client.api.build(path=context, **options)
            else:
                # The engine detects a gzip, bzip2 or xz context itself.
                fileobj = stack.enter_context(open(context, "rb"))
                stream = client.api.build(fileobj=fileobj, custom_context=True, **options)
            # Read to the end even after an error so that the response (and its socket) is released.
            for chunk in stream:
                log.append(str(chunk.get("stream", "")))
                if "error" in chunk:
                    error = str(chunk["error"])
                    log.append(error)
                aux = chunk.get("aux")
                if isinstance(aux, dict) and "ID" in aux:
                    image_id = str(aux["ID"])
        if error is not None:
            tail = "".join(log)[-1500:]
            raise TargetError(f"docker: building {context} as {tag} failed: {error.strip()}\n{tail}")
        return image_id or str(client.images.get(tag).id)

    def _push(self, client: Any, tag: str, ref: str, registry: str) -> None:
        import docker.errors

        repository, _, version = ref.rpartition(":")
        try:
            client.images.get(tag).tag(repository, version)
            stream = client.images.push(repository, tag=version, stream=True, decode=True)
            errors = [str(chunk["error"]) for chunk in stream if isinstance(chunk, dict) and "error" in chunk]
        except docker.errors.APIError as exc:
            errors = [str(exc.explanation or exc)]
        if errors:
            raise TargetError(
                f"docker: pushing {ref} to the registry {registry} failed: {errors[-1].strip()} "
                f"(is {registry} reachable from the docker engine, and does it accept pushes?)"
            )

    def _ensure_image(self, client: Any, ref: str) -> str:
        import docker.errors

        if self.config.pull == "always":
            return str(client.images.pull(ref).id)
        try:
            return str(client.images.get(ref).id)
        except docker.errors.ImageNotFound:
            if self.config.pull == "never":
                raise TargetError(
                    f"docker: image {ref!r} is not on {self._where} and target.pull is 'never' "
                    f"(build or load it first, or set pull: missing)"
                ) from None
        return str(client.images.pull(ref).id)

    async def start(self, release: Release, slot: Instance) -> Instance:
        """Run a container of `release` in `slot`; an identical one already running is returned as is.

        Raises:
            TargetError: the slot holds a running container of another release, or docker refused.
        """
        if "image" not in release.prepared:
            release = await self.prepare(release)
        image = release.prepared["image"]
        labels = self._labels(release, slot)

        def run(client: Any) -> Any:
            for old in client.containers.list(all=True, filters=self._filters(slot.service, slot.slot)):
                if old.status != "running":
                    old.remove(force=True)  # a dead one only holds its name and port
                elif old.labels.get(f"{LABEL}.version") == release.version:
                    return old
                else:
                    raise TargetError(
                        f"docker: slot {slot.slot} of {slot.service} is occupied by version "
                        f"{old.labels.get(f'{LABEL}.version')} ({old.name}); stop it first"
                    )
            name = f"{_docker_name(self.context.environment)}-{_docker_name(slot.service)}-{slot.slot}-" \
                   f"{secrets.token_hex(3)}"
            kwargs: dict[str, Any] = {
                "detach": True, "init": True, "name": name, "labels": labels,
                "environment": {**self.config.env, **release.env},
                "ports": {f"{self.config.container_port}/tcp": (self.config.bind_address, slot.port)},
                "stop_signal": "SIGTERM",
            }
            if self.config.command is not None:
                kwargs["command"] = self.config.command
            if self.config.network:
                kwargs["network"] = self.config.network
            try:
                return client.containers.run(image, **kwargs)
            except Exception:
                # A container that was created but could not start (port taken) would hold the name.
                for leftover in client.containers.list(all=True, filters={"name": name}):
                    leftover.remove(force=True)
                raise

        container = await self._call(f"starting {image} in slot {slot.slot}", run)
        started = self._instance(container)
        return replace(started, alive=True, data={**started.data, "image": image})

    async def stop(self, instance: Instance) -> None:
        """Stop (SIGTERM, then SIGKILL after `stop_timeout`) and remove the instance's container.

        Raises:
            TargetError: docker could not stop or remove it.
        """
        import docker.errors

        def stop(client: Any) -> None:
            if instance.ref:
                try:
                    found = [client.containers.get(instance.ref)]
                except docker.errors.NotFound:
                    return
            else:
                found = client.containers.list(
                    all=True, filters=self._filters(instance.service, instance.slot)
                )
            for container in found:
                try:
                    if container.status == "running":
                        container.stop(timeout=self.config.stop_timeout)
                    container.remove(force=True)
                except docker.errors.NotFound:
                    continue

        await self._call(f"stopping {instance.slot} of {instance.service}", stop)

    async def instances(self, service: str) -> list[Instance]:
        """The containers labelled with this environment and service, running or not, by slot.

        Raises:
            TargetError: docker could not be asked.
        """

        def listing(client: Any) -> list[Instance]:
            found = client.containers.list(all=True, filters=self._filters(service))
            return [self._instance(c) for c in found]

        found = await self._call(f"listing containers of {service}", listing)
        return sorted(found, key=lambda i: (i.slot, i.ref or ""))

    async def address(self, instance: Instance) -> Address:
        """Where the instance's published port answers.

        Raises:
            TargetError: the instance has no port.
        """
        if instance.port is None:
            raise TargetError(f"docker: instance {instance.slot} of {instance.service} has no published port")
        return Address(instance.host or self._reach_host(), instance.port)

    async def logs(self, instance: Instance, tail: int = 50) -> str:
        """The last lines the instance's container wrote (why a version exited at start).

        Raises:
            TargetError: docker could not be asked.
        """
        import docker.errors

        def read(client: Any) -> str:
            try:
                raw = client.containers.get(instance.ref).logs(tail=tail)
            except docker.errors.NotFound:
                return ""
            return bytes(raw).decode(errors="replace")

        if not instance.ref:
            return ""
        return await self._call(f"reading logs of {instance.slot}", read)

    def log_tail(self, instance: Instance, max_bytes: int = 2000) -> str:
        """The end of what the instance's container printed ("" when it cannot be read)."""
        import docker.errors
        import requests

        if not instance.ref:
            return ""
        try:
            raw = self._connect().containers.get(instance.ref).logs(tail=200)
        except (docker.errors.DockerException, requests.RequestException, OSError, TargetError):
            return ""  # a diagnostic read must never mask the failure being explained
        return bytes(raw).decode(errors="replace")[-max_bytes:]

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await anyio.to_thread.run_sync(client.close)

