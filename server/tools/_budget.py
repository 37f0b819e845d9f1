"""The budget every tool result is held to: an agent's context is the scarcest thing it has.

Theory of operation
-------------------
A tool returns its output model; `shape` turns it into the `CallToolResult` the client gets:

* `structuredContent` is the model's data (None fields left out, floats to four places), at
  most `limit` characters of JSON. The presenters already fit their texts (log tails share
  the budget, long lines are cut in the middle); what still overflows is cut here, largest
  text first, then the longest list from its end, and every cut is announced in the
  `summary` with the call that gets the rest.
* The text content is a short rendering of the same data (summary first, one line per item,
  logs as blocks), not a JSON dump of it: a client that reads only the text sees the same
  facts, and one that reads both does not pay twice the JSON's size.

`limit` is `max_chars` from the call (default DEFAULT_MAX_CHARS), never more than the server's
CICD_MAX_RESULT_CHARS.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

from engine.pipeline.logs import cut_line

__all__ = ["CAP_ENV", "DEFAULT_MAX_CHARS", "fit", "max_chars", "render_text", "rounded", "shape"]

DEFAULT_MAX_CHARS = 8000
CAP_ENV = "CICD_MAX_RESULT_CHARS"
_DEFAULT_CAP = 32_000
_FLOOR = 500
_NOTES_RESERVE = 700     # room kept for the cut notices themselves
_MIN_STRING = 160        # strings shorter than this are not worth cutting
# Fields that tell the agent how to get the rest: cut only when nothing else is left to cut.
_GUIDES = frozenset({"summary", "note", "log_note", "more", "next_call", "log_uri", "resource_uri"})


def server_cap() -> int:
    raw = os.environ.get(CAP_ENV, "")
    try:
        return max(_FLOOR, int(raw)) if raw else _DEFAULT_CAP
    except ValueError:
        return _DEFAULT_CAP


def max_chars(requested: int | None) -> int:
    """The budget of one result: `requested` (or the default), capped by the server's cap."""
    cap = server_cap()
    return max(_FLOOR, min(requested or DEFAULT_MAX_CHARS, cap))


def _size(data: Any) -> int:
    return len(json.dumps(data, ensure_ascii=False))


# Fields in seconds: a millisecond is all an agent can use of them.
_SECONDS = frozenset({
    "duration", "estimate", "estimated_duration", "estimated_saving", "last_duration", "mean", "median",
    "mean_time_to_recovery", "p95", "seconds", "timeout",
})


def rounded(data: Any) -> Any:
    """JSON data with its numbers rounded as tool results round them (seconds to the millisecond)."""
    return _round(data)


def _round(data: Any, key: str | None = None) -> Any:
    if isinstance(data, float):
        # Seconds to the millisecond; anything else to four places, which keeps a rate (0.7692).
        return round(data, 3 if key in _SECONDS else 4)
    if isinstance(data, dict):
        return {k: _round(v, k) for k, v in data.items()}
    if isinstance(data, list):
        return [_round(v, key) for v in data]
    return data


def _leaves(data: Any, path: str, parent: dict[str, Any] | None) -> list[tuple[str, Any, Any, dict[str, Any] | None]]:
    """(path, container, key, nearest dict) of every string and list below `data`."""
    out: list[tuple[str, Any, Any, dict[str, Any] | None]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(value, str | list):
                out.append((sub, data, key, data))
            if isinstance(value, dict | list):
                out.extend(_leaves(value, sub, data))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            sub = f"{path}[{i}]"
            if isinstance(value, str | list):
                out.append((sub, data, i, parent))
            if isinstance(value, dict | list):
                out.extend(_leaves(value, sub, parent))
    return out


def _where_rest(parent: dict[str, Any] | None, more: str | None, needed: int) -> str:
    if parent is not None and isinstance(parent.get("log_uri"), str):
        return f"read the resource {parent['log_uri']}?offset=0&limit=200 (then page with next_offset)"
    if more:
        return more
    if needed <= server_cap():
        return f"call again with max_chars={needed}"
    return "call again with narrower arguments (a job, a grep, a smaller limit)"


def fit(data: dict[str, Any], limit: int, *, more: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """`data` cut to at most `limit` characters of JSON; returns it with one notice per cut."""
    notes: list[str] = []
    whole = _size(data)
    target = max(limit - _NOTES_RESERVE, limit // 2)
    for _ in range(500):
        size = _size(data)
        if size <= target:
            break
        excess = size - target
        leaves = _leaves(data, "", None)
        strings = [(p, c, k, par) for p, c, k, par in leaves
                   if isinstance(c[k], str) and len(c[k]) > _MIN_STRING and k not in _GUIDES]
        if not strings:
            strings = [(p, c, k, par) for p, c, k, par in leaves
                       if isinstance(c[k], str) and len(c[k]) > _MIN_STRING and k != "summary"]
        if strings:
            path, container, key, parent = max(strings, key=lambda leaf: len(leaf[1][leaf[2]]))
            text = container[key]
            keep = max(_MIN_STRING // 2, len(text) - excess - 60)
            container[key] = cut_line(text, keep)
            notes.append(f"{path}: {len(text) - len(container[key]) + 40} of {len(text)} chars cut in the middle; "
                         f"for all of it {_where_rest(parent, more, whole + 500)}")
            continue
        lists = [(p, c, k, par) for p, c, k, par in leaves if isinstance(c[k], list) and c[k]]
        if not lists:
            break
        path, container, key, parent = max(lists, key=lambda leaf: _size(leaf[1][leaf[2]]))
        items: list[Any] = container[key]
        drop = max(1, len(items) // 4) if excess > _size(items[-1]) * 2 else 1
        del items[len(items) - drop:]
        notes.append(f"{path}: last {drop} item(s) left out; for them {_where_rest(None, more, whole + 500)}")
    return data, _merge(notes)


def _merge(notes: list[str]) -> list[str]:
    """Repeated notices about the same field become one."""
    seen: dict[str, int] = {}
    out: list[str] = []
    for note in notes:
        head = note.split(":", 1)[0]
        if head in seen:
            out[seen[head]] = note
        else:
            seen[head] = len(out)
            out.append(note)
    return out[:12]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e6 else f"{value:.3f}"
    if isinstance(value, list):
        return ", ".join(_scalar(v) for v in value)
    return str(value)


def _block(text: str, indent: str) -> str:
    return "\n".join(indent + line for line in text.split("\n"))


def _render_obj(obj: dict[str, Any], indent: str) -> list[str]:
    inline, blocks = [], []
    for key, value in obj.items():
        if value is None or value == [] or value == {} or key == "summary":
            continue
        if isinstance(value, str) and "\n" in value:
            blocks.append(f"{indent}  {key}:\n{_block(value, indent + '    ')}")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            blocks.append(f"{indent}  {key}:")
            for item in value:
                blocks.extend(_render_obj(item, indent + "  "))
        elif isinstance(value, list) and any(isinstance(v, str) and len(v) > 60 for v in value):
            blocks.append(f"{indent}  {key}:\n" + "\n".join(f"{indent}    {_scalar(v)}" for v in value))
        elif isinstance(value, dict):
            inline.append(f"{key}={{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in value.items()) + "}")
        else:
            inline.append(f"{key}={_scalar(value)}")
    return [f"{indent}- " + " ".join(inline), *blocks]


def render_text(data: dict[str, Any]) -> str:
    """A short, readable rendering of a result's data: the summary, then the rest."""
    lines = [str(data.get("summary", ""))] if data.get("summary") else []
    for key, value in data.items():
        if key == "summary" or value is None or value == [] or value == {}:
            continue
        if isinstance(value, str) and "\n" in value:
            lines.append(f"{key}:\n{_block(value, '  ')}")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{key}:")
            for item in value:
                lines.extend(_render_obj(item, ""))
        elif isinstance(value, list) and any(isinstance(v, str) and len(v) > 60 for v in value):
            lines.append(f"{key}:\n" + "\n".join(f"  {_scalar(v)}" for v in value))
        elif isinstance(value, dict):
            lines.append(f"{key}: " + json.dumps(value, ensure_ascii=False))
        else:
            lines.append(f"{key}: {_scalar(value)}")
    return "\n".join(lines)


def shape(out: BaseModel, limit: int, *, more: str | None = None) -> CallToolResult:
    """The result of a tool call within `limit` characters of text and of structured JSON each."""
    data = _round(out.model_dump(mode="json", exclude_none=True))
    for key in getattr(type(out), "ALWAYS_PRESENT", ()):
        data.setdefault(key, None)   # a contract that reads result[key] must find it, None or not
    data, notes = fit(data, limit, more=more)
    if notes and isinstance(data.get("summary"), str):
        data["summary"] += " [cut to fit max_chars=" + str(limit) + ": " + "; ".join(notes) + "]"
    if _size(data) > limit and isinstance(data.get("summary"), str):
        data["summary"] = cut_line(data["summary"], max(200, len(data["summary"]) - (_size(data) - limit) - 60))
    text = render_text(data)
    if len(text) > limit:
        text = cut_line(text, limit - 60)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)
