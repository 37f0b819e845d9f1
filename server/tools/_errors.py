"""Engine errors → ToolError with a message an agent can act on, secrets masked.

Input errors say what to fix; world errors say what failed. Anything else is a bug and is
left to the SDK, which reports it as a generic tool failure and logs the traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from engine.errors import InputError, InvalidTransition, WorldError
from server.state import AppState

__all__ = [
    "did_you_mean",
    "mask_text",
    "missing_config_file",
    "parse_since",
    "pipeline_lookup",
    "secret_values",
    "tool_errors",
    "unknown_pipeline",
]

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """" (did you mean 'x'?)" when a known name is close to `name`, else ""."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def unknown_pipeline(name: str, known: Iterable[str]) -> str:
    """The one answer every tool gives for a pipeline it does not know."""
    names = sorted(known)
    listed = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "none yet"
    return f"unknown pipeline {name!r}{did_you_mean(name, names)}; known pipelines: {listed}"


def missing_config_file(path: str) -> str | None:
    """What is wrong when `path` (a config_path) names no file, else None: near files in its folder."""
    from pathlib import Path

    p = Path(path).expanduser()
    if p.is_file():
        return None
    folder = p.parent
    near = sorted(f.name for f in folder.glob("*.y*ml")) if folder.is_dir() else []
    where = f"; YAML files in {folder}: {', '.join(near[:20])}" if near else ""
    return f"no file at config_path {path!r}{did_you_mean(p.name, near)}{where}"


@contextmanager
def pipeline_lookup(name: str | None, known: Callable[[], Iterable[str]]) -> Iterator[None]:
    """A pipeline looked up by `name` that does not exist is answered by `unknown_pipeline`, as in
    every tool that takes a pipeline name.

    Raises:
        NotFoundError: `name` names no pipeline.
    """
    from engine.errors import NotFoundError

    try:
        yield
    except NotFoundError as exc:
        if name is None:
            raise
        raise NotFoundError(unknown_pipeline(name, known())) from exc


def parse_since(text: str) -> float:
    """Unix time of an ISO 8601 date or date-time (UTC when no zone is given).

    Raises:
        InputError: not such a date.
    """
    from datetime import UTC, datetime

    from engine.errors import InputError

    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"since={text!r} is not an ISO 8601 date or date-time, e.g. 2026-11-30 or "
                         "2026-11-30T13:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def secret_values(state: AppState | None, extra: Iterable[tuple[str, str]] = ()) -> list[str]:
    """Values that must never reach a client: the secrets file, secret-looking environment
    variables, and secret-looking variables of this call."""
    from engine._secrets import read_secrets_file, secret_looking

    values: list[str] = []
    if state is not None:
        values.extend(v for v in read_secrets_file(state.settings.PIPELINE_SECRETS_FILE).values() if v)
    values.extend(secret_looking([*os.environ.items(), *extra]))
    return values


def mask_text(text: str, secrets: Iterable[str]) -> str:
    from engine._secrets import Masker

    return _BEARER.sub(r"\1***", Masker(secrets).mask(text))


@contextmanager
def tool_errors(state: AppState | None, extra: Iterable[tuple[str, str]] = ()) -> Iterator[None]:
    """Raises:
    ToolError: for every engine error, with its message (masked).
    """
    try:
        yield
    except ToolError:
        raise
    except InputError as exc:
        raise ToolError(mask_text(str(exc), secret_values(state, extra))) from exc
    except WorldError as exc:
        raise ToolError(
            mask_text(f"{type(exc).__name__}: {exc}", secret_values(state, extra))
            + " (the operation did not complete; fix the cause and retry)"
        ) from exc
    except InvalidTransition as exc:
        raise ToolError(f"internal state error: {mask_text(str(exc), secret_values(state, extra))}") from exc
