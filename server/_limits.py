"""What each caller holds at once (sessions, streams, calls), against the policy's per-level limits.

One `Usage` per server process, shared by the HTTP guard (sessions, streams) and the trust gate
(calls). A caller is keyed by its name (`token:<name>`, or `anonymous` for every anonymous caller
together), so anonymous callers share one small allowance and cannot use up a token's.
"""

from __future__ import annotations

import threading

from server.trust import Level, TrustPolicy

__all__ = ["Usage"]

_WHAT = {
    "sessions": "open sessions",
    "streams": "open streams",
    "calls": "tool calls in progress",
    "expensive_calls": "expensive calls in progress (a caller's regex runs in each)",
}


class Usage:
    def __init__(self) -> None:
        self._held: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def take(self, policy: TrustPolicy, caller: str, level: Level, kind: str) -> str | None:
        """Hold one `kind` for `caller`; the refusal (for the client and the audit) when at its limit."""
        limit = getattr(policy.limits_for(level), kind)
        with self._lock:
            held = self._held.get((caller, kind), 0)
            if held >= limit:
                return (f"too many {_WHAT[kind]} for this caller ({caller}, level {level}: {held} of {limit}); "
                        "wait for one to end, or use a token of a higher level")
            self._held[(caller, kind)] = held + 1
        return None

    def give(self, caller: str, kind: str) -> None:
        with self._lock:
            held = self._held.get((caller, kind), 0)
            if held <= 1:
                self._held.pop((caller, kind), None)
            else:
                self._held[(caller, kind)] = held - 1

    def held(self, caller: str, kind: str) -> int:
        with self._lock:
            return self._held.get((caller, kind), 0)
