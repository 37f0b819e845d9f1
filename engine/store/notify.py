"""Change notifications: wake a waiter in any process when a run or a deployment changes.

    with notify.subscribe(store, "runs") as sub:
        while not finished(runs.get_run(store, run_id)):
            sub.wait(timeout=5.0)          # returns early when something changed

On PostgreSQL every write to a run or its jobs (`runs`), to a deployment or its events
(`deployments`) notifies through LISTEN/NOTIFY (triggers of migration 0011), so `wait`
returns within milliseconds of the commit, with the changed ids. On SQLite there is no
such channel: `wait` returns after at most `POLL_INTERVAL` seconds with nothing, and the
caller reads the tables again — the loop above is right for both. `exact` tells which
(True: an empty result means nothing changed in the meantime).
"""

from __future__ import annotations

import time
from typing import NamedTuple, Protocol

import anyio.to_thread

from engine.store.base import Store

__all__ = ["POLL_INTERVAL", "TOPICS", "Notice", "Subscription", "notify", "subscribe", "wait_async"]

POLL_INTERVAL = 0.5
"""Seconds between two looks at the tables where the store cannot notify (SQLite)."""

TOPICS = {"runs": "cicd_runs", "deployments": "cicd_deployments"}
"""Topic -> channel. A notice's subject is the run id or the deployment id."""


class Notice(NamedTuple):
    topic: str
    subject: str


class Subscription(Protocol):
    exact: bool

    def wait(self, timeout: float) -> list[Notice]:
        """Block until something changed or `timeout` seconds passed; the notices that came."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Subscription: ...

    def __exit__(self, *exc: object) -> None: ...


class _Polling:
    """The fallback: no notices, a bounded wait, and the caller looks again."""

    exact = False

    def wait(self, timeout: float) -> list[Notice]:
        time.sleep(max(0.0, min(timeout, POLL_INTERVAL)))
        return []

    def close(self) -> None:
        return None

    def __enter__(self) -> _Polling:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Listening:
    exact = True

    def __init__(self, listener: object, channels: dict[str, str]) -> None:
        self._listener = listener
        self._topics = {channel: topic for topic, channel in channels.items()}

    def wait(self, timeout: float) -> list[Notice]:
        got = self._listener.wait(timeout)  # type: ignore[attr-defined]
        return [Notice(self._topics.get(channel, channel), payload) for channel, payload in got]

    def close(self) -> None:
        self._listener.close()  # type: ignore[attr-defined]

    def __enter__(self) -> _Listening:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _channel(topic: str) -> str:
    return TOPICS.get(topic, "cicd_" + topic)


def subscribe(store: Store, *topics: str) -> Subscription:
    """Listen to `topics` ("runs", "deployments", or one of the caller's own named in `notify`).

    Raises:
        StoreError: the store could not open the subscription.
    """
    listen = getattr(store, "listen", None)
    if listen is None:
        return _Polling()
    channels = {t: _channel(t) for t in topics}
    return _Listening(listen(list(channels.values())), channels)


def notify(store: Store, topic: str, subject: str) -> None:
    """Tell the subscribers of `topic` that `subject` changed (nothing to do where they poll)."""
    send = getattr(store, "notify", None)
    if send is not None:
        send(_channel(topic), subject)


async def wait_async(sub: Subscription, timeout: float) -> list[Notice]:
    """`sub.wait` without blocking the event loop (in a worker thread; cancellable up to `timeout`)."""
    return await anyio.to_thread.run_sync(sub.wait, timeout, abandon_on_cancel=True)
