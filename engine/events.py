"""Progress events: what pipelines, deployments and rollbacks report while they work (plain data).

One `Event` type for all three, told apart by `subject` ("run", "deployment", "rollback") and
`subject_id` (a run id, a deployment id, a rollback execution id). `emit` delivers one to a
callback that may be sync or async; a broken consumer never breaks the work it watches.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Event", "EventCallback", "Subject", "emit"]

log = logging.getLogger(__name__)

Subject = Literal["run", "deployment", "rollback"]


@dataclass(frozen=True)
class Event:
    """A progress event.

    kind: run_started, run_finished, job_started, job_finished, job_retrying, job_skipped;
    deployments and rollbacks have their own kinds. `job` is the job (runs), the deployment's
    name (deployments) or the step (rollbacks). `done`/`total` count finished jobs or steps.
    """

    kind: str
    subject: Subject
    subject_id: str
    message: str
    job: str | None = None
    status: str | None = None
    done: int = 0
    total: int = 0
    data: dict[str, Any] = field(default_factory=dict)


EventCallback = Callable[[Event], None | Awaitable[None]]


async def emit(callback: EventCallback | None, event: Event) -> None:
    """Hand `event` to `callback` (awaiting it when it is async); its failures are logged, not raised."""
    if callback is None:
        return
    try:
        out = callback(event)
        if inspect.isawaitable(out):
            await out
    except Exception:  # a broken progress consumer must not break the run
        log.exception("event callback failed for %s %s", event.subject, event.kind)
