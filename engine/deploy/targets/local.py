"""The local target: a service is a command started as local processes, one per port.

Each version gets a release directory `<state_dir>/releases/<service>/<version>/` filled from
the deployment's artifacts (directories are copied, tarballs unpacked, files copied). An
instance is `command` with `{port}`, `{host}`, `{release_dir}`, `{version}`, `{service}` and
`{color}` substituted, run by /bin/sh in its own process group with its output appended to
`<state_dir>/logs/<service>-<slot>.log`. A record `<state_dir>/instances/<service>/<slot>.json`
(pid, process start time, version, ...) lets another engine process find and stop it; the start
time guards against a recycled pid.

Blue-green needs each colour on its own ports: `color_ports: {blue: [...], green: [...]}`, or
by default blue on `ports` and green on `ports` shifted by `color_port_offset` (100).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import anyio
from pydantic import Field, model_validator

from engine._process import group_alive, signal_group, start_time
from engine.deploy.targets.base import Address, Instance, Release, TargetConfig, TargetContext, color_ports
from engine.errors import InputError, TargetError

__all__ = ["LocalTarget", "LocalTargetConfig"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")

# Children started by this process, by pid: kept so that they can be reaped (no zombies, no
# ResourceWarning) whichever LocalTarget object later stops them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CHILDREN_LOCK = threading.Lock()


class LocalTargetConfig(TargetConfig):
    kind: Literal["local"] = "local"
    command: str = Field(min_length=1, description="Shell command; {port} {host} {release_dir} {version}...")
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(min_length=1, description="One instance per port.")
    host: str = Field(default="127.0.0.1", description="Address the instances listen on.")
    color_ports: dict[Literal["blue", "green"], list[Annotated[int, Field(ge=1, le=65535)]]] | None = Field(
        default=None,
        description="Ports of each colour for blue-green and canary.",
    )
    color_port_offset: int = Field(
        default=100,
        ge=1,
        le=60000,
        description="Without color_ports: green = ports + offset, blue = ports.",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for the processes.")
    stop_timeout: float = Field(default=5.0, gt=0, le=600, description="Seconds between SIGTERM and SIGKILL.")
    keep_releases: int = Field(default=5, ge=1, le=1000, description="Release directories kept per service.")

    @model_validator(mode="after")
    def _check_ports(self) -> LocalTargetConfig:
        for name, ports in [
            ("ports", self.ports),
            *((f"color_ports.{c}", p) for c, p in self.colors().items()),
        ]:
            bad = [p for p in ports if not 1 <= p <= 65535]
            if bad:
                raise ValueError(f"{name}: {bad[0]} is not a TCP port")
            if len(set(ports)) != len(ports):
                raise ValueError(f"{name}: a port is listed twice")
        colors = self.colors()
        if set(colors["blue"]) & set(colors["green"]):
            raise ValueError("the blue and green ports overlap; each colour needs its own ports")
        unknown = set(re.findall(r"\{(\w*)\}", self.command)) - {
            "port",
            "host",
            "release_dir",
            "version",
            "service",
            "color",
            "slot",
        }
        if unknown:
            raise ValueError(f"command: unknown placeholder {{{sorted(unknown)[0]}}}")
        return self

    def colors(self) -> dict[str, list[int]]:
        """The ports of each colour (see `color_ports`)."""
        return color_ports(self.ports, self.color_ports, self.color_port_offset)


def _reap_exited() -> None:
    """Reap every child of ours that has exited: an instance that crashed (rather than being
    stopped) must not stay a zombie for the life of a long-running server, even if nobody asks
    about its service again."""
    with _CHILDREN_LOCK:
        children = list(_CHILDREN.items())
    done = [pid for pid, child in children if child.poll() is not None]
    if done:
        with _CHILDREN_LOCK:
            for pid in done:
                _CHILDREN.pop(pid, None)


def _reap(pid: int) -> None:
    _reap_exited()
    with _CHILDREN_LOCK:
        ours = pid in _CHILDREN
    if not ours:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _alive(pid: int, start: str | None) -> bool:
    _reap(pid)
    now = start_time(pid)
    return now is not None and (start is None or now == start)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Unpack a release tarball; no member may land outside `dest`.

    Raises:
        InputError: a member is absolute, climbs out with '..', links outside, or is a device.
    """
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    # Extraction filters came with Python 3.11.4; Debian 12's own python3 is 3.11.2. The same
    # refusals as the "data" filter, made before anything is written.
    root = dest.resolve()
    for member in tar.getmembers():
        where = (root / member.name).resolve()
        if member.issym():
            link = (where.parent / member.linkname).resolve()
        elif member.islnk():
            link = (root / member.linkname).resolve()
        else:
            link = root
        if member.isdev() or not where.is_relative_to(root) or not link.is_relative_to(root):
            raise InputError(f"local target: {os.fsdecode(tar.name or '')}: member {member.name!r} would be written "
                             "outside the release directory (or is a device); refusing the archive")
    tar.extractall(dest)


class LocalTarget:
    """Services as local processes. See the module docstring."""

    config_model: ClassVar[type[TargetConfig]] = LocalTargetConfig

    def __init__(self, config: LocalTargetConfig, context: TargetContext) -> None:
        self.config = config
        self.context = context
        self.root = context.state_dir

    # -- layout -------------------------------------------------------------------------------
    def slots(self, service: str, color: str | None = None) -> list[Instance]:
        if color is None:
            ports = self.config.ports
        else:
            colors = self.config.colors()
            if color not in colors:
                raise InputError(f"local target: unknown colour {color!r} (blue or green)")
            ports = colors[color]
            if not ports:
                raise InputError(
                    f"local target of environment {self.context.environment!r}: set target.color_ports.{color} "
                    f"(ports, one instance each)"
                )
        return [Instance(service=service, slot=str(p), host=self.config.host, port=p, color=color) for p in ports]

    def _release_dir(self, service: str, version: str) -> Path:
        return self.root / "releases" / _SAFE.sub("_", service) / _SAFE.sub("_", version)

    def _record(self, service: str, slot: str) -> Path:
        return self.root / "instances" / _SAFE.sub("_", service) / f"{_SAFE.sub('_', slot)}.json"

    # -- prepare ------------------------------------------------------------------------------
    async def prepare(self, release: Release) -> Release:
        dest = self._release_dir(release.service, release.version)
        if not (dest / ".release.json").exists():
            await anyio.to_thread.run_sync(self._fill, release, dest)
        await anyio.to_thread.run_sync(self._prune, release.service, release.version)
        return replace(release, prepared={**release.prepared, "release_dir": str(dest)})

    def _fill(self, release: Release, dest: Path) -> None:
        if not release.artifacts:
            raise InputError(f"local target: {release.service} {release.version} has no artifacts to deploy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            for artifact in release.artifacts:
                src = Path(artifact)
                if src.is_dir():
                    shutil.copytree(src, tmp, dirs_exist_ok=True, symlinks=True)
                elif src.is_file() and tarfile.is_tarfile(src):
                    with tarfile.open(src) as tar:
                        _extract(tar, tmp)
                elif src.is_file():
                    shutil.copy2(src, tmp / src.name)
                else:
                    raise InputError(f"local target: artifact {src} does not exist")
            (tmp / ".release.json").write_text(
                json.dumps(
                    {
                        "service": release.service,
                        "version": release.version,
                        "artifacts": list(release.artifacts),
                        "deployment_id": release.deployment_id,
                        "prepared_at": time.time(),
                    }
                )
            )
            if dest.exists():  # a half-made directory from an interrupted prepare
                shutil.rmtree(dest)
            os.rename(tmp, dest)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise TargetError(f"local target: cannot prepare {dest}: {exc}") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _prune(self, service: str, keep_version: str) -> None:
        """Keep the newest `keep_releases` release directories, and any a live instance uses."""
        base = self.root / "releases" / _SAFE.sub("_", service)
        if not base.is_dir():
            return
        in_use = {keep_version}
        inst_dir = self._record(service, "x").parent
        for rec in inst_dir.glob("*.json") if inst_dir.is_dir() else []:
            with contextlib.suppress(OSError, ValueError):
                in_use.add(_SAFE.sub("_", str(json.loads(rec.read_text()).get("version"))))
        dirs = sorted(
            (d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")),
            key=lambda d: d.stat().st_mtime,
            reverse=True,
        )
        for old in dirs[self.config.keep_releases :]:
            if old.name not in in_use:
                shutil.rmtree(old, ignore_errors=True)

    # -- start / stop -------------------------------------------------------------------------
    async def start(self, release: Release, slot: Instance) -> Instance:
        release_dir = release.prepared.get("release_dir")
        if not release_dir:
            raise TargetError(f"local target: {release.service} {release.version} was not prepared")
        if slot.port is None:
            raise TargetError(f"local target: slot {slot.slot} has no port")
        rec = self._record(slot.service, slot.slot)
        existing = self._read(rec)
        if existing is not None and existing.alive:
            if existing.version == release.version and existing.deployment_id == release.deployment_id:
                return existing  # started already (a retried call)
            raise TargetError(
                f"local target: port {slot.port} still runs {slot.service} {existing.version} (pid {existing.ref})"
            )
        if not await anyio.to_thread.run_sync(_port_free, slot.host, slot.port):
            raise TargetError(f"local target: port {slot.port} on {slot.host} is in use by another process")
        color = release.color if release.color is not None else slot.color
        values = {
            "port": str(slot.port),
            "host": slot.host,
            "release_dir": release_dir,
            "version": release.version,
            "service": release.service,
            "color": color or "",
            "slot": slot.slot,
        }
        command = self.config.command
        for key, value in values.items():
            command = command.replace("{" + key + "}", shlex.quote(value))
        log_dir = self.root / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{_SAFE.sub('_', slot.service)}-{_SAFE.sub('_', slot.slot)}.log"
        env = {
            **os.environ,
            **self.config.env,
            **release.env,
            "PORT": str(slot.port),
            "HOST": slot.host,
            "SERVICE_VERSION": release.version,
            "RELEASE_DIR": release_dir,
        }
        try:
            with open(log_path, "ab") as log:
                log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} start {release.version}: {command}\n".encode())
                log.flush()
                child = subprocess.Popen(
                    ["/bin/sh", "-c", command],
                    cwd=release_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise TargetError(f"local target: cannot start {command!r}: {exc}") from exc
        with _CHILDREN_LOCK:
            _CHILDREN[child.pid] = child
        inst = replace(
            slot,
            version=release.version,
            deployment_id=release.deployment_id,
            ref=str(child.pid),
            color=color,
            alive=True,
            data={
                "pgid": str(child.pid),
                "start_time": start_time(child.pid) or "",
                "log": str(log_path),
                "release_dir": release_dir,
                "command": command,
            },
        )
        rec.parent.mkdir(parents=True, exist_ok=True)
        tmp = rec.with_suffix(".tmp")
        tmp.write_text(json.dumps(inst.to_json()))
        os.replace(tmp, rec)
        return inst

    async def stop(self, instance: Instance) -> None:
        rec = self._record(instance.service, instance.slot)
        recorded = self._read(rec)
        target = recorded if recorded is not None and recorded.ref == instance.ref else instance
        if target.ref:
            await self._kill(int(target.ref), target.data.get("start_time") or None)
        if recorded is not None and recorded.ref == target.ref:
            rec.unlink(missing_ok=True)

    async def _kill(self, pid: int, start: str | None) -> None:
        _reap(pid)
        now = start_time(pid)
        if start and now is not None and now != start:
            return  # the pid was recycled by an unrelated process: ours is long gone
        if now is None and not group_alive(pid):
            return
        deadline = time.monotonic() + self.config.stop_timeout
        sig = signal.SIGTERM
        while True:
            signal_group(pid, sig)
            _reap(pid)
            if not _alive(pid, start) and not group_alive(pid):
                return
            if time.monotonic() > deadline:
                if sig == signal.SIGKILL:
                    raise TargetError(f"local target: process group {pid} survives SIGKILL")
                sig = signal.SIGKILL
                deadline = time.monotonic() + 5
            await anyio.sleep(0.02)

    def _read(self, rec: Path) -> Instance | None:
        try:
            raw = json.loads(rec.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise TargetError(f"local target: unreadable instance record {rec}: {exc}") from exc
        inst = Instance.from_json(raw)
        alive = inst.ref is not None and _alive(int(inst.ref), inst.data.get("start_time") or None)
        return replace(inst, alive=alive)

    async def instances(self, service: str) -> list[Instance]:
        _reap_exited()
        inst_dir = self._record(service, "x").parent
        if not inst_dir.is_dir():
            return []
        found = [self._read(rec) for rec in sorted(inst_dir.glob("*.json"))]
        return sorted((i for i in found if i is not None), key=lambda i: (i.port or 0, i.slot))

    async def address(self, instance: Instance) -> Address:
        if instance.port is None:
            raise TargetError(f"local target: instance {instance.slot} has no port")
        return Address(instance.host, instance.port)

    async def close(self) -> None:
        return None

    def log_tail(self, instance: Instance, max_bytes: int = 2000) -> str:
        """The end of an instance's log (for failure reasons)."""
        path = instance.data.get("log")
        if not path:
            return ""
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - max_bytes))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""
