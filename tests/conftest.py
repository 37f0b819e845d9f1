"""Shared fixtures. Tests that need a real service (docker, ssh, nginx) start it themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

# Under pytest-xdist (scripts/test.sh runs the suite on several workers) each of these runs whole on
# one worker: they start services of their own once per session (dockerd, sshd hosts, nginx,
# PostgreSQL) and hand out ports from ranges of their own, so no service starts twice and no two
# workers race for a port. Everything else is spread test by test.
_ONE_WORKER = (
    "tests/engine/deploy", "tests/engine/rollback", "tests/engine/store", "tests/engine/pipeline",
    "tests/reliability", "tests/server/tools", "tests/server/test_serve.py", "tests/server/test_inspector.py",
    "tests/test_original_design.py",
)


@pytest.hookimpl(tryfirst=True)   # before xdist reads the groups off the items
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    root = Path(config.rootpath)
    for item in items:
        where = Path(item.path).relative_to(root).as_posix()
        for group in _ONE_WORKER:
            if where == group or where.startswith(group + "/"):
                item.add_marker(pytest.mark.xdist_group(group))
                break


def pytest_collection_finish(session: pytest.Session) -> None:
    """On an xdist worker with --dist loadgroup, every grouped test must carry its group in its node id
    (that is how the controller keeps a group on one worker); a pytest or xdist upgrade that stops it
    would spread the service suites over every worker, so it stops the run instead."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        raise pytest.UsageError(f"pytest-xdist did not group {len(lost)} tests (e.g. {lost[0]}): "
                                "this pytest and pytest-xdist do not work together; see pyproject.toml")


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

