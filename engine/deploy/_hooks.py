"""Pre- and post-deploy hooks: shell commands run in order, each in its own process group
(killed whole on timeout), with the deployment described in DEPLOY_* variables."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from engine._process import signal_group
from engine.deploy.config import Hook

__all__ = ["HookEmit", "run_hook", "run_hooks"]

HookEmit = Callable[[str, str, dict[str, Any]], Awaitable[None]]
"""(event kind, message, data): how hooks report hook_started / hook_passed / hook_failed."""


async def run_hooks(
    hooks: Sequence[Hook], phase: str, deploy_env: Mapping[str, str], default_cwd: str, emit: HookEmit
) -> str | None:
    """Run hooks in order; the first failure's description, or None."""
    for i, hook in enumerate(hooks):
        await emit("hook_started", f"{phase} hook {i + 1}: {hook.command}", {"phase": phase})
        code, out = await run_hook(hook, {**os.environ, **hook.env, **deploy_env}, hook.cwd or default_cwd)
        if code != 0:
            what = "timed out" if code is None else f"exited {code}"
            msg = f"{phase} hook {i + 1} ({hook.command!r}) {what}: {out.strip()[-500:]}".rstrip(": ")
            await emit("hook_failed", msg, {"phase": phase, "exit_code": code})
            return msg
        await emit("hook_passed", f"{phase} hook {i + 1} passed", {"phase": phase})
    return None


async def run_hook(hook: Hook, env: dict[str, str], cwd: str) -> tuple[int | None, str]:
    """Run one hook command; (exit code or None on timeout, output)."""
    Path(cwd).mkdir(parents=True, exist_ok=True)
    proc = await anyio.open_process(
        ["/bin/sh", "-c", hook.command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out = bytearray()
    try:
        with anyio.fail_after(hook.timeout):
            async with proc:
                if proc.stdout is not None:
                    async for chunk in proc.stdout:
                        out += chunk
                        del out[:-8000]
                await proc.wait()
    except TimeoutError:
        signal_group(proc.pid, signal.SIGKILL)
        with anyio.CancelScope(shield=True):
            await proc.wait()
        return None, out.decode("utf-8", "replace")
    return proc.returncode, out.decode("utf-8", "replace")
