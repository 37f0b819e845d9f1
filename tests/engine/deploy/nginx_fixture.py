"""A real nginx for the deploy tests, started under a temp prefix on 127.0.0.1 and stopped after.

Use it from a test module with
`from tests.engine.deploy.nginx_fixture import nginx_server  # noqa: F401` and a `nginx` argument
(the fixture's name). It serves whatever the NginxRouter writes into `sites_dir`. Ports come
from `ports.take()` (18100-18299, free ones only). Without an nginx binary the tests are skipped,
except under CI where they fail: scripts/test.sh installs nginx.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["NginxServer", "nginx_server", "ports"]


class _Ports:
    """Hands out free 127.0.0.1 ports from this suite's range (18100-18299), round-robin: a port
    comes back only after every other one was handed out, and only if nothing holds it then."""

    def __init__(self, low: int, high: int) -> None:
        self.low = low
        self.next = low
        self.high = high

    def take(self, n: int = 1) -> list[int]:
        out: list[int] = []
        tried = 0
        while len(out) < n:
            if tried > self.high - self.low:
                raise RuntimeError("no free port left in 18100-18299 for the deploy tests")
            port = self.next
            self.next = self.low if port >= self.high else port + 1
            tried += 1
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            out.append(port)
        return out


ports = _Ports(18103, 18299)  # 18101/18102 are the example config's own ports


@dataclass
class NginxServer:
    prefix: Path
    conf: Path
    sites_dir: Path
    binary: str

    def router_config(self, listen: int) -> dict[str, object]:
        return {
            "kind": "nginx",
            "listen": listen,
            "conf": str(self.conf),
            "prefix": str(self.prefix),
            "sites_dir": str(self.sites_dir),
            "nginx": self.binary,
        }

    def error_log(self) -> str:
        try:
            return (self.prefix / "error.log").read_text()[-3000:]
        except OSError:
            return ""


def _config(prefix: Path, sites: Path) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(
        f"    {k}_temp_path {prefix}/tmp/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        f"    access_log off;\n{temp}"
        f"    include {sites}/*.conf;\n"
        "}\n"
    )


@pytest.fixture(name="nginx")
def nginx_server() -> Iterator[NginxServer]:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed (CI must provide it: see scripts/test.sh)", pytrace=False)
        pytest.skip("nginx is not installed")
    prefix = Path(tempfile.mkdtemp(prefix="cicd-nginx-"))
    sites = prefix / "cicd"
    sites.mkdir()
    (prefix / "tmp").mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(_config(prefix, sites))
    started = subprocess.run([binary, "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"nginx did not start: {started.stderr}")
    server = NginxServer(prefix, conf, sites, binary)
    try:
        yield server
    finally:
        pid_file = prefix / "nginx.pid"
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        subprocess.run([binary, "-p", str(prefix), "-c", str(conf), "-s", "stop"], capture_output=True)
        deadline = time.monotonic() + 10
        while pid is not None and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        else:
            if pid is not None:
                os.kill(pid, 9)
        shutil.rmtree(prefix, ignore_errors=True)
