"""Engine errors → ToolError with a message an agent can act on, secrets masked.

Input errors say what to fix; world errors say what failed. Anything else is a bug and is
left to the SDK, which reports it as a generic tool failure and logs the traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from engine.errors import InputError, InvalidTransition, WorldError
from server.state import AppState

__all__ = ["did_you_mean", "mask_text", "parse_since", "secret_values", "tool_errors", "unknown_pipeline"]

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
