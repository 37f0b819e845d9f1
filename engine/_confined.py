"""Reading a file a caller named, confined to the roots the operator declared.

The file is opened once, and the check is made on what was opened (its real path, read back from
the open descriptor), never on a name resolved beforehand: between a resolve-then-check and the
read, a symlink or a directory could be swapped to point out of the root. Whatever way a path was
reached (given by a client, or recorded when a pipeline was registered), it passes here.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.errors import InputError, NotFoundError, SpecError, SpecIssue
from engine.settings import Settings

__all__ = ["config_roots", "read_confined"]


def config_roots(settings: Settings) -> list[Path] | None:
    """The directories a caller-named config file may lie in, resolved: the config root
    (PIPELINE_CONFIG_PATH, a directory or a file's directory) and the workspace; None when no
    config root is declared (then any file the process can read is accepted)."""
    configured = settings.PIPELINE_CONFIG_PATH
    if configured is None:
        return None
    root = configured.expanduser().resolve()
    if not root.is_dir():
        root = root.parent
    return [root, settings.workspace.expanduser().resolve()]


def _opened_path(fd: int, path: Path) -> Path:
    if sys.platform.startswith("linux"):
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    return path.resolve()   # elsewhere: no way back from a descriptor to its name without a window


def read_confined(path: Path, roots: Sequence[Path] | None, *, what: str = "pipeline file") -> tuple[bytes, Path]:
    """The bytes of the regular file `path` and its real path; with `roots`, the opened file must lie under one.

    Raises:
        NotFoundError: no such regular file.
        InputError: the opened file lies outside every root (the roots are named).
        SpecError: the file cannot be read (permission, a name the OS refuses).
    """
    shown = str(path)[:300]
    try:
        # O_NONBLOCK: a FIFO named as a pipeline must not hang the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise NotFoundError(f"{what} {shown!r} does not exist") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError([SpecIssue(f"cannot read the {what}: {reason}", file=shown)]) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotFoundError(f"{what} {shown!r} does not exist (not a regular file)")
        real = _opened_path(fd, path)
        if roots is not None and not any(real.is_relative_to(root) for root in roots):
            raise InputError(
                f"{what} {shown!r} is outside the server's config roots ({', '.join(str(r) for r in roots)}): "
                "name a file under one of them (symlinks and '..' are followed before the check), or a known "
                "pipeline by name. The operator sets the config root with PIPELINE_CONFIG_PATH."
            )
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks), real
    except OSError as exc:
        raise SpecError([SpecIssue(f"cannot read the {what}: {exc.strerror or exc}", file=shown)]) from exc
    finally:
        os.close(fd)
