"""Shared fixtures. Tests that need a real service (docker, ssh, nginx) start it themselves."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
