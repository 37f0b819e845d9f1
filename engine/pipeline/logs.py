"""Job logs: streamed to a file as produced (timestamped, secrets masked), read back in slices.

Memory stays flat whatever a job prints: output is handled in bounded chunks, a line
longer than `MAX_LINE` is written in pieces, and readers seek from the end (tail) or
stream line by line (grep) instead of loading the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine._logfile import MAX_LINE, LogWriter

__all__ = ["LogSlice", "LogWriter", "cut_line", "read_log_slice", "tail_lines"]

@dataclass(frozen=True)
class LogSlice:
    job: str
    text: str
    lines_returned: int
    truncated: bool
    note: str          # what was cut and how to get the rest
    size_bytes: int    # size of the whole log
    byte_start: int = 0                 # where the returned text starts in the file
    next_byte_offset: int | None = None  # where the next page starts (None: the log ends here)
    first_line: int | None = None        # 0-based number of the first returned line, when known
    next_offset: int | None = None       # line number of the next page, when known
    lines_cut: int = 0                   # returned lines shortened in the middle


_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def cut_line(line: str, limit: int) -> str:
    """`line` at most about `limit` characters: its head and tail around a marker that says how much
    of the middle is gone (the start says what happened, the end often says why)."""
    if limit <= 0 or len(line) <= limit:
        return line
    keep = max(limit - 40, 20)
    head, tail = keep * 2 // 3, keep - keep * 2 // 3
    return f"{line[:head]} [... {len(line) - head - tail} chars cut ...] {line[len(line) - tail:]}"


def tail_lines(path: Path, n: int, *, block: int = 64 * 1024, max_bytes: int | None = None,
               ) -> tuple[list[str], bool]:
    """The last `n` lines of a file, reading backwards in blocks. Returns (lines, more_before).

    With `max_bytes`, reading stops once that much (plus one line's worth) is in hand, so a log of
    huge lines costs what the caller can use, not `n` lines' worth.
    """
    lines, more, _start = _tail(path, n, block=block, max_bytes=max_bytes)
    return lines, more


def _tail(path: Path, n: int, *, block: int = 64 * 1024, max_bytes: int | None = None,
          ) -> tuple[list[str], bool, int]:
    if n <= 0:
        size = path.stat().st_size
        return [], size > 0, size
    limit = None if max_bytes is None else max_bytes + MAX_LINE
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos, data = end, b""
        while pos > 0 and data.count(b"\n") <= n and (limit is None or len(data) < limit):
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    partial = False
    if pos > 0:
        # The first line read is partial: drop it, its start is before `pos`; unless it is all
        # there is (one huge last line), then it is kept and marked.
        cut = data.find(b"\n")
        if 0 <= cut and cut + 1 < len(data):
            pos += cut + 1
            data = data[cut + 1:]
        else:
            partial = True
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    more = pos > 0 or len(raw) > n
    if len(raw) > n:
        pos += sum(len(r) + 1 for r in raw[: len(raw) - n])
        raw = raw[len(raw) - n:]
    lines = [r.decode("utf-8", "replace").rstrip("\r") for r in raw]
    if partial and lines:
        lines[0] = f"[... this line starts before byte {pos}: its head is cut ...] {lines[0]}"
    return lines, more, pos


def _forward(path: Path, *, offset: int | None, byte_offset: int | None, count: int, max_bytes: int,
             line_chars: int = 0) -> tuple[list[str], int, int | None, int | None]:
    """`count` lines read forward from line `offset` or byte `byte_offset` (moved to the next line
    start when it falls inside a line), at most `max_bytes`. Returns (lines, byte start, next byte
    offset or None at the end, first line number when known)."""
    lines: list[str] = []
    with open(path, "rb") as f:
        first: int | None
        if byte_offset is not None:
            f.seek(max(0, byte_offset - 1) if byte_offset > 0 else 0)
            if byte_offset > 0 and f.read(1) != b"\n":
                f.readline()
            first = 0 if byte_offset == 0 else None
        else:
            first = offset or 0
            for _ in range(first):
                if not f.readline():
                    break
        start = f.tell()
        used = 0
        while len(lines) < count:
            raw = f.readline()
            if not raw:
                return lines, start, None, first
            # A line that will be cut in the middle costs what is left of it.
            cost = min(len(raw), line_chars + 64) if line_chars else len(raw)
            if lines and used + cost > max_bytes:
                f.seek(-len(raw), os.SEEK_CUR)
                break
            used += cost
            lines.append(raw.decode("utf-8", "replace").rstrip("\n").rstrip("\r"))
        nxt = f.tell()
        return lines, start, (nxt if f.read(1) else None), first


GREP_SECONDS = 10.0
# Run in a child process: a caller's regex can backtrack for hours on one line ("(a+)+$",
# "(.*){30}x"), Python's re cannot be interrupted, and a thread cannot be killed.
_GREP = """
import collections, json, re, sys
pattern, path, limit = re.compile(sys.argv[1]), sys.argv[2], int(sys.argv[3])
kept, matches = collections.deque(maxlen=limit), 0
with open(path, encoding="utf-8", errors="replace") as f:
    for line in f:
        if pattern.search(line):
            matches += 1
            kept.append(line.rstrip("\\n"))
json.dump([matches, list(kept)], sys.stdout)
"""


def _grep_bounded(path: Path, grep: str, limit: int) -> tuple[int, list[str]]:
    """(matching lines, the last `limit` of them), computed within GREP_SECONDS.

    Raises:
        ValueError: the pattern took longer than GREP_SECONDS over this log.
    """
    import json
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-I", "-c", _GREP, grep, str(path), str(limit)],
                              capture_output=True, timeout=GREP_SECONDS, check=True)
    except subprocess.TimeoutExpired:
        raise ValueError(f"grep pattern {grep!r} took more than {GREP_SECONDS:g} s over this log (it backtracks "
                         "too much); use a simpler pattern, e.g. without nested repetition") from None
    except subprocess.CalledProcessError as exc:
        raise ValueError(f"grep over the log failed: {exc.stderr.decode(errors='replace')[-300:]}") from None
    matches, lines = json.loads(done.stdout)
    return int(matches), [str(line) for line in lines]


def read_log_slice(
    path: Path, job: str, *, tail: int | None = None, grep: str | None = None, max_lines: int = 200,
    max_bytes: int = 64 * 1024, head: int | None = None, offset: int | None = None,
    byte_offset: int | None = None, timestamps: bool = True, line_chars: int = 0,
) -> LogSlice:
    """A bounded view of a log: its last `tail` lines, lines matching `grep` (a regex), or a page
    read forward (`head` lines from line `offset` or byte `byte_offset`).

    At most `max_lines` lines and about `max_bytes` bytes come back; with `line_chars`, each
    line longer than that is cut in the middle. The note says what was left out.

    Raises:
        ValueError: `grep` is not a valid regular expression.
    """
    if not path.exists():
        return LogSlice(job, "", 0, False, "the job wrote no log (it never started)", 0)
    size = path.stat().st_size
    byte_start, next_byte, first, next_line = 0, None, None, None
    if grep is not None:
        try:
            re.compile(grep)   # a bad pattern is the caller's error, said here rather than by the child
        except re.error as exc:
            raise ValueError(f"grep pattern {grep!r} is not a valid regular expression: {exc}") from exc
        limit = min(tail or max_lines, max_lines)
        matches, lines = _grep_bounded(path, grep, limit)
        truncated = matches > len(lines)
        note = (f"{matches} matching lines, showing the last {len(lines)}" if truncated
                else f"{matches} matching lines")
    elif head is not None or offset is not None or byte_offset is not None:
        n = min(head or max_lines, max_lines)
        lines, byte_start, next_byte, first = _forward(path, offset=offset, byte_offset=byte_offset, count=n,
                                                       max_bytes=max_bytes, line_chars=line_chars)
        if first is not None:
            next_line = first + len(lines) if next_byte is not None else None
        where = f"line {first}" if first is not None else f"byte {byte_start}"
        truncated = byte_start > 0 or next_byte is not None
        note = f"{len(lines)} lines from {where} of a {size}-byte log"
        note += "; the log goes on" if next_byte is not None else "; the log ends here"
    else:
        n = min(tail or max_lines, max_lines)
        lines, more, byte_start = _tail(path, n, max_bytes=max_bytes)
        truncated = more
        note = (f"last {len(lines)} lines (from byte {byte_start}) of a {size}-byte log" if more
                else f"whole log ({len(lines)} lines)")
    if not timestamps:
        lines = [_STAMP.sub("", line, count=1) for line in lines]
    cut = 0
    if line_chars:
        shortened = [cut_line(line, line_chars) for line in lines]
        cut = sum(1 for a, b in zip(lines, shortened, strict=True) if a is not b)
        lines = shortened
    # Whole lines are dropped to fit `max_bytes`: from the front for a tail, from the end for a page.
    text = "\n".join(lines)
    if len(text.encode()) > max_bytes:
        forward = grep is None and (head is not None or offset is not None or byte_offset is not None)
        total, kept = 0, list[str]()
        for line in (lines if forward else reversed(lines)):
            total += len(line.encode()) + 1
            if total > max_bytes and kept:
                break
            kept.append(line if total <= max_bytes else cut_line(line, max(max_bytes // 2, 40)))
        dropped = len(lines) - len(kept)
        if forward:
            # `_forward` stops before `max_bytes`, so only a single over-long line gets here: it is
            # kept (cut in the middle) and the next page still starts after it.
            lines = kept
        else:
            lines = list(reversed(kept))
        truncated = True
        note += f"; {dropped} more line(s) left out to stay within {max_bytes} bytes"
        text = "\n".join(lines)
    if cut:
        note += f"; {cut} long line(s) cut in the middle (marked '[... N chars cut ...]')"
    return LogSlice(job, text, len(lines), truncated, note, size, byte_start=byte_start,
                    next_byte_offset=next_byte, first_line=first, next_offset=next_line, lines_cut=cut)
