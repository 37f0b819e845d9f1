"""Importing the target modules must not import their SDKs (docker, paramiko, kubernetes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]


def test_target_modules_import_no_sdk() -> None:
    code = (
        "import sys\n"
        "import engine.deploy.targets.docker, engine.deploy.targets.ssh, engine.deploy.targets.kubernetes\n"
        "print(sorted(m for m in ('docker', 'paramiko', 'kubernetes') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
