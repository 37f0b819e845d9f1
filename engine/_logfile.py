"""A log file written as output arrives: each line stamped with the time it was read, secret
values masked, memory flat whatever the writer is fed.

The one log writer of the engine: jobs (engine.pipeline, fed raw chunks by an executor) and builds
(engine.build, fed lines by a reader thread) both write through it. A line longer than `MAX_LINE`
is written in pieces; the last `tail_lines` lines are kept for a summary when asked for.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path

from engine._secrets import Masker

__all__ = ["MAX_LINE", "LogWriter"]

MAX_LINE = 64 * 1024


def _stamp() -> bytes:
    t = time.time()
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z ").encode()


class LogWriter:
    """Writes output to a log file line by line as it arrives (appending; `append=False` starts the
    file anew). `feed` takes raw chunks (one reader at a time), `line` and `note` whole lines (from
    any thread); writes are serialised.
    """

    def __init__(self, path: Path, masker: Masker | None = None, *, append: bool = True,
                 tail_lines: int = 0) -> None:
        self.path = path
        mode = "ab" if append else "wb"
        try:
            self._f = open(path, mode, buffering=0)  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, mode, buffering=0)  # noqa: SIM115
        self._masker = masker or Masker()
        self._carry = b""
        self._lock = threading.Lock()
        self._tail: deque[str] | None = deque(maxlen=tail_lines) if tail_lines else None
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

    def line(self, text: str | bytes) -> None:
        """Whole lines (a trailing newline is not another line), written at once."""
        raw = text if isinstance(text, bytes) else text.encode()
        self._emit(raw.rstrip(b"\r\n").split(b"\n"))

    def tail(self) -> str:
        """The last `tail_lines` lines written (masked), for a summary."""
        with self._lock:
            return "\n".join(self._tail or ())

    def flush(self) -> None:
        if self._carry:
            carry, self._carry = self._carry, b""
            self._emit([carry])

    def _emit(self, lines: list[bytes]) -> None:
        stamp = _stamp()
        body = b"".join(stamp + line.rstrip(b"\r") + b"\n" for line in lines)
        if self._masker:
            body = self._masker.mask_bytes(body)
        with self._lock:
            self._f.write(body)
            self.bytes_written += len(body)
            if self._tail is not None:
                self._tail.extend(line[len(stamp):].decode(errors="replace") for line in body.splitlines())

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._f.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


