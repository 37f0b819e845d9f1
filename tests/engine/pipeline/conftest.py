"""Real services for the executor tests: bubblewrap (installed by scripts/test.sh) and a Docker engine
of the session's own, with a job image built FROM scratch (busybox); nothing is pulled."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._services import load_services, unavailable

JOB_IMAGE = "cicd-job:busybox"


@pytest.fixture
def sandboxed(monkeypatch: pytest.MonkeyPatch) -> None:
    """bubblewrap must work here, and nothing outside a job's own directories is writable."""
    from engine.pipeline.executors.sandbox import WRITABLE_ENV, sandbox_unavailable

    why = sandbox_unavailable()
    if why is not None:
        unavailable(why)
    monkeypatch.delenv(WRITABLE_ENV, raising=False)


_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
ENV PATH=/bin
CMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
"""


@pytest.fixture(scope="session")
def job_docker() -> Iterator[str]:
    """A dockerd of this session with JOB_IMAGE built (busybox sh; its default command serves /www on 8080)."""
    services = load_services()
    root = Path(tempfile.mkdtemp(prefix="cicd-dx-", dir="/tmp"))
    try:
        engine = services.start_docker(root)
    except services.ServiceUnavailable as exc:
        shutil.rmtree(root, ignore_errors=True)
        unavailable(str(exc))
    try:
        if not services.BUSYBOX.exists():
            unavailable(f"{services.BUSYBOX} is missing (install busybox-static)")
        import docker

        ctx = root / "ctx"
        (ctx / "www").mkdir(parents=True)
        (ctx / "www" / "index.html").write_text("hello from the service\n")
        (ctx / "Dockerfile").write_text(_DOCKERFILE)
        shutil.copy2(services.BUSYBOX, ctx / "busybox")
        client = docker.DockerClient(base_url=engine.base_url, timeout=120)
        try:
            client.images.build(path=str(ctx), tag=JOB_IMAGE, pull=False, rm=True, forcerm=True)
        finally:
            client.close()
        yield engine.base_url
    finally:
        engine.stop()
