"""SSHTarget: a service runs on remote hosts reached over SSH, Capistrano/Kamal style.

Layout on each host, under `deploy_path`:

    releases/<version>/     one unpacked release per version (the newest `keep_releases` are kept,
                            plus whatever `current` or a running instance uses)
    current -> releases/<version>     switched atomically (ln -sfn to a temp name, then mv -T)
    run/<slot>.pid, run/<slot>.json   the instance in a slot: its process group and its record
    logs/<slot>.log                   what the instance printed

`prepare` uploads the release's tarball (or a tarball made from a directory artifact) by SFTP
and unpacks it into `releases/<version>`, host by host in batches of `serial` hosts, as
Ansible does: when more than `max_fail_percentage` of a batch fails, the hosts after it are
not touched and prepare fails; below that, the deploy goes on and a host that failed is
prepared again when an instance is started on it. `start` switches `current` and runs the
restart `command` from the release directory in its own session; `stop` signals the process
group (TERM, then KILL after `stop_timeout`).

Host keys are checked against `known_hosts` with paramiko's RejectPolicy: an unknown or
changed host key is refused, never trusted on first use. The sessions (`_ssh_session`) are
the one place paramiko and socket errors become `TargetError`; the shell run on the hosts is
in `_ssh_scripts`.
"""

from __future__ import annotations

import getpass
import gzip
import hashlib
import json
import math
import posixpath
import re
import secrets
import shlex
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.deploy.targets import _ssh_scripts as scripts
from engine.deploy.targets._ssh_session import SSHEndpoint, SSHSessions, parse_host
from engine.deploy.targets.base import Address, Instance, Release, TargetConfig, TargetContext, color_ports
from engine.errors import InputError, TargetError

__all__ = ["SSHHost", "SSHTarget", "SSHTargetConfig", "batch_failed", "host_batches"]

T = TypeVar("T")
Port = Annotated[int, Field(ge=1, le=65535)]
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_PLACEHOLDERS = {"port", "host", "release_dir", "current", "deploy_path", "version", "service", "color", "slot"}


# -- pure decisions ------------------------------------------------------------------------------
def host_batches(n_hosts: int, serial: int | str) -> list[range]:
    """Split hosts 0..n-1 into consecutive batches of `serial` hosts (a count or "30%" of them)."""
    if n_hosts <= 0:
        return []
    if isinstance(serial, str):
        size = max(1, math.floor(n_hosts * float(serial.rstrip("%")) / 100))
    else:
        size = max(1, serial)
    return [range(i, min(i + size, n_hosts)) for i in range(0, n_hosts, size)]


def batch_failed(failed: int, batch_size: int, max_fail_percentage: float) -> bool:
    """Ansible's rule: a batch fails the play when *more than* max_fail_percentage of it failed."""
    return batch_size > 0 and failed * 100 > max_fail_percentage * batch_size


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _safe(text: str) -> str:
    return _SAFE.sub("_", text) or "_"


# -- configuration -------------------------------------------------------------------------------
class SSHHost(BaseModel):
    """One host. Fields left out come from the target's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, description="Host name or address to connect to.")
    port: Port = Field(default=22, description="SSH port.")
    name: str | None = Field(default=None, description="Name used in slots and messages (default host:port).")
    user: str | None = Field(default=None, description="Login user (default the target's).")
    deploy_path: str | None = Field(default=None, description="Overrides the target's deploy_path here.")
    service_host: str | None = Field(
        default=None, description="Address where this host's instances answer (default: host).",
    )
    ports: list[Port] | None = Field(default=None, description="Overrides the target's instance ports here.")
    color_ports: dict[Literal["blue", "green"], list[Port]] | None = Field(
        default=None, description="Overrides the colours' ports here.",
    )

    @property
    def label(self) -> str:
        return self.name or f"{self.host}:{self.port}"


class SSHTargetConfig(TargetConfig):
    """Settings of the `ssh` target kind."""

    kind: Literal["ssh"] = "ssh"
    hosts: list[SSHHost] = Field(default_factory=list, description="Hosts (`host`, `host:port` or a mapping).")
    user: str | None = Field(default=None, description="Login user (default: the environment's user, or ours).")
    key_file: Path | None = Field(default=None, description="Private key file (default: ssh's usual keys).")
    known_hosts: Path = Field(
        default=Path("~/.ssh/known_hosts"), description="Known host keys; an unknown host is refused.",
    )
    deploy_path: str | None = Field(
        default=None, description="Directory of the service on each host; {service} is replaced.",
    )
    command: str = Field(
        min_length=1,
        description="Restart command, run from the release directory in the foreground of its own session; "
        "placeholders {port} {host} {release_dir} {current} {deploy_path} {version} {service} {color} {slot}.",
    )
    ports: list[Port] = Field(default_factory=list, description="Instance ports on each host, one per instance.")
    color_ports: dict[Literal["blue", "green"], list[Port]] | None = Field(
        default=None, description="Ports of each colour for blue-green and canary.",
    )
    color_port_offset: int = Field(default=100, ge=1, le=60000, description="Without color_ports: green = ports + it.")
    serial: int | str = Field(default="100%", description="Hosts prepared at once: a count or a percentage.")
    max_fail_percentage: float = Field(
        default=0, ge=0, le=100, description="Share of a batch's hosts that may fail before the rest is not touched.",
    )
    keep_releases: int = Field(default=5, ge=1, le=1000, description="Release directories kept per host.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment of the instances.")
    connect_timeout: float = Field(default=10, gt=0, le=600, description="Seconds to connect and authenticate.")
    command_timeout: float = Field(default=300, gt=0, le=86400, description="Seconds one remote command may take.")
    stop_timeout: float = Field(default=5, gt=0, le=600, description="Seconds between SIGTERM and SIGKILL.")

    @field_validator("hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> Any:
        return [parse_host(h) for h in value] if isinstance(value, list) else value

    @field_validator("serial", mode="before")
    @classmethod
    def _serial(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not re.fullmatch(r"\d+(\.\d+)?%", value) or not 0 < float(value[:-1]) <= 100:
                raise ValueError(f"{value!r} is not a host count or a percentage like '30%'")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{value!r} is not a positive host count")
        return value

    @model_validator(mode="after")
    def _check(self) -> SSHTargetConfig:
        unknown = set(re.findall(r"\{(\w*)\}", self.command)) - _PLACEHOLDERS
        if unknown:
            raise ValueError(f"command: unknown placeholder {{{sorted(unknown)[0]}}}")
        homeless = [h.label for h in self.hosts if not (h.deploy_path or self.deploy_path)]
        if homeless:
            raise ValueError(f"deploy_path: not set for {', '.join(homeless)} (set it here or on the host)")
        labels = [h.label for h in self.hosts]
        if len(set(labels)) != len(labels):
            raise ValueError("hosts: a host is listed twice (give each a distinct name)")
        colors = self.colors()
        if set(colors["blue"]) & set(colors["green"]):
            raise ValueError("the blue and green ports overlap; each colour needs its own ports")
        return self

    def colors(self) -> dict[str, list[int]]:
        """The ports of each colour (see `color_ports`)."""
        return color_ports(self.ports, self.color_ports, self.color_port_offset)


# -- the target ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Host:
    spec: SSHHost
    user: str
    deploy_path: str

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def endpoint(self) -> SSHEndpoint:
        return SSHEndpoint(self.spec.label, self.spec.host, self.spec.port, self.user)


class SSHTarget:
    """Services on SSH hosts. See the module docstring."""

    config_model: ClassVar[type[TargetConfig]] = SSHTargetConfig

    def __init__(self, config: SSHTargetConfig, context: TargetContext) -> None:
        self.config = config
        self.context = context
        specs = list(config.hosts)
        if not specs and context.host:
            specs = [SSHHost(host=context.host, port=context.port or 22)]
        user = config.user or context.user or getpass.getuser()
        self._hosts = {
            s.label: _Host(s, s.user or user, s.deploy_path or config.deploy_path or "") for s in specs
        }
        self._sessions = SSHSessions(
            known_hosts=config.known_hosts, key_file=config.key_file, connect_timeout=config.connect_timeout,
            command_timeout=config.command_timeout,
        )
        # Hosts whose preparation of a version failed within max_fail_percentage: label -> versions.
        self.failed_hosts: dict[str, dict[str, str]] = {}

    # -- plumbing ---------------------------------------------------------------------------------
    def _host(self, label: str) -> _Host:
        try:
            return self._hosts[label]
        except KeyError:
            raise TargetError(f"ssh: no host {label!r} in environment {self.context.environment!r}") from None

    async def _on_host(self, host: _Host, what: str, fn: Callable[[Any], T]) -> T:
        """Run `fn(client)` for `host` in a worker thread; paramiko and socket errors become TargetError."""
        return await self._sessions.on_host(host.endpoint, what, fn)

    def _exec(self, client: Any, command: str, *, check: bool = True) -> tuple[int, str, str]:
        return self._sessions.exec(client, command, check=check)

    # -- layout -----------------------------------------------------------------------------------
    def _paths(self, host: _Host, service: str, version: str | None = None) -> dict[str, str]:
        root = host.deploy_path.replace("{service}", _safe(service))
        paths = {
            "root": root, "releases": posixpath.join(root, "releases"), "current": posixpath.join(root, "current"),
            "run": posixpath.join(root, "run"), "logs": posixpath.join(root, "logs"),
        }
        if version is not None:
            paths["release"] = posixpath.join(paths["releases"], _safe(version))
        return paths

    def slots(self, service: str, color: str | None = None) -> list[Instance]:
        """For each host (in order), one slot per port: `ports`, or the colour's ports.

        Raises:
            InputError: no hosts are configured, or the colour is unknown.
        """
        if not self._hosts:
            raise InputError(f"ssh target of environment {self.context.environment!r}: set target.hosts")
        if color is not None and color not in ("blue", "green"):
            raise InputError(f"ssh target: unknown colour {color!r} (blue or green)")
        out: list[Instance] = []
        for host in self._hosts.values():
            if color is None:
                ports = host.spec.ports or self.config.ports
            elif host.spec.color_ports is not None:
                ports = {str(k): v for k, v in host.spec.color_ports.items()}.get(color) or []
            elif host.spec.ports is not None:
                offset = self.config.color_port_offset if color == "green" else 0
                ports = [p + offset for p in host.spec.ports]
            else:
                ports = self.config.colors()[color]
            if not ports:
                raise InputError(
                    f"ssh target: no {'ports' if color is None else color + ' ports'} for host {host.label} "
                    f"(set target.ports, or ports/color_ports on the host)"
                )
            out.extend(
                Instance(
                    service=service, slot=f"{host.label}/{port}", host=host.spec.service_host or host.spec.host,
                    port=port, color=color, data={"ssh_host": host.label},
                )
                for port in ports
            )
        return out

    # -- prepare ----------------------------------------------------------------------------------
    async def prepare(self, release: Release) -> Release:
        """Upload and unpack the release on every host, in batches of `serial` hosts.

        Raises:
            InputError: the release has no tarball or directory artifact.
            TargetError: more than `max_fail_percentage` of a batch failed (later batches untouched).
        """
        tarball, made = await anyio.to_thread.run_sync(self._tarball, release)
        try:
            digest = await anyio.to_thread.run_sync(_sha256, tarball)
            hosts = list(self._hosts.values())
            for batch in host_batches(len(hosts), self.config.serial):
                members = [hosts[i] for i in batch]
                errors: dict[str, str] = {}

                async def one(host: _Host, errors: dict[str, str] = errors) -> None:
                    try:
                        await self._prepare_host(host, release, tarball, digest)
                    except TargetError as exc:
                        errors[host.label] = str(exc)

                async with anyio.create_task_group() as tg:
                    for host in members:
                        tg.start_soon(one, host)
                for label, reason in errors.items():
                    self.failed_hosts.setdefault(label, {})[release.version] = reason
                for host in members:
                    if host.label not in errors:
                        self.failed_hosts.get(host.label, {}).pop(release.version, None)
                if batch_failed(len(errors), len(members), self.config.max_fail_percentage):
                    untouched = [h.label for h in hosts[batch.stop:]]
                    raise TargetError(
                        f"ssh: preparing {release.service} {release.version} failed on {len(errors)} of "
                        f"{len(members)} hosts in a batch (max_fail_percentage {self.config.max_fail_percentage:g}); "
                        + "; ".join(errors.values())
                        + (f"; not touched: {', '.join(untouched)}" if untouched else "")
                    )
        finally:
            if made:
                Path(tarball).unlink(missing_ok=True)
        prepared = {**release.prepared, "release": _safe(release.version), "sha256": digest}
        skipped = self._skipped_slots(release)
        if skipped:
            prepared["skipped_slots"] = json.dumps(skipped)
        else:
            prepared.pop("skipped_slots", None)
        return replace(release, prepared=prepared)

    def _skipped_slots(self, release: Release) -> dict[str, str]:
        """slot -> reason, for every slot (any colour) of a host whose preparation of this release
        failed within max_fail_percentage: the deployment leaves those hosts as they are."""
        failed = {label: by_version[release.version] for label, by_version in self.failed_hosts.items()
                  if release.version in by_version}
        if not failed:
            return {}
        out: dict[str, str] = {}
        for color in (None, "blue", "green"):
            try:
                slots = self.slots(release.service, color)
            except InputError:
                continue  # no ports of that colour configured
            for slot in slots:
                label = slot.data.get("ssh_host", "")
                if label in failed:
                    out[slot.slot] = failed[label]
        return out

    def _tarball(self, release: Release) -> tuple[str, bool]:
        """The tarball to upload: the artifact itself, or one made from directory artifacts."""
        if not release.artifacts:
            raise InputError(f"ssh target: {release.service} {release.version} has no artifacts to deploy")
        files = [a for a in release.artifacts if Path(a).is_file()]
        if len(release.artifacts) == 1 and files and tarfile.is_tarfile(files[0]):
            return files[0], False
        missing = [a for a in release.artifacts if not Path(a).exists()]
        if missing:
            raise InputError(f"ssh target: artifact {missing[0]} does not exist")
        fd, name = tempfile.mkstemp(prefix=f"{_safe(release.service)}-{_safe(release.version)}-", suffix=".tar.gz")
        # Deterministic bytes (gzip mtime 0, sorted entries): the same directory gives the same
        # digest, so re-preparing it (a rollback) re-uses the release directory on the hosts.
        with (
            open(fd, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w") as tar,
        ):
            for artifact in release.artifacts:
                src = Path(artifact)
                if src.is_dir():
                    for item in sorted(src.iterdir()):
                        tar.add(item, arcname=item.name)
                else:
                    tar.add(src, arcname=src.name)
        return name, True

    async def _prepare_host(self, host: _Host, release: Release, tarball: str, digest: str) -> None:
        paths = self._paths(host, release.service, release.version)

        def work(client: Any) -> None:
            q = {k: shlex.quote(v) for k, v in paths.items()}
            prune = scripts.prune(q, _safe(release.version), self.config.keep_releases)
            # A release directory is re-used only when it was made from the same bytes (a version
            # rebuilt with other content is uploaded again); a re-used one is touched so that
            # pruning counts it as recent (a rollback re-prepares an old version).
            _, out, _ = self._exec(client, scripts.check_reusable(q, digest, prune))
            if out.strip().endswith("reused"):
                return
            token = secrets.token_hex(4)
            upload = posixpath.join(paths["releases"], f".upload-{token}.tar")
            staging = posixpath.join(paths["releases"], f".staging-{token}")
            sftp = client.open_sftp()
            try:
                sftp.put(tarball, upload)
                meta = {"service": release.service, "version": release.version,
                        "deployment_id": release.deployment_id, "sha256": digest}
                with sftp.open(upload + ".json", "w") as f:
                    f.write(json.dumps(meta))
            finally:
                sftp.close()
            replaced = posixpath.join(paths["releases"], f".replaced-{token}")
            self._exec(client, scripts.unpack(q, staging, upload, replaced, prune))

        await self._on_host(host, f"preparing {release.service} {release.version}", work)

    # -- start / stop -----------------------------------------------------------------------------
    async def start(self, release: Release, slot: Instance) -> Instance:
        """Switch `current` to the release on the slot's host and run the restart command there.

        Raises:
            TargetError: the slot still runs another release, the host cannot be reached or
                prepared, or the command could not be launched.
        """
        host = self._host(slot.data.get("ssh_host") or slot.slot.rsplit("/", 1)[0])
        if slot.port is None:
            raise TargetError(f"ssh: slot {slot.slot} has no port")
        if self.failed_hosts.get(host.label, {}).get(release.version) is not None:
            tarball, made = await anyio.to_thread.run_sync(self._tarball, release)
            try:
                digest = await anyio.to_thread.run_sync(_sha256, tarball)
                await self._prepare_host(host, release, tarball, digest)
            finally:
                if made:
                    Path(tarball).unlink(missing_ok=True)
            self.failed_hosts[host.label].pop(release.version, None)
        paths = self._paths(host, release.service, release.version)
        color = release.color if release.color is not None else slot.color
        values = {
            "port": str(slot.port), "host": slot.host, "release_dir": paths["release"], "current": paths["current"],
            "deploy_path": paths["root"], "version": release.version, "service": release.service,
            "color": color or "", "slot": slot.slot,
        }
        command = self.config.command
        for key, value in values.items():
            command = command.replace("{" + key + "}", shlex.quote(value))
        slot_name = _safe(slot.slot.rsplit("/", 1)[1])
        files = {f"{k}_file": posixpath.join(paths["run"], f"{slot_name}.{k}") for k in ("pid", "json", "release")}
        log = posixpath.join(paths["logs"], f"{slot_name}.log")
        inst = replace(
            slot, version=release.version, deployment_id=release.deployment_id, color=color, alive=True,
            data={**slot.data, "release_dir": paths["release"], "log": log, "command": command},
        )
        env = {**self.config.env, **release.env, "PORT": str(slot.port), "SERVICE_VERSION": release.version,
               "RELEASE_DIR": paths["release"]}
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if re.fullmatch(r"[A-Za-z_]\w*", k))

        def work(client: Any) -> Instance:
            q = {k: shlex.quote(v) for k, v in {**paths, **files, "log": log}.items()}
            running, prepared = self._read_slot(
                client, files, f"test -f {q['release']}/.release.json && echo prepared"
            )
            if running is not None and running.alive:
                if running.version == release.version and running.deployment_id == release.deployment_id:
                    return running
                raise TargetError(
                    f"slot {slot.slot} still runs {slot.service} {running.version} (pid {running.ref}); stop it first"
                )
            if "prepared" not in prepared:
                raise TargetError(f"release {release.version} is not prepared on this host")
            tmp_link = posixpath.join(paths["root"], f".current-{secrets.token_hex(4)}")
            # The record is written by the launcher itself, with the pid spliced in where "@pid" stands.
            before, _, after = json.dumps(replace(inst, ref="@pid").to_json()).partition('"@pid"')
            launcher = scripts.launch(
                q, link_target=posixpath.join("releases", _safe(release.version)), tmp_link=tmp_link,
                release_name=_safe(release.version), banner=f"--- start {release.version}: {command}",
                exports=exports, command=command, record_before=before, record_after=after,
            )
            _, out, _ = self._exec(client, launcher)
            pid = out.strip().splitlines()[-1] if out.strip() else ""
            if not pid.isdigit():
                raise TargetError(f"slot {slot.slot}: the launcher printed no pid ({out[-200:]!r})")
            return replace(inst, ref=pid)

        return await self._on_host(host, f"starting {release.service} {release.version} on {slot.slot}", work)

    def _read_slot(self, client: Any, files: dict[str, str], extra: str = "") -> tuple[Instance | None, str]:
        """The slot's record with `alive` from its process, in one round trip; and what `extra` printed."""
        _, out, _ = self._exec(client, scripts.read_slot(files["json_file"], files["pid_file"], extra))
        record, _, rest = out.partition("\n@state ")
        state, _, tail = rest.partition("\n")
        if not record.strip():
            return None, tail
        try:
            inst = Instance.from_json(json.loads(record))
        except (ValueError, KeyError) as exc:
            raise TargetError(f"unreadable instance record {files['json_file']}: {exc}") from exc
        return replace(inst, alive=bool(inst.ref) and state.strip() not in ("gone", "Z")), tail

    async def stop(self, instance: Instance) -> None:
        """Signal the instance's process group (TERM, then KILL) and remove its records.

        Raises:
            TargetError: the host cannot be reached or the process survives SIGKILL.
        """
        host = self._host(instance.data.get("ssh_host") or instance.slot.rsplit("/", 1)[0])
        paths = self._paths(host, instance.service)
        slot_name = _safe(instance.slot.rsplit("/", 1)[1])
        files = {f"{k}_file": posixpath.join(paths["run"], f"{slot_name}.{k}") for k in ("pid", "json", "release")}

        def work(client: Any) -> None:
            q = {k: shlex.quote(v) for k, v in files.items()}
            ticks = max(1, int(self.config.stop_timeout * 10))
            script = scripts.stop(q, instance.ref or "", ticks)
            self._exec(client, script)

        await self._on_host(host, f"stopping {instance.service} on {instance.slot}", work)

    async def instances(self, service: str) -> list[Instance]:
        """The instances recorded on every host (`alive` from their processes).

        Raises:
            TargetError: a host cannot be reached.
        """
        found: list[Instance] = []

        async def one(host: _Host) -> None:
            paths = self._paths(host, service)

            def work(client: Any) -> list[Instance]:
                _, out, _ = self._exec(client, scripts.list_instances(paths["run"]))
                records = []
                pending: Instance | None = None
                for line in out.splitlines():
                    if line.startswith("@state "):
                        if pending is not None:
                            state = line.split(" ", 1)[1].strip()
                            records.append(replace(pending, alive=bool(pending.ref) and state not in ("gone", "Z")))
                        pending = None
                    elif line.strip():
                        try:
                            pending = Instance.from_json(json.loads(line))
                        except (ValueError, KeyError):
                            pending = None  # a torn record: the slot is treated as empty
                return records

            try:
                found.extend(await self._on_host(host, f"listing instances of {service}", work))
            except TargetError as exc:
                errors.append(str(exc))

        errors: list[str] = []
        async with anyio.create_task_group() as tg:
            for host in self._hosts.values():
                tg.start_soon(one, host)
        if errors:
            raise TargetError("; ".join(errors))
        order = {label: n for n, label in enumerate(self._hosts)}
        return sorted(found, key=lambda i: (order.get(i.data.get("ssh_host", ""), 0), i.port or 0, i.slot))

    async def address(self, instance: Instance) -> Address:
        """Where the instance answers (the host's `service_host`, else its address).

        Raises:
            TargetError: the instance has no port.
        """
        if instance.port is None:
            raise TargetError(f"ssh: instance {instance.slot} has no port")
        return Address(instance.host, instance.port)

    async def releases(self, service: str) -> dict[str, list[str]]:
        """Per host: the release directories present, and (first) the one `current` points to.

        Raises:
            TargetError: a host cannot be reached.
        """
        out: dict[str, list[str]] = {}
        for host in self._hosts.values():
            paths = self._paths(host, service)
            q = {k: shlex.quote(v) for k, v in paths.items()}

            def work(client: Any, q: dict[str, str] = q) -> list[str]:
                _, text, _ = self._exec(client, scripts.list_releases(q))
                return text.splitlines()

            out[host.label] = await self._on_host(host, f"listing releases of {service}", work)
        return out

    def log_tail(self, instance: Instance, max_bytes: int = 2000) -> str:
        """The end of an instance's log on its host ("" when it cannot be read)."""
        log = instance.data.get("log")
        label = instance.data.get("ssh_host")
        if not log or not label or label not in self._hosts:
            return ""
        try:
            client = self._sessions.client(self._hosts[label].endpoint)
            _, out, _ = self._exec(client, scripts.tail(log, max_bytes), check=False)
        except Exception:  # noqa: BLE001 - a diagnostic read must never mask the real failure
            return ""
        return out

    async def close(self) -> None:
        self._sessions.close()
