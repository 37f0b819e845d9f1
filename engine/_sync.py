"""Calling the engine's async API from synchronous code (the seed API: `deploy()`, `execute_rollback()`, ...)."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

__all__ = ["blocking", "in_event_loop"]

T = TypeVar("T")


def in_event_loop() -> bool:
    """Whether this thread runs an event loop (asyncio, or trio where sniffio can tell)."""
    import asyncio

    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        pass
    try:
        import sniffio  # not a dependency of ours (nor of anyio 4): only there with trio and friends
    except ImportError:
        return False
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return False
    return True


def blocking(fn: Callable[..., Awaitable[T]], *args: Any, thread_name: str = "cicd-sync") -> T:
    """Run `fn(*args)` to completion and return its result.

    Outside an event loop, one is run here. Inside one (a notebook, an async caller that used
    the sync API), the loop cannot be re-entered, so the call runs in a thread of its own with
    its own loop and this thread waits for it.
    """
    if not in_event_loop():
        return anyio.run(fn, *args)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = anyio.run(fn, *args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=work, name=thread_name)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result
