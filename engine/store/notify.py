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

Many waiters in one process (an MCP server's `wait_for_run` calls) share one subscription
through a `Hub`: one connection listens, and each waiter sleeps on an event of its subject.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple, Protocol

import anyio
import anyio.abc
import anyio.to_thread

from engine.store.base import Store

__all__ = ["POLL_INTERVAL", "TOPICS", "Hub", "Notice", "Subscription", "notify", "subscribe", "wait_async"]

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.5
"""Seconds between two looks at the tables where the store cannot notify (SQLite)."""

_MAX_SUBJECTS = 1024
"""Subjects a Hub keeps events for (a waiter that leaves without a change to come leaves one)."""

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


class Hub:
    """One subscription to `topic` for every waiter of this process.

        armed = hub.arm(run_id)            # before reading: a change after this wakes the wait
        run = runs.get_run(store, run_id)
        if not finished(run):
            await hub.wait(armed, timeout)

    A listening task (started in `task_group` at the first `arm`) sets the event of each subject a
    notice names. Where the store cannot notify (SQLite), or while the listener is down (it
    reconnects with backoff), `wait` is a plain sleep: waiters keep looking at the tables, at
    their own pace. Waiters never depend on a notice for correctness, only for promptness.
    """

    def __init__(self, store: Store, topic: str, task_group: anyio.abc.TaskGroup | None) -> None:
        self._store = store
        self._topic = topic
        self._task_group = task_group
        self._events: dict[str, anyio.Event] = {}
        self._started = False
        self.listening = False
        """True while notices arrive: a wait then ends at the subject's next change."""

    @property
    def exact(self) -> bool:
        """Whether the store can notify at all (PostgreSQL)."""
        return getattr(self._store, "listen", None) is not None and self._task_group is not None

    def arm(self, subject: str) -> anyio.Event:
        """The event the next change of `subject` sets (shared with its other waiters)."""
        if self.exact and not self._started:
            self._started = True
            assert self._task_group is not None
            self._task_group.start_soon(self._listen)
        event = self._events.get(subject)
        if event is None or event.is_set():
            if len(self._events) >= _MAX_SUBJECTS:
                # Subjects whose waiters left without a change to come would pile up: everyone looks again.
                self._wake_all()
            event = self._events[subject] = anyio.Event()
        return event

    def _wake_all(self) -> None:
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    async def wait(self, armed: anyio.Event, timeout: float, *, poll: float = POLL_INTERVAL) -> bool:
        """Until `armed` is set or `timeout` seconds passed (`poll` at most while nothing listens);
        True when a change woke it."""
        if not self.listening:
            await anyio.sleep(max(0.0, min(timeout, poll)))
            return armed.is_set()
        with anyio.move_on_after(max(0.0, timeout)):
            await armed.wait()
        return armed.is_set()

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            try:
                with subscribe(self._store, self._topic) as sub:
                    self.listening = True
                    backoff = 0.5
                    while True:
                        for notice in await wait_async(sub, 5.0):
                            event = self._events.pop(notice.subject, None)
                            if event is not None:
                                event.set()
            except Exception as exc:  # noqa: BLE001 - a lost listener degrades to polling, and retries
                log.warning("listening to %s changes failed (waiters poll meanwhile): %s", self._topic, exc)
            finally:
                self.listening = False
                self._wake_all()   # everyone waiting may have missed a notice: they look again
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
