"""Small HTTP helpers for the target tests: wait until an address answers, read a body."""

from __future__ import annotations

import time

import httpx


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


def wait_body(url: str, expected: str, attempts: int = 100) -> str | None:
    """Poll `url` until its body (stripped) is `expected`; returns the last body seen (None: no answer)."""
    last: str | None = None
    for _ in range(attempts):
        resp = get(url)
        last = None if resp is None else resp.text.strip()
        if last == expected:
            return last
        time.sleep(0.1)
    return last


def wait_status(url: str, expected: int, attempts: int = 100) -> int | None:
    last: int | None = None
    for _ in range(attempts):
        resp = get(url)
        last = None if resp is None else resp.status_code
        if last == expected:
            return last
        time.sleep(0.1)
    return last
