"""The real services the tests start (scripts/services.py), and what a test does without one.

scripts/ is not a package: the starter is loaded by path, once per process, under the name
`cicd_test_services`, so pytest's rootdir does not matter and every suite shares one module.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

__all__ = ["ROOT", "load_services", "unavailable"]

ROOT = Path(__file__).resolve().parent.parent


def load_services() -> ModuleType:
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
    """Skip (on a developer machine) or fail (in CI, which installs everything: scripts/test.sh)
    because a real service cannot run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it: see scripts/test.sh)", pytrace=False)
    pytest.skip(reason)
