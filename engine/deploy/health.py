"""Health checks: real probes (httpx, TCP, a command) and the verdict logic around them.

`run_check` is the loop (initial delay, interval, retries, success and failure thresholds)
over one probe function, with the clock injected: tests drive it with `FakeClock` and a scripted
probe, without waiting. `probe_http`, `probe_tcp` and `probe_command` are the probes that touch
the world; `verify` runs all of an environment's checks against one address.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
import httpx

from engine._clock import Clock
from engine._process import signal_group
from engine.deploy.config import CommandCheck, HttpCheck, TcpCheck
from engine.deploy.targets.base import Address

__all__ = [
    "HealthVerdict",
    "ProbeResult",
    "probe",
    "probe_command",
    "probe_http",
    "probe_tcp",
    "run_check",
    "verify",
]


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


@dataclass(frozen=True)
class HealthVerdict:
    healthy: bool
    check: str
    address: str
    probes: int
    detail: str

    def __str__(self) -> str:
        word = "healthy" if self.healthy else "unhealthy"
        return f"{self.check} on {self.address}: {word} after {self.probes} probe(s): {self.detail}"


Check = HttpCheck | TcpCheck | CommandCheck
Prober = Callable[[], Awaitable[ProbeResult]]


async def run_check(check: Check, one_probe: Prober, clock: Clock, *, label: str, address: str) -> HealthVerdict:
    """Probe until `success_threshold` consecutive passes (healthy), `failure_threshold`
    consecutive failures or `retries` probes in all (unhealthy)."""
    if check.initial_delay:
        await clock.sleep(check.initial_delay)
    passes = fails = 0
    last = ProbeResult(False, "not probed")
    for n in range(1, check.retries + 1):
        last = await one_probe()
        if last.ok:
            passes, fails = passes + 1, 0
            if passes >= check.success_threshold:
                return HealthVerdict(True, label, address, n, last.detail)
        else:
            passes, fails = 0, fails + 1
            if check.failure_threshold is not None and fails >= check.failure_threshold:
                return HealthVerdict(False, label, address, n, f"{fails} consecutive failures; last: {last.detail}")
        if n < check.retries:
            await clock.sleep(check.interval)
    return HealthVerdict(
        False, label, address, check.retries, f"gave up after {check.retries} probes; last: {last.detail}"
    )


def _fill(template: str, address: Address) -> str:
    return template.replace("{host}", address.host).replace("{port}", str(address.port))


async def probe_http(check: HttpCheck, address: Address, client: httpx.AsyncClient) -> ProbeResult:
    url = _fill(check.url, address)
    try:
        resp = await client.request(check.method, url, headers=check.headers, timeout=check.timeout)
    except httpx.HTTPError as exc:
        return ProbeResult(False, f"{check.method} {url}: {type(exc).__name__}: {exc}".rstrip(": "))
    if resp.status_code not in check.expected:
        return ProbeResult(False, f"{check.method} {url}: status {resp.status_code}, expected {sorted(check.expected)}")
    if check.body_contains is not None and check.body_contains not in resp.text:
        return ProbeResult(False, f"{check.method} {url}: body does not contain {check.body_contains!r}")
    if check.body_regex is not None and not re.search(check.body_regex, resp.text):
        return ProbeResult(False, f"{check.method} {url}: body does not match {check.body_regex!r}")
    return ProbeResult(True, f"{check.method} {url}: {resp.status_code}")


async def probe_tcp(check: TcpCheck, address: Address) -> ProbeResult:
    host = _fill(check.host, address)
    port = check.port or address.port
    try:
        with anyio.fail_after(check.timeout):
            stream = await anyio.connect_tcp(host, port)
    except TimeoutError:
        return ProbeResult(False, f"tcp {host}:{port}: no answer within {check.timeout}s")
    except OSError as exc:
        return ProbeResult(False, f"tcp {host}:{port}: {exc.strerror or exc}")
    await stream.aclose()
    return ProbeResult(True, f"tcp {host}:{port}: connected")


async def probe_command(check: CommandCheck, address: Address) -> ProbeResult:
    command = _fill(check.command, address)
    proc = await anyio.open_process(
        ["/bin/sh", "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with anyio.fail_after(check.timeout):
            async with proc:
                out = b""
                if proc.stdout is not None:
                    async for chunk in proc.stdout:
                        out += chunk[: max(0, 2000 - len(out))]
                await proc.wait()
    except TimeoutError:
        signal_group(proc.pid, signal.SIGKILL)
        with anyio.CancelScope(shield=True):
            await proc.wait()
        return ProbeResult(False, f"command {command!r}: no result within {check.timeout}s (killed)")
    text = out.decode("utf-8", "replace").strip()
    if proc.returncode == 0:
        return ProbeResult(True, f"command {command!r}: exit 0")
    return ProbeResult(False, f"command {command!r}: exit {proc.returncode}: {text[-500:]}")


def probe(check: Check, address: Address, client: httpx.AsyncClient) -> Prober:
    """The probe function of one check against one address."""
    if isinstance(check, HttpCheck):
        return lambda: probe_http(check, address, client)
    if isinstance(check, TcpCheck):
        return lambda: probe_tcp(check, address)
    return lambda: probe_command(check, address)


def check_label(check: Check, index: int) -> str:
    return check.name or f"{check.type} check #{index + 1}"


async def verify(
    checks: Sequence[Check],
    address: Address,
    *,
    client: httpx.AsyncClient,
    clock: Clock,
) -> list[HealthVerdict]:
    """Run every check against `address` in order; stops at the first unhealthy one.

    With no checks configured, a TCP connection to the address is the check (an instance that
    does not even accept connections is never called healthy).
    """
    effective: Sequence[Check] = checks or [TcpCheck(retries=10, interval=0.5)]
    out: list[HealthVerdict] = []
    for i, check in enumerate(effective):
        verdict = await run_check(
            check, probe(check, address, client), clock, label=check_label(check, i), address=str(address)
        )
        out.append(verdict)
        if not verdict.healthy:
            break
    return out
