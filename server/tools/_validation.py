"""Argument errors an agent can act on: one line per field, saying what was given and what is allowed.

The SDK reports a pydantic `ValidationError` with the library's layout (a header, the field on its
own line, `[type=..., input_value=...]`, a URL per error). An agent needs the field, the value it
sent and the allowed values or range, once, and the names of the arguments the tool takes when it
sent one it does not.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["argument_errors"]

_MAX_GIVEN = 80
_MAX_ERRORS = 8


def _given(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _MAX_GIVEN else text[: _MAX_GIVEN - 3] + "..."


def _kind(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an optional field's schema."""
    for option in prop.get("anyOf", ()):
        if isinstance(option, dict) and option.get("type") != "null":
            return {**option, **{k: v for k, v in prop.items() if k != "anyOf"}}
    return prop


def _allowed(prop: dict[str, Any]) -> str | None:
    """What the field accepts, in words, from its JSON schema."""
    prop = _kind(prop)
    if "enum" in prop:
        return "one of " + ", ".join(str(v) for v in prop["enum"])
    if "const" in prop:
        return f"exactly {prop['const']!r}"
    kind = prop.get("type")
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    high = prop.get("maximum", prop.get("exclusiveMaximum"))
    if kind in ("integer", "number"):
        noun = "an integer" if kind == "integer" else "a number"
        if low is not None and high is not None:
            left = ">" if "exclusiveMinimum" in prop else "from"
            if left == ">":
                return f"{noun} > {low} and <= {high}"
            return f"{noun} from {low} to {high}"
        if low is not None:
            return f"{noun} {'>' if 'exclusiveMinimum' in prop else '>='} {low}"
        if high is not None:
            return f"{noun} <= {high}"
        return noun
    if kind == "boolean":
        return "true or false (a JSON boolean, not a string)"
    if kind == "string":
        parts = ["a string"]
        if "minLength" in prop or "maxLength" in prop:
            parts.append(f"of {prop.get('minLength', 0)} to {prop.get('maxLength', 'any')} characters")
        if "pattern" in prop:
            parts.append(f"matching {prop['pattern']}")
        return " ".join(parts)
    if kind == "array":
        return "a list" + (f" of at most {prop['maxItems']} items" if "maxItems" in prop else "")
    if kind == "object":
        return "an object (JSON mapping)"
    return None


def _one(err: Any, props: dict[str, Any]) -> str:
    loc = [str(p) for p in err.get("loc", ())]
    field = ".".join(loc)
    kind = err.get("type", "")
    top = props.get(loc[0], {}) if loc else {}
    if kind == "missing":
        allowed = _allowed(top)
        return f"{field} is required" + (f" ({allowed})" if allowed else "")
    if kind == "extra_forbidden":
        import difflib

        names = sorted(props)
        close = difflib.get_close_matches(loc[-1], names, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown argument {field}{hint}; this tool takes: {', '.join(names)}"
    if not loc:
        # A model-level rule: its own message says what to do.
        message = str(err.get("msg", "")).removeprefix("Value error, ")
        return message
    allowed = _allowed(top) if len(loc) == 1 else None
    if kind == "value_error":
        allowed = str(err.get("msg", "")).removeprefix("Value error, ")
    elif allowed is None:
        allowed = str(err.get("msg", "")).removeprefix("Input should be ").rstrip(".")
    return f"{field}: got {_given(err.get('input'))}; expected {allowed}"


def argument_errors(exc: ValidationError, model: type[BaseModel] | None) -> str:
    """`exc` as an agent reads it: 'invalid arguments: <field>: got X; expected Y; ...'."""
    try:
        schema = model.model_json_schema() if model is not None else {}
    except Exception:  # a schema that cannot be built must not hide the caller's mistake
        schema = {}
    props: dict[str, Any] = dict(schema.get("properties") or {})
    defs = schema.get("$defs") or {}
    for name, prop in props.items():
        ref = prop.get("$ref") if isinstance(prop, dict) else None
        if isinstance(ref, str) and ref.split("/")[-1] in defs:
            props[name] = {**defs[ref.split("/")[-1]], **{k: v for k, v in prop.items() if k != "$ref"}}
    errors = exc.errors(include_url=False)
    lines = list(dict.fromkeys(_one(e, props) for e in errors[:_MAX_ERRORS]))
    more = f"; and {len(errors) - _MAX_ERRORS} more" if len(errors) > _MAX_ERRORS else ""
    return "invalid arguments: " + "; ".join(lines) + more
