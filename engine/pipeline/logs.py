"""Job logs: streamed to a file as produced (timestamped, secrets masked), read back in slices.

Memory stays flat whatever a job prints: output is handled in bounded chunks, a line
longer than `MAX_LINE` is written in pieces, and readers seek from the end (tail) or
stream line by line (grep) instead of loading the file.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from engine._secrets import Masker

__all__ = ["LogSlice", "LogWriter", "read_log_slice", "tail_lines"]

MAX_LINE = 64 * 1024


def _stamp() -> bytes:
    t = time.time()
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z ").encode()


class LogWriter:
    """Writes a job's output to its log file line by line as it arrives.

    Not thread-safe: one writer per job, fed by one reader at a time.
    """

    def __init__(self, path: Path, masker: Masker | None = None) -> None:
        self.path = path
        try:
            self._f = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, "ab", buffering=0)  # noqa: SIM115
        self._masker = masker or Masker()
        self._carry = b""
        self.bytes_written = 0

    def feed(self, chunk: bytes) -> None:
        data = self._carry + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) <= MAX_LINE:
                self._carry = data
                return
            # A very long line: write it in pieces. Masked first, then cut: a secret wholly in `data`
            # is gone before the cut can split it, and the last `longest - 1` bytes, which may hold
            # the start of a secret the next chunk completes, wait for that chunk.
            if self._masker:
                data = self._masker.mask_bytes(data)
            keep = max(self._masker.longest - 1, 0)
            head, self._carry = data[: len(data) - keep], data[len(data) - keep:]
            self._emit([head])
            return
        self._carry = data[cut + 1:]
        self._emit(data[:cut].split(b"\n"))

    def note(self, text: str) -> None:
        """A line from the engine itself (attempt started, timed out, ...)."""
        self.flush()
        self._emit([b"==> " + text.encode()])

    def flush(self) -> None:
        if self._carry:
            carry, self._carry = self._carry, b""
            self._emit([carry])

    def _emit(self, lines: list[bytes]) -> None:
        stamp = _stamp()
        body = b"".join(stamp + line.rstrip(b"\r") + b"\n" for line in lines)
        if self._masker:
            body = self._masker.mask_bytes(body)
        self._f.write(body)
        self.bytes_written += len(body)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._f.close()


@dataclass(frozen=True)
class LogSlice:
    job: str
    text: str
    lines_returned: int
    truncated: bool
    note: str          # what was cut and how to get the rest
    size_bytes: int    # size of the whole log


def tail_lines(path: Path, n: int, *, block: int = 64 * 1024) -> tuple[list[str], bool]:
    """The last `n` lines of a file, reading backwards in blocks. Returns (lines, more_before)."""
    if n <= 0:
        return [], path.stat().st_size > 0
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos, data = end, b""
        while pos > 0 and data.count(b"\n") <= n:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.decode("utf-8", "replace").splitlines()
    more = pos > 0 or len(lines) > n
    return lines[-n:], more


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
    max_bytes: int = 64 * 1024,
) -> LogSlice:
    """A bounded view of a log: its last `tail` lines, or lines matching `grep` (a regex).

    Raises:
        ValueError: `grep` is not a valid regular expression.
    """
    if not path.exists():
        return LogSlice(job, "", 0, False, "the job wrote no log (it never started)", 0)
    size = path.stat().st_size
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
    else:
        n = min(tail or max_lines, max_lines)
        lines, more = tail_lines(path, n)
        truncated = more
        note = f"last {len(lines)} lines of a {size}-byte log" if more else f"whole log ({len(lines)} lines)"
    text = "\n".join(lines)
    if len(text.encode()) > max_bytes:
        raw = text.encode()[-max_bytes:]
        text = raw.decode("utf-8", "replace")
        truncated = True
        note += f"; cut to the last {max_bytes} bytes"
    if truncated:
        note += "; read the whole log as the resource or with a larger tail"
    return LogSlice(job, text, len(lines), truncated, note, size)
