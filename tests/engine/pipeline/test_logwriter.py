"""LogWriter: secrets never reach a log in clear, whatever the chunking and line lengths."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine._secrets import Masker
from engine.pipeline.logs import MAX_LINE, LogWriter

_STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
SECRET = "s3cr3t-Value-42"


def _stream(path: Path) -> bytes:
    """The logged bytes with the timestamps taken out and the pieces of a long line joined again."""
    return b"".join(_STAMP.sub(b"", line) for line in path.read_bytes().splitlines())


def test_a_secret_across_the_cut_of_a_long_line_is_masked(tmp_path: Path) -> None:
    keep = len(SECRET) - 1
    total = MAX_LINE + 100
    at = total - keep - len(SECRET) // 2       # the secret straddles the place where the line is cut
    line = b"x" * at + SECRET.encode() + b"y" * (total - at - len(SECRET))
    writer = LogWriter(tmp_path / "job.log", Masker([SECRET]))
    writer.feed(line)
    writer.close()
    stream = _stream(tmp_path / "job.log")
    assert SECRET.encode() not in stream
    assert b"***" in stream


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    gaps=st.lists(st.integers(0, 3 * MAX_LINE // 2), min_size=1, max_size=6),
    cuts=st.lists(st.integers(1, MAX_LINE + 50), min_size=1, max_size=40),
    newline_every=st.sampled_from([0, 7, 1000, MAX_LINE - 3]),
)
def test_no_chunking_lets_a_secret_through(tmp_path: Path, gaps: list[int], cuts: list[int],
                                           newline_every: int) -> None:
    parts = []
    for gap in gaps:
        filler = bytearray(b"a" * gap)
        if newline_every:
            filler[newline_every::newline_every] = b"\n" * len(filler[newline_every::newline_every])
        parts += [bytes(filler), SECRET.encode()]
    data = b"".join(parts)
    path = tmp_path / f"fuzz-{len(data)}-{len(cuts)}-{newline_every}.log"
    path.unlink(missing_ok=True)
    writer = LogWriter(path, Masker([SECRET, "other-secret"]))
    pos, i = 0, 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        writer.feed(data[pos:pos + step])
        pos, i = pos + step, i + 1
    writer.close()
    stream = _stream(path)
    assert SECRET.encode() not in stream
    assert stream.count(b"***") == len(gaps)
