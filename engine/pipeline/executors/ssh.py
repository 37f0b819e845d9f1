"""SSHExecutor: a job's commands on one host of a pool, reached over SSH.

Theory of operation. A pool (`PIPELINE_SSH_POOLS` names a YAML file of pools, see
`load_pools`) lists hosts, each taking up to `max_jobs` jobs at once. An attempt takes a slot on
the least busy healthy host (`pick_host`); when every healthy host is full it waits for a slot.
The job's workspace, an env file and the job's script travel as one gzipped tarball over SFTP
to a per-job directory under the host's `work_dir`; one remote command unpacks it and starts
the job under `setsid`, so the job and everything it starts form one process group, marked
by a per-attempt token in its environment (`CICD_SSH_JOB`). Its combined output streams back
over the channel into the job's log as it is produced; the group id comes back on stderr and
becomes the recovery record (host, pgid, token, job directory).

Ending: the remote wrapper kills what is left of the group when the job's shell exits, packs
the artifacts (globs from the runner) with their sha256 when the job succeeded, and removes the
job directory otherwise; the executor fetches the artifacts by SFTP, checks every digest, and
unpacks them into the local workspace, where the runner collects them as for any job. A
cancelled attempt (timeout, cancel_run) has its group signalled over a new channel: SIGTERM,
then SIGKILL after `grace` seconds, and its directory removed.

Faults: a host that refuses the connection, or whose connection drops while a job runs, fails
the attempt `infrastructure` (the runner retries it when `retry.when` says so; the next attempt
goes to another host) and stays out of the pool for `unhealthy_for` seconds. A job left running
on a host that dropped is written down (in memory and in a file under the workspace, so that
another runner process finds it too); the first time the host answers again (a probe when its
quarantine ends, `reap()`, or `recover()` at a runner's start) its group is killed and its
directory removed. A recorded group is killed only when its processes still carry the job's
token: a reused process id is never signalled.

Slots are counted per process: several runners on one machine share them, runners on several
machines do not (each may put `max_jobs` jobs on a host).

SSH sessions, host-key checking (RejectPolicy: an unknown host is refused) and the mapping of
paramiko errors are `engine.deploy.targets._ssh_session`'s; this module only adds the job's
protocol on top.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import posixpath
import re
import secrets
import select
import shlex
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine._sync import in_event_loop
from engine.deploy.targets._ssh_session import SSHEndpoint, SSHSessions, parse_host
from engine.errors import InputError, SpecError, TargetError
from engine.pipeline.executors._remote import artifact_lister, remote_env
from engine.pipeline.executors.base import CommandResult, JobCommand, OnStart, RecoveryRecord
from engine.pipeline.executors.local import local_argv
from engine.pipeline.logs import LogWriter

__all__ = ["SSHExecutor", "SSHPool", "SSHPoolHost", "load_pools", "pick_host"]

Port = Annotated[int, Field(ge=1, le=65535)]
DEFAULT_POOL = "default"
_SPOOL = 16 * 1024 * 1024     # bytes of a tarball kept in memory before it spills to a temp file
_FULL_WAIT = 0.02             # seconds between looks for a free slot (runs in other event loops free them too)
_READ = 64 * 1024
_COMPRESS_ABOVE = 1024 * 1024  # bytes of workspace tarball above which it travels gzipped


# -- configuration -------------------------------------------------------------------------------
class SSHPoolHost(BaseModel):
    """One host of a pool; fields left out come from the pool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, description="Host name or address.")
    port: Port = Field(default=22, description="SSH port.")
    name: str | None = Field(default=None, description="Name in logs and records (default host:port).")
    user: str | None = Field(default=None, description="Login user (default: the pool's).")
    max_jobs: int | None = Field(default=None, ge=1, le=1024, description="Jobs at once here (default: the pool's).")
    work_dir: str | None = Field(default=None, description="Directory of job directories here (default: the pool's).")

    @property
    def label(self) -> str:
        return self.name or f"{self.host}:{self.port}"


class SSHPool(BaseModel):
    """A pool of hosts that jobs with `runs_on: ssh:<pool>` run on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hosts: list[SSHPoolHost] = Field(min_length=1, description="Hosts (`host`, `host:port` or a mapping).")
    user: str | None = Field(default=None, description="Login user (default: the runner's user).")
    key_file: Path | None = Field(default=None, description="Private key (default: ssh's usual keys and agent).")
    known_hosts: Path = Field(default=Path("~/.ssh/known_hosts"), description="Known host keys; others are refused.")
    work_dir: str = Field(default="/tmp/cicd-jobs", min_length=1, description="Directory of job directories.")
    max_jobs: int = Field(default=2, ge=1, le=1024, description="Jobs at once on each host.")
    connect_timeout: float = Field(default=10, gt=0, le=600, description="Seconds to connect and authenticate.")
    command_timeout: float = Field(default=300, gt=0, le=86400, description="Seconds a setup command may take.")
    unhealthy_for: float = Field(default=30, ge=0, le=86400, description="Seconds a failed host stays out.")
    grace: float = Field(default=5, ge=0, le=600, description="Seconds between SIGTERM and SIGKILL on cancel.")

    @field_validator("hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> Any:
        return [parse_host(h) for h in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _unique(self) -> SSHPool:
        labels = [h.label for h in self.hosts]
        if len(set(labels)) != len(labels):
            raise ValueError("hosts: a host is listed twice (give each a distinct name)")
        return self


class _PoolsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pools: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")], SSHPool] = Field(min_length=1)


def load_pools(path: Path) -> dict[str, SSHPool]:
    """Read a pools file: `pools: {<name>: {hosts: [...], user, key_file, known_hosts, work_dir, max_jobs}}`.

    Relative `key_file` and `known_hosts` are relative to the file.

    Raises:
        NotFoundError: the file does not exist.
        SpecError: it is not valid (every issue names file:line:column and the field).
    """
    from engine.spec.yamlpos import load_mapping_file

    data, pos = load_mapping_file(path, "ssh pools file", "an ssh pools file is a mapping with `pools:`",
                                  setting="PIPELINE_SSH_POOLS")
    try:
        parsed = _PoolsFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError([pos.issue(tuple(err["loc"]), err["msg"], key=err["type"] == "extra_forbidden")
                         for err in exc.errors()]) from None
    base = path.parent

    def anchored(p: Path | None) -> Path | None:
        return None if p is None else p if p.expanduser().is_absolute() else base / p

    return {name: pool.model_copy(update={"key_file": anchored(pool.key_file),
                                          "known_hosts": anchored(pool.known_hosts)})
            for name, pool in parsed.pools.items()}


# -- pure decisions ------------------------------------------------------------------------------
def pick_host(capacity: Mapping[str, int], running: Mapping[str, int], usable: Sequence[str]) -> str | None:
    """The least busy of the `usable` hosts with a free slot (fewest running, then the lowest share
    of its capacity, then pool order); None when all are full."""
    best: tuple[int, float, int] | None = None
    chosen = None
    for order, label in enumerate(usable):
        n, cap = running.get(label, 0), capacity[label]
        if n >= cap:
            continue
        key = (n, n / cap, order)
        if best is None or key < best:
            best, chosen = key, label
    return chosen


def _wrapper(job_dir: str, rel: str, argv: Sequence[str], token: str, artifacts: Sequence[str]) -> str:
    """The remote command of one attempt (POSIX sh; bash only for the artifacts' `**` globs)."""
    d = shlex.quote(job_dir)
    pack = "false"
    if artifacts:
        finder = f"cd {shlex.quote(posixpath.join(job_dir, 'ws', rel))} || exit 1; {artifact_lister(artifacts)}"
        pack = (f"bash -O globstar -O nullglob -c {shlex.quote(finder)} | sort -u > {d}/ctl/files && "
                f"(cd {shlex.quote(posixpath.join(job_dir, 'ws', rel))} && "
                f"tr '\\n' '\\0' < {d}/ctl/files | xargs -0 -r sha256sum -- > {d}/ctl/sums && "
                f"tar czf {d}/ctl/artifacts.tgz -T {d}/ctl/files)")
    return "\n".join([
        # tar recognises a gzipped bundle by itself (large workspaces are compressed, small ones not).
        f"cd {d} && tar xf job.tar || {{ echo '@setup failed' >&2; exit 125; }}",
        f"cd {shlex.quote(posixpath.join(job_dir, 'ws', rel))} || exit 125",
        # The env file (secrets too) stays in the job's 0700 directory until the end: the job's
        # own user holds the same values in its environment.
        f". {d}/ctl/env",
        f"CICD_SSH_JOB={token}; export CICD_SSH_JOB",
        f"setsid {shlex.join(argv)} </dev/null 2>&1 &",
        "pid=$!",
        'echo "@pgid $pid" >&2',
        'wait "$pid"; code=$?',
        # Nothing of the job outlives it: background children left in its group go too.
        'kill -KILL "-$pid" 2>/dev/null',
        'echo "@times" >&2; times >&2',
        f'if [ "$code" -eq 0 ] && {pack}; then echo "@artifacts" >&2; else cd / && rm -rf {d}; fi',
        'exit "$code"',
    ]) + "\n"


def _kill_script(token: str, pgid: int | None, job_dir: str, grace: float) -> str:
    """Kill the processes carrying `token` (and their group when its leader is one), then remove the
    job directory; prints `killed` when something was signalled."""
    ticks = max(1, int(grace * 10))
    group = str(int(pgid)) if pgid else "0"
    return "\n".join([
        f"t={shlex.quote('CICD_SSH_JOB=' + token)}; g={group}",
        "mine() { grep -lzxF \"$t\" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3; }",
        "p=$(mine)",
        'if [ -n "$p" ]; then',
        '  case " $(echo $p) " in *" $g "*) grp="-$g";; *) grp=;; esac',
        "  kill -TERM $grp $p 2>/dev/null",
        f'  i=0; while [ $i -lt {ticks} ] && [ -n "$(mine)" ]; do sleep 0.1; i=$((i+1)); done',
        '  p=$(mine); [ -z "$p" ] || kill -KILL $grp $p 2>/dev/null',
        "  echo killed",
        "fi",
        f"rm -rf {shlex.quote(job_dir)}",
    ]) + "\n"


def _parse_times(lines: Sequence[str]) -> tuple[float, float]:
    """(user, system) CPU seconds of the children from the shell's `times` output (its second line)."""
    if len(lines) < 2:
        return 0.0, 0.0
    found = re.findall(r"(\d+)m([\d.]+)s", lines[1])
    if len(found) < 2:
        return 0.0, 0.0
    return tuple(int(m) * 60 + float(s) for m, s in found[:2])  # type: ignore[return-value]


# -- shared state of a pool (all runs of this process) ----------------------------------------------
@dataclass
class _PoolState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict[str, int] = field(default_factory=dict)
    down_until: dict[str, float] = field(default_factory=dict)
    down_reason: dict[str, str] = field(default_factory=dict)
    probing: set[str] = field(default_factory=set)
    ready_dirs: set[str] = field(default_factory=set)


_STATES: dict[tuple[str, str], _PoolState] = {}
_STATES_LOCK = threading.Lock()


def _state(key: tuple[str, str]) -> _PoolState:
    with _STATES_LOCK:
        return _STATES.setdefault(key, _PoolState())


class _Leftovers:
    """Jobs left running on hosts that dropped: one JSON record per line, shared by runner processes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield f
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def add(self, record: RecoveryRecord) -> None:
        with self._locked() as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def pending(self, pool: str, host: str | None = None) -> list[RecoveryRecord]:
        if not self.path.exists():
            return []
        with self._locked() as f:
            f.seek(0)
            records = [json.loads(line) for line in f if line.strip()]
        return [r for r in records if r.get("pool") == pool and (host is None or r.get("host") == host)]

    def remove(self, record: RecoveryRecord) -> None:
        with self._locked() as f:
            f.seek(0)
            keep = [line for line in f if line.strip() and json.loads(line).get("token") != record.get("token")]
            f.seek(0)
            f.truncate()
            f.writelines(keep)


# -- the executor -----------------------------------------------------------------------------------
@dataclass
class _Attempt:
    token: str
    job_dir: str
    pgid: int | None = None
    record: RecoveryRecord = field(default_factory=dict)


class SSHExecutor:
    """Runs jobs on a pool of SSH hosts. See the module docstring.

    `SSHExecutor()` uses the pool named `default` (or the only one) of the file
    PIPELINE_SSH_POOLS names; `SSHExecutor("gpu")` the pool `gpu`.
    """

    def __init__(self, pool: str | None = None, *, pools: Mapping[str, SSHPool] | None = None,
                 pools_file: Path | None = None, state_dir: Path | None = None) -> None:
        """Raises:
            InputError: no pools file is configured, it is invalid, or it has no such pool.
        """
        from engine.settings import get_settings

        settings = get_settings()
        source = "<given>"
        if pools is None:
            pools_file = pools_file or settings.PIPELINE_SSH_POOLS
            if pools_file is None:
                raise InputError("runs_on: ssh needs a pool file: set PIPELINE_SSH_POOLS to a YAML file of "
                                 "`pools:` (see docs/executors-remote.md)")
            pools_file = pools_file.expanduser().resolve()
            pools = load_pools(pools_file)
            source = str(pools_file)
        if pool is None or pool == "":
            pool = DEFAULT_POOL if DEFAULT_POOL in pools or len(pools) != 1 else next(iter(pools))
        if pool not in pools:
            raise InputError(f"no ssh pool {pool!r} in {source} (pools: {', '.join(sorted(pools))})")
        self.pool_name = pool
        self.pool = pools[pool]
        self.name = "ssh" if pool == DEFAULT_POOL else f"ssh:{pool}"
        self.grace = self.pool.grace
        user = self.pool.user or _login_user()
        self._hosts = {h.label: h for h in self.pool.hosts}
        self._endpoints = {h.label: SSHEndpoint(h.label, h.host, h.port, h.user or user) for h in self.pool.hosts}
        self._capacity = {h.label: h.max_jobs or self.pool.max_jobs for h in self.pool.hosts}
        self._sessions = SSHSessions(known_hosts=self.pool.known_hosts, key_file=self.pool.key_file,
                                     connect_timeout=self.pool.connect_timeout,
                                     command_timeout=self.pool.command_timeout)
        self._shared = _state((source, pool))
        self._leftovers = _Leftovers((state_dir or settings.workspace / "executors") / "ssh-leftovers.jsonl")
        self._limiter = anyio.CapacityLimiter(sum(self._capacity.values()) + 4)
        self._sftp_idle: dict[str, list[Any]] = {}
        self._reaped: set[str] = set()
        self._sftp_lock = threading.Lock()

    # -- the protocol -------------------------------------------------------------------------------
    def set_capacity(self, workers: int) -> None:
        """The pool's slots bound how many jobs run; the run's workers only ask."""

    async def prepare(self, command: JobCommand) -> None:
        """Nothing to do before an attempt: the workspace travels with each attempt (its host may differ)."""

    async def run(self, command: JobCommand, log: LogWriter, on_start: OnStart | None = None) -> CommandResult:
        """Run the job on a host of the pool (see the module docstring)."""
        label, why = await self._acquire()
        if label is None:
            return CommandResult(exit_code=None, infrastructure_error=why)
        try:
            if label not in self._reaped:
                # Leftovers another runner process wrote down for this host go the first time we use it.
                self._reaped.add(label)
                await self._reap_host(label)
            return await self._run_on(label, command, log, on_start)
        finally:
            with self._shared.lock:
                self._shared.running[label] -= 1

    def recover(self, record: RecoveryRecord) -> bool:
        """Kill what a dead runner's job left on its host; a host that does not answer keeps the record
        for later (`reap`, or the host's next probe)."""
        if record.get("pool") != self.pool_name or record.get("host") not in self._endpoints:
            return False
        killed = False
        try:
            killed = anyio.run(self._kill_on, record) if not in_event_loop() else self._kill_blocking(record)
        except TargetError:
            self._leftovers.add(dict(record))
        return killed

    async def reap(self) -> int:
        """Kill the leftovers of hosts that answer again; returns how many jobs were killed."""
        killed = 0
        for record in self._leftovers.pending(self.pool_name):
            try:
                if await self._kill_on(record):
                    killed += 1
            except TargetError:
                continue
            self._leftovers.remove(record)
        return killed

    async def close(self) -> None:
        with self._sftp_lock:
            idle, self._sftp_idle = [c for cs in self._sftp_idle.values() for c in cs], {}
        for sftp in idle:
            sftp.close()
        await anyio.to_thread.run_sync(self._sessions.close)

    # -- slots and health -----------------------------------------------------------------------------
    async def _acquire(self) -> tuple[str | None, str]:
        """A slot on the least busy healthy host (waiting while all are full), or (None, why)."""
        while True:
            probe = None
            with self._shared.lock:
                now = time.monotonic()
                usable = [h for h in self._hosts if self._shared.down_until.get(h, 0) <= now]
                if not usable:
                    reasons = "; ".join(f"{h}: {self._shared.down_reason.get(h, 'down')}" for h in self._hosts)
                    return None, f"ssh pool {self.pool_name}: no healthy host ({reasons})"
                label = pick_host(self._capacity, self._shared.running, usable)
                if label is not None:
                    self._shared.running[label] = self._shared.running.get(label, 0) + 1
                    if label in self._shared.down_until:
                        # Back from quarantine: one attempt probes it before a job is sent there.
                        if label in self._shared.probing:
                            self._shared.running[label] -= 1
                            label = None
                        else:
                            self._shared.probing.add(label)
                            probe = label
            if label is None:
                await anyio.sleep(_FULL_WAIT)
                continue
            if probe is None:
                return label, ""
            try:
                await self._on(label, "probing the host", lambda client: None)
            except TargetError:
                with self._shared.lock:
                    self._shared.running[label] -= 1
                    self._shared.probing.discard(label)
                continue
            with self._shared.lock:
                self._shared.probing.discard(label)
                self._shared.down_until.pop(label, None)
                self._shared.down_reason.pop(label, None)
            await self._reap_host(label)
            return label, ""

    def _mark_down(self, label: str, why: str) -> None:
        with self._shared.lock:
            self._shared.down_until[label] = time.monotonic() + self.pool.unhealthy_for
            self._shared.down_reason[label] = why
            self._shared.ready_dirs.discard(label)

    async def _reap_host(self, label: str) -> None:
        for record in self._leftovers.pending(self.pool_name, label):
            try:
                await self._kill_on(record)
            except TargetError:
                return
            self._leftovers.remove(record)

    async def _on(self, label: str, what: str, fn: Any) -> Any:
        return await self._sessions.on_host(self._endpoints[label], what, fn)

    # -- one attempt ----------------------------------------------------------------------------------
    async def _run_on(self, label: str, command: JobCommand, log: LogWriter,
                      on_start: OnStart | None) -> CommandResult:
        host = self._hosts[label]
        token = secrets.token_hex(8)
        work_dir = host.work_dir or self.pool.work_dir
        run_id = command.env.get("CICD_RUN_ID", "run")
        job_dir = posixpath.join(work_dir, f"{_safe(run_id)}-{_safe(command.job)}-{token}")
        try:
            rel = command.cwd.relative_to(command.workspace).as_posix()
        except ValueError:
            rel = "."
        argv, echo = local_argv(command)
        script: str | None = None
        if len(argv) >= 2 and argv[-2] == "-c" and command.argv is None:
            # A long script would not fit in one argument (128 KiB on Linux): it travels as a file.
            script, argv = argv[-1], (*argv[:-2], posixpath.join(job_dir, "ctl", "job.sh"))
        env = remote_env(command, posixpath.join(job_dir, "ws"))
        try:
            bundle = await anyio.to_thread.run_sync(_bundle, command.workspace, env, script)
        except OSError as exc:
            return CommandResult(exit_code=None, infrastructure_error=f"could not pack the job's workspace: {exc}")
        attempt = _Attempt(token=token, job_dir=job_dir)
        attempt.record = {"pool": self.pool_name, "host": label, "token": token, "job_dir": job_dir, "pgid": None}
        wrapper = _wrapper(job_dir, rel, argv, token, command.artifacts)
        try:
            with bundle:
                channel = await self._on(label, f"starting {command.job}",
                                         lambda client: self._launch(label, client, work_dir, job_dir, bundle, wrapper))
        except TargetError as exc:
            self._mark_down(label, str(exc))
            return CommandResult(exit_code=None, infrastructure_error=f"{exc} (host out of the pool for "
                                                                      f"{self.pool.unhealthy_for:g}s)")
        log.note(f"running on {label} ({job_dir})")
        if echo is not None:
            log.feed(echo.encode() + b"\n")
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def pump() -> None:
            try:
                outcome["result"] = self._pump(channel, log, attempt, on_start)
            except BaseException as exc:  # reported to the awaiting task below
                outcome["error"] = exc
            finally:
                done.set()

        try:
            await anyio.to_thread.run_sync(pump, abandon_on_cancel=True, limiter=self._limiter)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._cancel(label, attempt, channel)
            raise
        if "error" in outcome:
            with anyio.CancelScope(shield=True):
                await self._cancel(label, attempt, channel)   # nothing of it may run on unsupervised
            return CommandResult(exit_code=None, infrastructure_error=f"lost track of the job on {label}: "
                                                                      f"{outcome['error']}")
        code, times, packed, broken = outcome["result"]
        if broken:
            return CommandResult(exit_code=None, infrastructure_error=(
                f"ssh {label}: could not unpack the job's workspace in {job_dir} (see the log)"))
        if code is None:
            why = f"ssh {label}: the connection dropped while {command.job} ran"
            self._mark_down(label, why)
            self._leftovers.add(attempt.record)
            return CommandResult(exit_code=None, infrastructure_error=(
                f"{why}; the host is out of the pool for {self.pool.unhealthy_for:g}s and the job's processes "
                "are killed when it answers again"))
        result = CommandResult(exit_code=code, cpu_user=times[0], cpu_system=times[1])
        if packed:
            try:
                count = await self._on(label, f"fetching the artifacts of {command.job}",
                                       lambda client: self._fetch(client, job_dir, command.cwd))
            except (TargetError, OSError, tarfile.TarError) as exc:
                if isinstance(exc, TargetError):
                    self._mark_down(label, str(exc))
                return CommandResult(exit_code=None, infrastructure_error=f"could not bring the artifacts back: {exc}")
            log.note(f"{count} artifact file(s) brought back from {label}, sha256 checked")
        return result

    def _launch(self, label: str, client: Any, work_dir: str, job_dir: str, bundle: IO[bytes], wrapper: str) -> Any:
        """(worker thread) Upload the bundle and start the wrapper; the channel streams the job."""
        transport = client.get_transport()
        transport.set_keepalive(5)
        with contextlib.suppress(OSError, AttributeError):
            # Each job is a few small request/reply exchanges: Nagle's algorithm with delayed ACKs
            # would hold every one back ~40 ms.
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sftp = self._sftp(label, transport)
        try:
            try:
                sftp.mkdir(job_dir, 0o700)
            except OSError:
                if label in self._shared.ready_dirs:
                    raise
                self._sessions.exec(client, f"mkdir -p {shlex.quote(work_dir)}")
                sftp.mkdir(job_dir, 0o700)
            with self._shared.lock:
                self._shared.ready_dirs.add(label)
            with sftp.open(posixpath.join(job_dir, "job.tar"), "wb") as f:
                f.set_pipelined(True)
                bundle.seek(0)
                while block := bundle.read(1 << 20):
                    f.write(block)
        except BaseException:
            sftp.close()
            raise
        self._sftp_done(label, sftp)
        channel = transport.open_session(timeout=self.pool.connect_timeout)
        channel.exec_command("sh -c " + shlex.quote(wrapper))
        channel.shutdown_write()
        return channel

    def _sftp(self, label: str, transport: Any) -> Any:
        """An idle SFTP session on the host's live connection (opening one costs round trips per job)."""
        with self._sftp_lock:
            idle = self._sftp_idle.setdefault(label, [])
            while idle:
                sftp = idle.pop()
                if sftp.get_channel().get_transport() is transport and not sftp.get_channel().closed:
                    return sftp
                sftp.close()
        return transport.open_sftp_client()

    def _sftp_done(self, label: str, sftp: Any) -> None:
        with self._sftp_lock:
            self._sftp_idle.setdefault(label, []).append(sftp)

    def _pump(self, channel: Any, log: LogWriter, attempt: _Attempt,
              on_start: OnStart | None) -> tuple[int | None, tuple[float, float], bool, bool]:
        """(worker thread) Stream the job's output to the log until the wrapper exits or the
        connection drops: (exit code or None when it dropped, CPU times, artifacts packed,
        the job directory could not be set up)."""
        err = b""
        times: list[str] = []
        in_times = packed = broken = False
        while True:
            select.select([channel], [], [], 1.0)
            progressed = False
            while channel.recv_ready():
                data = channel.recv(_READ)
                if not data:
                    break
                log.feed(data)
                progressed = True
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(_READ)
                progressed = True
            while b"\n" in err:
                line, err = err.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith("@pgid ") and attempt.pgid is None:
                    attempt.pgid = int(text.split()[1])
                    attempt.record["pgid"] = attempt.pgid
                    if on_start is not None:
                        on_start(dict(attempt.record))
                elif text == "@times":
                    in_times = True
                elif in_times and len(times) < 2:
                    times.append(text)
                elif text == "@artifacts":
                    packed = True
                elif text == "@setup failed":
                    broken = True
                else:
                    log.feed(line + b"\n")
            if not progressed and channel.exit_status_ready() and not channel.recv_ready() \
                    and not channel.recv_stderr_ready():
                break
        log.flush()
        status = channel.exit_status if channel.status_event.is_set() else None
        channel.close()
        return (None if status is None or status < 0 else int(status)), _parse_times(times), packed, broken

    def _fetch(self, client: Any, job_dir: str, cwd: Path) -> int:
        """(worker thread) Get the packed artifacts, check every sha256, unpack them into `cwd`."""
        sftp = client.open_sftp()
        try:
            with sftp.open(posixpath.join(job_dir, "ctl", "sums"), "rb") as f:
                sums = f.read().decode()
            with tempfile.TemporaryFile() as tmp:
                sftp.getfo(posixpath.join(job_dir, "ctl", "artifacts.tgz"), tmp)
                tmp.seek(0)
                with tarfile.open(fileobj=tmp, mode="r:gz") as tar:
                    tar.extractall(cwd, filter="data")
        finally:
            sftp.close()
        self._sessions.exec(client, f"rm -rf {shlex.quote(job_dir)}", check=False)
        count = 0
        root = cwd.resolve()
        for line in sums.splitlines():
            digest, _, name = line.partition("  ")
            path = (cwd / name).resolve()
            if not path.is_relative_to(root):
                raise OSError(f"artifact {name!r} is outside the workspace")
            if _sha256(path) != digest:
                raise OSError(f"artifact {name} arrived with another sha256 than it had on the host")
            count += 1
        return count

    async def _cancel(self, label: str, attempt: _Attempt, channel: Any) -> None:
        try:
            await self._kill_on(attempt.record)
        except TargetError:
            self._mark_down(label, "the connection dropped while a job was being stopped")
            self._leftovers.add(attempt.record)
        finally:
            channel.close()

    async def _kill_on(self, record: RecoveryRecord) -> bool:
        script = _kill_script(str(record["token"]), record.get("pgid"), str(record["job_dir"]), self.grace)

        def kill(client: Any) -> bool:
            _, out, _ = self._sessions.exec(client, "sh -c " + shlex.quote(script), check=False)
            return "killed" in out

        return bool(await self._on(str(record["host"]), "killing a job's processes", kill))

    def _kill_blocking(self, record: RecoveryRecord) -> bool:
        """`_kill_on` from a thread that already runs an event loop (recover at a server's start)."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["ok"] = anyio.run(self._kill_on, record)
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return bool(box.get("ok"))


def _bundle(workspace: Path, env: Mapping[str, str], script: str | None) -> IO[bytes]:
    """(worker thread) The attempt's tarball: `ws/` (the workspace), `ctl/env`, `ctl/job.sh`;
    gzipped when it is large (compressing a small one costs the host a process for nothing)."""
    out = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 - the caller closes it
    try:
        with tarfile.open(fileobj=out, mode="w") as tar:
            tar.add(workspace, arcname="ws", recursive=True)
            lines = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
            _add_bytes(tar, "ctl/env", lines.encode(), 0o600)
            if script is not None:
                _add_bytes(tar, "ctl/job.sh", script.encode(), 0o700)
        if out.tell() > _COMPRESS_ABOVE:
            out.seek(0)
            packed = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 - the caller closes it
            with gzip.GzipFile(fileobj=packed, mode="wb", compresslevel=1, mtime=0) as gz:
                while block := out.read(1 << 20):
                    gz.write(block)
            out.close()
            out = packed
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]", "_", text)[:80] or "_"


def _login_user() -> str:
    import getpass

    return getpass.getuser()


