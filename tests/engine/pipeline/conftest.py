"""Real services for the executor tests: bubblewrap (installed by scripts/test.sh) and a Docker engine
of the session's own, with a job image built FROM scratch (busybox); nothing is pulled."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
JOB_IMAGE = "cicd-job:busybox"


def _load_services() -> ModuleType:
    name = "cicd_test_services"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "services.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def unavailable(reason: str) -> None:
    """Skip (on a developer machine) or fail (in CI, which installs everything) without a real service."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it: see scripts/test.sh)", pytrace=False)
    pytest.skip(reason)


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
    services = _load_services()
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
