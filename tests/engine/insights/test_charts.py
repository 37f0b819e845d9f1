"""The HTML report: valid inline SVG with one bar per job, and a real render in headless Chromium."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from xml.etree import ElementTree

import pytest

from engine.errors import NotFoundError
from engine.insights import render_report
from engine.pipeline.manager import PipelineManager
from engine.pipeline.results import PipelineRun

SVG = "{http://www.w3.org/2000/svg}"

MIXED = {
    "name": "mixed",
    "source": None,
    "max_workers": 2,
    "stages": [
        {
            "name": "main",
            "jobs": [
                {"name": "build", "commands": ["sleep 0.3", "echo b > app.bin"], "artifacts": ["app.bin"]},
                {
                    "name": "flaky",
                    "commands": ["if [ ! -e .tried ]; then touch .tried; sleep 0.2; exit 1; fi", "sleep 0.1"],
                    "retry": {"max": 1, "backoff": 0},
                },
                {"name": "lint", "commands": ["sleep 0.1", "exit 3"]},
                {"name": "package", "commands": ["cat app.bin", "sleep 0.2"], "depends_on": ["build"]},
                {"name": "docs", "commands": ["true"], "depends_on": ["lint"]},
            ],
        }
    ],
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineManager, list[PipelineRun]]:
    manager = PipelineManager(tmp_path_factory.mktemp("charts-ws"), max_workers=2)
    return manager, [manager.run_pipeline(MIXED) for _ in range(2)]


def _svgs(page: str) -> list[ElementTree.Element]:
    out, start = [], 0
    while (i := page.find("<svg", start)) != -1:
        j = page.index("</svg>", i) + len("</svg>")
        out.append(ElementTree.fromstring(page[i:j]))  # raises on anything that is not well-formed XML
        start = j
    return out


def test_report_svg_is_valid_with_one_bar_per_job(mixed: tuple[PipelineManager, list[PipelineRun]]) -> None:
    manager, runs = mixed
    run = runs[-1]
    page = render_report(manager.store, "mixed", run.run_id)
    assert page.startswith("<!DOCTYPE html>") and "http://" not in page.replace(
        "http://www.w3.org/2000/svg", ""
    )
    assert "<script" not in page
    gantt, trend = _svgs(page)
    assert gantt.get("class") == "gantt" and trend.get("class") == "trend"
    bars = [r for r in gantt.iter(f"{SVG}rect") if "job-bar" in (r.get("class") or "").split()]
    assert sorted(b.get("data-job") for b in bars) == sorted(run.jobs)  # type: ignore[type-var]
    status = {b.get("data-job"): (b.get("class") or "").split()[1] for b in bars}
    assert status == {
        "build": "status-succeeded",
        "flaky": "status-succeeded",
        "lint": "status-failed",
        "package": "status-succeeded",
        "docs": "status-skipped",
    }
    critical = {b.get("data-job") for b in bars if "critical" in (b.get("class") or "")}
    assert critical == {"build", "package"}
    retried = [r for r in gantt.iter(f"{SVG}rect") if "attempt-failed" in (r.get("class") or "")]
    assert len(retried) == 1 and "flaky attempt 1" in "".join(retried[0].itertext())
    assert len(list(trend.iter(f"{SVG}circle"))) == 2
    assert ">failing</span>" in page   # every run of it failed (lint)


def test_report_defaults_to_the_newest_run_and_rejects_unknown_runs(
    mixed: tuple[PipelineManager, list[PipelineRun]],
) -> None:
    manager, runs = mixed
    assert runs[-1].run_id in render_report(manager.store)
    with pytest.raises(NotFoundError):
        render_report(manager.store, "mixed", "no-such-run")
    empty = render_report(manager.store, "never-ran")
    assert "no runs recorded for never-ran" in empty and "unknown" in empty


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG into rows of raw pixels (zlib + the five PNG filters)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i : i + 3]) for r in rows[::4] for i in range(0, len(r), channels * 4)]


def test_report_renders_in_headless_chromium(
    mixed: tuple[PipelineManager, list[PipelineRun]], tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (Debian package `chromium`); CI must install it")
        pytest.skip("chromium is not installed and CI is not set")
    manager, runs = mixed
    html = tmp_path / "report.html"
    html.write_text(render_report(manager.store, "mixed", runs[-1].run_id), encoding="utf-8")
    png = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1100,1000",
            f"--screenshot={png}",
            html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    width, height, samples = _png_pixels(png.read_bytes())
    assert (width, height) == (1100, 1000)
    colours = set(samples)
    white = sum(1 for s in samples if s == b"\xff\xff\xff")
    assert len(colours) > 50, "the page rendered (nearly) blank"
    assert white < 0.97 * len(samples)
    # The bar colours made it to the screen: green (succeeded) and red (failed) pixels.
    assert any(g > 100 and r < 90 and b < 90 for r, g, b in colours)
    assert any(r > 170 and g < 80 and b < 80 for r, g, b in colours)
