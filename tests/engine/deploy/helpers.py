"""Helpers for the deploy tests: release directories of the test app, and a traffic prober."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from pathlib import Path

import httpx

APP = Path(__file__).parent / "app" / "server.py"
APP_COMMAND = "python3 {release_dir}/server.py {port} {release_dir}"


def make_release(root: Path, version: str, *, health_status: int | None = None, crash: bool = False) -> Path:
    """An artifact directory for `version` of the test app."""
    d = root / f"build-{version}"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(APP, d / "server.py")
    (d / "version").write_text(version)
    (d / "health").write_text("ok")
    if health_status is not None:
        (d / "health_status").write_text(str(health_status))
    if crash:
        (d / "crash").write_text("")
    return d


def served_version(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/version", timeout=5).text.strip()


class Prober(threading.Thread):
    """Requests GET /version from `url` in a loop (at most `limit` requests) until stopped;
    counts failures (errors or non-200 answers) and the versions seen."""

    def __init__(self, url: str, limit: int = 5000) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.limit = limit
        self.stopping = threading.Event()
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.requests = 0

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stopping.is_set() and self.requests < self.limit:
                self.requests += 1
                try:
                    resp = client.get(self.url, headers={"Connection": "close"})
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if resp.status_code != 200:
                    self.failures.append(f"status {resp.status_code}")
                else:
                    self.versions[resp.text.strip()] += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
