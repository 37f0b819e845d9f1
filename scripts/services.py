"""Start real services for tests and benchmarks: a Docker engine, sshd and PostgreSQL, each under its own directory.

Used by `tests/engine/deploy/conftest.py` (session fixtures) and `bench/deploy.py`. Everything binds
127.0.0.1 or a unix socket under a short temp path, and every `stop()` undoes what `start_*` did.

    engine = start_docker(Path(tempfile.mkdtemp(prefix="cicd-dk-", dir="/tmp")))
    build_test_images(engine.base_url, workdir)      # svc:v1, svc:v2, svc:bad-health, svc:exits
    server = start_sshd(workdir, port=18301)
    ...
    server.stop(); engine.stop()
    pg = start_postgres(Path(tempfile.mkdtemp(prefix="cicd-pg-")), port=18401)   # pg.url: postgresql://...

`ServiceUnavailable` means the machine cannot run the service (binary missing, not root); callers
skip or fail on it (tests fail when `CI` is set).
"""

from __future__ import annotations

import contextlib
import getpass
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "TEST_IMAGES",
    "DockerEngine",
    "SITE_COMMAND",
    "PortPool",
    "PostgresServer",
    "SSHServer",
    "ServiceUnavailable",
    "build_test_images",
    "make_key",
    "make_site_tarball",
    "start_docker",
    "start_postgres",
    "start_sshd",
]

log = logging.getLogger(__name__)

BUSYBOX = Path("/bin/busybox")
FIXTURE_IMAGES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "images"
TEST_IMAGES = ("svc:v1", "svc:v2", "svc:bad-health", "svc:exits")
# The restart command of the ssh test releases: busybox httpd serving the release directory, or
# an exit at start when the release carries a `crash` file.
SITE_COMMAND = (
    "if [ -f {release_dir}/crash ]; then echo 'crashing on purpose: missing configuration' >&2; exit 3; fi; "
    "exec busybox httpd -f -p {host}:{port} -h {release_dir}"
)


class ServiceUnavailable(RuntimeError):
    """This machine cannot run the service (a binary is missing, or we lack the privileges)."""


def _need(binary: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise ServiceUnavailable(f"{binary} is not installed (scripts/test.sh installs it)")
    return path


def _wait_pid_gone(pid: int, timeout: float) -> bool:
    """Wait until `pid` has exited (a zombie counts as exited: a daemon's parent may never reap it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


class PortPool:
    """Hands out 127.0.0.1 ports of a range that nothing listens on now, round-robin: a port comes
    back only after every other one was handed out, and only if it is free by then."""

    def __init__(self, low: int, high: int) -> None:
        self._low = low
        self._next = low
        self._high = high

    def take(self) -> int:
        for _ in range(self._high - self._low + 1):
            port = self._next
            self._next = self._low if port >= self._high else port + 1
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
        raise ServiceUnavailable(f"no free port left in {self._low}-{self._high}")

    def take_many(self, n: int) -> list[int]:
        return [self.take() for _ in range(n)]


# ---------------------------------------------------------------------------------------- docker


@dataclass
class DockerEngine:
    """A dockerd started by `start_docker`, with its own data root, exec root, socket and bridge."""

    base_url: str
    root: Path
    process: subprocess.Popen[bytes]
    storage_driver: str
    bridge: str | None
    log_path: Path

    def stop(self) -> None:
        """Stop the daemon (its containers stop with it), remove its bridge and directory."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.bridge:
            subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True, check=False)
        # dockerd unmounts its layers on shutdown; anything it left mounted keeps its files.
        shutil.rmtree(self.root, ignore_errors=True)


def _free_subnet() -> ipaddress.IPv4Network:
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=False).stdout
    for _ in range(64):
        prefix = f"10.{secrets.randbelow(200) + 40}.{secrets.randbelow(256)}."
        if f" {prefix}" not in used:
            return ipaddress.IPv4Network(f"{prefix}0/24")
    raise ServiceUnavailable("no free 10.x.y.0/24 subnet for a docker bridge")


def _make_bridge() -> tuple[str, ipaddress.IPv4Network] | None:
    """A bridge of our own, so this dockerd shares no bridge, IPs or iptables chains with another.

    Its MAC address is set explicitly: a bridge whose address the kernel chose takes the lowest
    MAC of its ports, so it changes whenever a container leaves, and the other containers keep
    answering the old one until their ARP entries expire: connections to them hang for seconds.
    """
    if shutil.which("ip") is None:
        return None
    name = "cicd" + secrets.token_hex(4)
    net = _free_subnet()
    mac = "02:" + ":".join(secrets.token_hex(1) for _ in range(5))  # locally administered, unicast
    steps = [
        ["ip", "link", "add", "name", name, "type", "bridge"],
        ["ip", "link", "set", "dev", name, "address", mac],
        ["ip", "addr", "add", f"{net.network_address + 1}/{net.prefixlen}", "dev", name],
        ["ip", "link", "set", name, "up"],
    ]
    for step in steps:
        if subprocess.run(step, capture_output=True, check=False).returncode != 0:
            subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
            return None
    return name, net


def _ping(base_url: str) -> bool:
    import docker
    import docker.errors

    try:
        client = docker.DockerClient(base_url=base_url, timeout=5)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, OSError):
        return False
    finally:
        client.close()


def _launch_dockerd(root: Path, driver: str, bridge: str | None, timeout: float) -> DockerEngine:
    dockerd = _need("dockerd")
    sock = root / "d.sock"
    base_url = f"unix://{sock}"
    log_path = root / f"dockerd-{driver}.log"
    cmd = [
        dockerd,
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "x"),
        "--pidfile", str(root / "dockerd.pid"),
        "-H", base_url,
        f"--storage-driver={driver}",
        # Tests need no outbound traffic; leaving iptables alone keeps this daemon from
        # rewriting chains another dockerd on the machine relies on. Published ports still
        # work through docker-proxy.
        "--iptables=false", "--ip-masq=false", "--ip6tables=false",
    ]
    if bridge:
        cmd.append(f"--bridge={bridge}")
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if sock.exists() and _ping(base_url):
            return DockerEngine(base_url, root, proc, driver, bridge, log_path)
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"dockerd ({driver}) did not answer within {timeout}s; log tail:\n{tail}")


def start_docker(root: Path, *, timeout: float = 60.0) -> DockerEngine:
    """Start dockerd under `root` (keep it short: unix socket paths are limited to ~100 bytes).

    Storage driver overlay2; vfs only when overlay2 cannot work here (logged, and visible as
    `DockerEngine.storage_driver`).

    Raises:
        ServiceUnavailable: dockerd is missing or we are not root.
        RuntimeError: dockerd did not come up (the message carries its log tail).
    """
    _need("dockerd")
    if os.geteuid() != 0:
        raise ServiceUnavailable("dockerd needs root")
    if len(str(root / "d.sock")) > 90:
        raise ValueError(f"{root} is too long for a unix socket path; use a short temp dir")
    root.mkdir(parents=True, exist_ok=True)
    made = _make_bridge()
    bridge = made[0] if made else None
    try:
        try:
            return _launch_dockerd(root, "overlay2", bridge, timeout)
        except RuntimeError as exc:
            log.warning("dockerd with overlay2 failed, falling back to vfs: %s", exc)
            shutil.rmtree(root / "data", ignore_errors=True)
            return _launch_dockerd(root, "vfs", bridge, timeout)
    except BaseException:
        if bridge:
            subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
        raise


def build_test_images(base_url: str, workdir: Path) -> dict[str, str]:
    """Build svc:v1, svc:v2, svc:bad-health and svc:exits FROM scratch with busybox; nothing is pulled.

    The contexts live in tests/fixtures/images/<name>/; busybox is copied in from the host.
    Returns tag -> image id.

    Raises:
        ServiceUnavailable: busybox-static is missing.
    """
    import docker

    if not BUSYBOX.exists():
        raise ServiceUnavailable(f"{BUSYBOX} is missing (install busybox-static)")
    client = docker.DockerClient(base_url=base_url, timeout=120)
    built: dict[str, str] = {}
    try:
        for tag in TEST_IMAGES:
            name = tag.split(":", 1)[1]
            ctx = workdir / f"image-{name}"
            shutil.rmtree(ctx, ignore_errors=True)
            shutil.copytree(FIXTURE_IMAGES / name, ctx, symlinks=True)
            shutil.copy2(BUSYBOX, ctx / "busybox")
            image, _ = client.images.build(path=str(ctx), tag=tag, pull=False, rm=True, forcerm=True)
            built[tag] = str(image.id)
    finally:
        client.close()
    return built


def make_site_tarball(dest: Path, version: str, *, healthy: bool = True, crash: bool = False) -> Path:
    """A release tarball for the ssh target: `health` (when healthy), `version`, and `crash` when the
    release should exit at start (see `SITE_COMMAND`)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".site-{version}-{secrets.token_hex(3)}"
    staging.mkdir()
    (staging / "version").write_text(f"{version}\n")
    if healthy:
        (staging / "health").write_text("ok\n")
    if crash:
        (staging / "crash").write_text("this release exits at start\n")
    with tarfile.open(dest, "w:gz") as tar:
        for item in sorted(staging.iterdir()):
            tar.add(item, arcname=item.name)
    shutil.rmtree(staging)
    return dest


# ------------------------------------------------------------------------------------------- ssh


@dataclass
class SSHServer:
    """An sshd started by `start_sshd`: where it listens and how a client authenticates to it."""

    host: str
    port: int
    user: str
    key_path: Path
    known_hosts: Path
    host_public_key: str
    root: Path
    pid: int
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        if not _wait_pid_gone(self.pid, 10):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def make_key(path: Path) -> str:
    subprocess.run(
        [_need("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "cicd-test", "-f", str(path)],
        check=True, capture_output=True,
    )
    path.chmod(0o600)
    return Path(f"{path}.pub").read_text().strip()


def start_sshd(root: Path, port: int, *, client_key: Path | None = None, timeout: float = 15.0) -> SSHServer:
    """Start sshd on 127.0.0.1:`port` with a fresh host key; the client logs in as the current user.

    `client_key` shares one client key between several servers (generated when None). A
    known_hosts file naming this server's host key is written for the client.

    Raises:
        ServiceUnavailable: sshd or ssh-keygen is missing.
        RuntimeError: sshd did not come up (port taken, bad config); the message carries its log.
    """
    sshd = _need("sshd")
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # sshd refuses to start without its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_key = root / "ssh_host_ed25519_key"
    host_pub = make_key(host_key)
    if client_key is None:
        client_key = root / "id_ed25519"
        make_key(client_key)
    client_pub = Path(f"{client_key}.pub").read_text().strip()
    authorized = root / "authorized_keys"
    authorized.write_text(client_pub + "\n")
    authorized.chmod(0o600)
    pidfile = root / "sshd.pid"
    log_path = root / "sshd.log"
    config = root / "sshd_config"
    # Each "host" has a home of its own, as separate machines would; it also keeps the login
    # shell from sourcing this machine's ~/.bashrc on every command (~0.1 s each here).
    home = root / "home"
    home.mkdir(exist_ok=True)
    config.write_text(
        "\n".join([
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {pidfile}",
            f"AuthorizedKeysFile {authorized}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "MaxStartups 100:30:200",
            "MaxSessions 50",
            "Subsystem sftp internal-sftp",
            f"SetEnv HOME={home}",
            "LogLevel VERBOSE",
            "",
        ])
    )
    check = subprocess.run([sshd, "-t", "-f", str(config)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"sshd rejects its config {config}: {check.stderr.strip()}")
    subprocess.run([sshd, "-f", str(config), "-E", str(log_path)], check=True, capture_output=True)
    deadline = time.monotonic() + timeout
    pid: int | None = None
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        # sshd exits 0 even when it cannot bind: its log is the only witness.
        if "Cannot bind any address" in text or "fatal:" in text:
            raise RuntimeError(f"sshd on port {port} failed:\n{text[-2000:]}")
        if pidfile.exists() and "Server listening on 127.0.0.1" in text:
            with contextlib.suppress(ValueError):
                pid = int(pidfile.read_text().strip())
            if pid:
                break
        time.sleep(0.05)
    if pid is None:
        raise RuntimeError(f"sshd on port {port} did not start within {timeout}s:\n"
                           + (log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""))
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(host_pub.split()[:2])}\n")
    return SSHServer(
        host="127.0.0.1", port=port, user=getpass.getuser(), key_path=client_key,
        known_hosts=known_hosts, host_public_key=host_pub, root=root, pid=pid, log_path=log_path,
    )


# ------------------------------------------------------------------------------------ postgresql

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class PostgresServer:
    """A PostgreSQL server started by `start_postgres`: superuser `user` with `password`, on
    127.0.0.1:`port` (password auth) and a unix socket in `socket_dir` (trust)."""

    port: int
    user: str
    password: str
    root: Path
    data: Path
    socket_dir: Path
    log_path: Path
    options: str

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*_as_postgres(), str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        """(Re)start the server on its data directory; returns once it accepts connections."""
        done = self._ctl("-l", str(self.log_path), "-w", "-t", "60", "-o", self.options, "start", check=False)
        if done.returncode != 0:
            tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise RuntimeError(f"postgres did not start: {done.stdout}{done.stderr}\nlog tail:\n{tail}")

    def halt(self) -> None:
        """Stop the server, keeping its data (a database lost mid-run; `start` brings it back)."""
        self._ctl("-m", "immediate", "stop", check=False)

    def running(self) -> bool:
        return self._ctl("status", check=False).returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through the unix socket (trust auth); returns psql's unaligned output."""
        done = subprocess.run(
            [*_as_postgres(), str(PG_BIN / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", self.user,
             "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            capture_output=True, text=True, check=False, timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self._ctl("-m", "fast", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _as_postgres() -> list[str]:
    # The server refuses to run as root: as root, its commands run as the `postgres` user.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def start_postgres(root: Path, port: int, *, settings: dict[str, str] | None = None) -> PostgresServer:
    """Initialise a cluster under `root` and start it on 127.0.0.1:`port`.

    `settings` are extra server settings (`-c name=value`); durability is left as configured
    unless a caller relaxes it (tests do: `fsync=off`).

    Raises:
        ServiceUnavailable: PostgreSQL 15 is not installed, or as root there is no `postgres` user.
        RuntimeError: the server did not come up (the message carries its log tail).
    """
    if not (PG_BIN / "initdb").exists():
        raise ServiceUnavailable(f"{PG_BIN}/initdb is missing (install postgresql; scripts/test.sh does)")
    if os.geteuid() == 0:
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise ServiceUnavailable("there is no postgres user to run the server as") from exc
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    data, sock = root / "data", root / "sock"
    for d in (data, sock):
        d.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(d, owner.pw_uid, owner.pw_gid)
    data.chmod(0o700)
    password = secrets.token_hex(8)
    pwfile = sock / "pw"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    init = subprocess.run(
        [*_as_postgres(), str(PG_BIN / "initdb"), "-D", str(data), "-U", "cicd", f"--pwfile={pwfile}",
         "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
        capture_output=True, text=True, check=False, timeout=120,
    )
    pwfile.unlink()
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
    options = f"-p {port} -k {sock} -h 127.0.0.1" + "".join(
        f" -c {name}={value}" for name, value in (settings or {}).items())
    server = PostgresServer(port=port, user="cicd", password=password, root=root, data=data, socket_dir=sock,
                            log_path=sock / "postgres.log", options=options)
    if os.geteuid() == 0:
        server.log_path.touch()
        os.chown(server.log_path, owner.pw_uid, owner.pw_gid)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


@contextlib.contextmanager
def running_docker(root: Path) -> Iterator[DockerEngine]:
    engine = start_docker(root)
    try:
        yield engine
    finally:
        engine.stop()


def main(argv: list[str] | None = None) -> None:
    """Start a service by hand and keep it up until Ctrl-C (for trying the targets interactively)."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="Start dockerd (with the test images), sshd or PostgreSQL.")
    parser.add_argument("service", choices=["docker", "sshd", "postgres"])
    parser.add_argument("--port", type=int, default=18301, help="sshd or postgres port on 127.0.0.1")
    args = parser.parse_args(argv)
    if args.service == "docker":
        root = Path(tempfile.mkdtemp(prefix="cicd-dk-", dir="/tmp"))
        engine = start_docker(root)
        build_test_images(engine.base_url, root / "contexts")
        print(f"DOCKER_HOST={engine.base_url}  ({engine.storage_driver}; images {', '.join(TEST_IMAGES)})")
        stop = engine.stop
    elif args.service == "postgres":
        pg = start_postgres(Path(tempfile.mkdtemp(prefix="cicd-pg-")), args.port)
        print(f"PIPELINE_STORE_URL={pg.url}")
        stop = pg.stop
    else:
        server = start_sshd(Path(tempfile.mkdtemp(prefix="cicd-sshd-")), args.port)
        print(f"ssh -p {server.port} -i {server.key_path} -o UserKnownHostsFile={server.known_hosts} "
              f"{server.user}@{server.host}")
        stop = server.stop
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        stop()


if __name__ == "__main__":
    main()
