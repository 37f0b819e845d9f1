"""Shared fixtures. Tests that need a real service (docker, ssh, nginx) start it themselves."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True, scope="session")
def _sandbox_may_write_test_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Jobs run sandboxed by default; many tests have a job leave a mark in the test's tmp_path
    (a pid file, an attempt counter). The session's base temp dir is made writable in the
    sandbox the way an operator would (PIPELINE_SANDBOX_WRITABLE); the sandbox tests unset it."""
    import os

    os.environ["PIPELINE_SANDBOX_WRITABLE"] = str(tmp_path_factory.getbasetemp())
