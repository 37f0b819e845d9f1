"""The README's two set-up commands, on Debian's own externally-managed /usr/bin/python3.

Machines here also have a pyenv Python first on PATH, which accepts `pip install` and so hides
what a new user on a stock Debian 12 or Ubuntu 24.04 meets: PEP 668's refusal. These tests put
/usr/bin first and nothing else of the caller's Python on the way. The test command runs only
its install part (CICD_TEST_INSTALL_ONLY=1), not the whole suite inside itself.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_readme import copy_of_the_repository, setup_blocks

SYSTEM_PYTHON = Path("/usr/bin/python3")
SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"

pytestmark = pytest.mark.slow


def _system_env(workspace: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIPELINE_", "PYTHON", "VIRTUAL_ENV", "PYENV", "CICD_TEST_"))}
    env.update(PATH=SYSTEM_PATH, PIPELINE_WORKSPACE=str(workspace))
    return env


def _sh(command: str, cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("setup")
    yield copy_of_the_repository(base / "cicd-mcp")


def test_the_system_python_is_the_one_that_refuses_pip_install(clone: Path) -> None:
    # Without this, a green run below would prove nothing about PEP 668.
    env = _system_env(clone.parent / "ws")
    found = _sh("command -v python3; python3 -c 'import sys; print(sys.prefix)'", clone, env)
    assert found.stdout.split() == [str(SYSTEM_PYTHON), "/usr"], found.stdout + found.stderr
    assert (Path("/usr/lib") / f"python3.{_minor()}" / "EXTERNALLY-MANAGED").is_file()
    refused = _sh("python3 -m pip install --dry-run --no-deps --no-index .", clone, env, timeout=120)
    assert refused.returncode != 0 and "externally-managed-environment" in refused.stderr, refused.stderr


def _minor() -> str:
    out = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[1])"], capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def test_the_main_command_installs_and_runs_the_example(clone: Path) -> None:
    install, _ = setup_blocks()
    env = _system_env(clone.parent / "ws")
    out = _sh(install.code, clone, env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "status succeeded" in out.stdout
    for job in ("wheel", "lint", "unit-tests", "install-wheel"):
        assert f"\n{job} " in out.stdout
    cfg = (clone / ".venv" / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg, cfg  # made by Debian's python3, not another one
    # Nothing went into the system interpreter.
    probe = subprocess.run([str(SYSTEM_PYTHON), "-c", "import engine"], cwd="/", env=env, capture_output=True)
    assert probe.returncode != 0


def test_the_test_command_installs_into_its_own_venv(clone: Path) -> None:
    _, tests = setup_blocks()
    env = {**_system_env(clone.parent / "ws"), "CICD_TEST_INSTALL_ONLY": "1"}
    out = _sh(tests.code, clone, env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    venv = clone / ".venv"
    assert f"installed into {venv}: cicd-mcp " in out.stdout
    assert "home = /usr/bin" in (venv / "pyvenv.cfg").read_text()
    for tool in ("ruff", "mypy", "pytest", "cicd-mcp"):
        assert (venv / "bin" / tool).is_file(), tool
    # The test tools run from the venv, on this checkout (an editable install).
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import engine; print(engine.__file__)"], cwd="/",
                           env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.strip() == str(clone / "engine" / "__init__.py"), where.stdout + where.stderr
