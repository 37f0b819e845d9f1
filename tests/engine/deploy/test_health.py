"""Health checks: the verdict loop with a fake clock, and the real probes against a real server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from engine._clock import FakeClock
from engine.deploy.config import CommandCheck, HttpCheck, TcpCheck
from engine.deploy.health import (
    ProbeResult,
    probe_command,
    probe_http,
    probe_tcp,
    run_check,
    verify,
)
from engine.deploy.targets.base import Address
from tests.engine.deploy.nginx_fixture import ports


def scripted(results: list[bool]) -> tuple[list[int], object]:
    calls: list[int] = []

    async def one() -> ProbeResult:
        calls.append(1)
        ok = results[len(calls) - 1] if len(calls) <= len(results) else results[-1]
        return ProbeResult(ok, f"probe {len(calls)}")

    return calls, one


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("results", "check", "healthy", "probes", "sleeps"),
    [
        ([True], {}, True, 1, []),
        ([False, False, True], {"interval": 0.5}, True, 3, [0.5, 0.5]),
        ([True, False, True, True], {"success_threshold": 2, "interval": 1}, True, 4, [1, 1, 1]),
        ([False], {"retries": 4, "interval": 2}, False, 4, [2, 2, 2]),
        (
            [True, False, False, True],
            {"failure_threshold": 2, "success_threshold": 2, "retries": 10},
            False,
            3,
            [1, 1],
        ),
        ([True], {"initial_delay": 3}, True, 1, [3]),
    ],
)
async def test_the_verdict_follows_thresholds_and_retries_on_the_injected_clock(
    results: list[bool],
    check: dict[str, float],
    healthy: bool,
    probes: int,
    sleeps: list[float],
) -> None:
    clock = FakeClock()
    calls, one = scripted(results)
    verdict = await run_check(
        TcpCheck(interval=check.pop("interval", 1), **check),
        one,
        clock,  # type: ignore[arg-type]
        label="t",
        address="a:1",
    )
    assert (verdict.healthy, verdict.probes, len(calls)) == (healthy, probes, probes)
    assert clock.slept == sleeps


class _Handler(BaseHTTPRequestHandler):
    status = 200
    body = "all good v3"

    def do_GET(self) -> None:
        data = self.body.encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[Address, type[_Handler]]]:
    port = ports.take(1)[0]
    handler = type("H", (_Handler,), {})
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield Address("127.0.0.1", port), handler
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.mark.anyio
async def test_http_probe_checks_status_and_body(server: tuple[Address, type[_Handler]]) -> None:
    address, handler = server
    async with httpx.AsyncClient() as client:
        ok = await probe_http(HttpCheck(url="http://{host}:{port}/health", body_regex=r"v\d"), address, client)
        assert ok.ok, ok.detail
        assert not (await probe_http(HttpCheck(body_contains="v4"), address, client)).ok
        handler.status = 500
        bad = await probe_http(HttpCheck(), address, client)
        assert not bad.ok and "status 500" in bad.detail
        assert (await probe_http(HttpCheck(expect_status=[200, 500]), address, client)).ok


@pytest.mark.anyio
async def test_tcp_and_command_probes_touch_the_real_world(server: tuple[Address, type[_Handler]]) -> None:
    address, _ = server
    closed = Address("127.0.0.1", ports.take(1)[0])
    assert (await probe_tcp(TcpCheck(), address)).ok
    assert not (await probe_tcp(TcpCheck(), closed)).ok
    assert (await probe_command(CommandCheck(command="test {port} = " + str(address.port)), address)).ok
    failed = await probe_command(CommandCheck(command="echo nope; exit 3"), address)
    assert not failed.ok and "exit 3" in failed.detail and "nope" in failed.detail
    slow = await probe_command(CommandCheck(command="sleep 30", timeout=0.2), address)
    assert not slow.ok and "killed" in slow.detail


@pytest.mark.anyio
async def test_verify_stops_at_the_first_unhealthy_check(server: tuple[Address, type[_Handler]]) -> None:
    address, handler = server
    handler.status = 503
    async with httpx.AsyncClient() as client:
        verdicts = await verify(
            [HttpCheck(retries=3, interval=0.01), TcpCheck()], address, client=client, clock=FakeClock()
        )
    assert [v.healthy for v in verdicts] == [False]
    assert "status 503" in str(verdicts[0]) and verdicts[0].probes == 3
