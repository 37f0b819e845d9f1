"""A pipeline run in a runner process of its own: `python -m engine.pipeline._detached RUN_ID REQUEST`.

Theory of operation
-------------------
`PipelineManager.start_detached` writes the run's request (source, variables, settings) to a
private file under `<workspace>/runners/` and starts this module in a new session, so the run
belongs to no terminal, no MCP session and no server: it outlives all of them. This process
reads the request (and deletes it: variables may hold credentials), runs the pipeline through
an ordinary `PipelineManager`, and is recorded as the run's owner, so recovery after a crash
closes the run only when this process is gone.

It stops early for two reasons only, and says which in the run's reason: a cancellation
(`PipelineManager.cancel_run` writes who asked into `<run_id>.cancel` before raising the
run's cancel flag) or a signal to this process (an operator or the host shutting down).
A failure before the run is recorded (a secret without a value, say) is written to
`<run_id>.error` for the starter to report.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import anyio

__all__ = ["main"]

_POLL = 0.1


async def _watch(manager: Any, run_id: str, request: Path) -> None:
    """Hand a cancellation's reason to the runner as soon as it is written."""
    from engine.pipeline.manager import DETACHED_CANCEL

    reason_file = request.with_suffix(DETACHED_CANCEL)
    while True:
        await anyio.sleep(_POLL)
        if reason_file.exists():
            runner = manager._active.get(run_id)
            if runner is not None:
                try:
                    reason = reason_file.read_text(encoding="utf-8").strip() or "cancelled on request"
                except OSError:
                    reason = "cancelled on request"
                runner.cancel(reason)
                return


async def _signals(manager: Any, run_id: str) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as received:
        async for signum in received:
            runner = manager._active.get(run_id)
            if runner is not None:
                runner.cancel(f"the runner process got {signal.Signals(signum).name} (stopped by an operator or "
                              "the host shutting down)")


async def _run(request: Path, run_id: str) -> int:
    from engine.errors import InputError
    from engine.pipeline.manager import DETACHED_CANCEL, DETACHED_ERROR, PipelineManager
    from engine.settings import Settings
    from engine.store import runs

    data = json.loads(request.read_text(encoding="utf-8"))
    request.unlink()
    settings = Settings(**data["settings"])
    error_file = request.with_suffix(DETACHED_ERROR)
    try:
        roots = data.get("config_roots")
        manager = PipelineManager(settings=settings, recover=False,
                                  config_roots=None if roots is None else [Path(r) for r in roots])
    except Exception as exc:  # noqa: BLE001 - reported to the starter, which is waiting for it
        error_file.write_text(json.dumps({"input": False, "message": f"{type(exc).__name__}: {exc}"}))
        return 2
    recorded = False
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch, manager, run_id, request)
            tg.start_soon(_signals, manager, run_id)
            try:
                allowed = data.get("environments")
                await manager.arun_pipeline(data["source"], data["variables"], run_id=run_id,
                                            environments=None if allowed is None else frozenset(allowed))
                recorded = True
            finally:
                tg.cancel_scope.cancel()
    except Exception as exc:  # noqa: BLE001 - before the run is recorded nobody else would see it
        cause: BaseException = exc
        while isinstance(cause, BaseExceptionGroup) and cause.exceptions:   # the watchers' task group wraps it
            cause = cause.exceptions[0]
        if runs.get_run(manager.store, run_id) is None:
            error_file.write_text(json.dumps({"input": isinstance(cause, InputError), "message": str(cause)}))
        raise
    finally:
        request.with_suffix(DETACHED_CANCEL).unlink(missing_ok=True)
        manager.store.close()
    return 0 if recorded else 1


def main(argv: list[str]) -> int:
    run_id, request = argv[1], Path(argv[2])
    return anyio.run(_run, request, run_id)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
