"""The GitHub Actions expression language, evaluated as GitHub does (pure, standard library only).

    evaluate("startsWith(github.ref, 'refs/tags/')", contexts)      -> False
    interpolate("py${{ matrix.python }}", contexts)                  -> "py3.12"

Values are JSON values (None, bool, float/int, str, list, dict). Comparisons follow GitHub's
loose rules (strings compare case-insensitively, mixed types are converted to numbers),
`&&`/`||` return an operand, a missing property is null. Functions: contains, startsWith,
endsWith, format, join, toJSON, fromJSON, hashFiles (given as a callback, it reads files),
success/failure/always/cancelled (given as a callback: the status of the job so far).

The module is imported by the job runtime (`_gha_runtime`) inside the job's process, so it
imports nothing from the engine.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ExpressionError", "contexts_used", "evaluate", "interpolate", "is_expression", "to_string",
           "truthy"]

Node = tuple[Any, ...]
Functions = Mapping[str, Callable[..., Any]]


class ExpressionError(Exception):
    """The expression cannot be read, or names something that is not available."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>0x[0-9a-fA-F]+|-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<op>==|!=|<=|>=|&&|\|\||[<>!(),.\[\]*])
      | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
    )""",
    re.VERBOSE,
)
_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while text[pos:].strip():
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot read {text.strip()!r} at {text[pos:].strip()[:20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    out.append(("end", ""))
    return out


def strip_braces(text: str) -> str:
    text = text.strip()
    if text.startswith("${{") and text.endswith("}}") and text.count("${{") == 1:
        return text[3:-2].strip()
    return text


def parse(text: str) -> Node:
    """Parse one expression (without `${{ }}`) into a tree.

    Raises:
        ExpressionError: it is not a valid expression.
    """
    toks = _tokens(text)
    i = 0

    def peek() -> tuple[str, str]:
        return toks[i]

    def take() -> tuple[str, str]:
        nonlocal i
        i += 1
        return toks[i - 1]

    def expect(op: str) -> None:
        kind, value = take()
        if (kind, value) != ("op", op):
            raise ExpressionError(f"expected {op!r} in {text.strip()!r}")

    def or_() -> Node:
        node = and_()
        while peek() == ("op", "||"):
            take()
            node = ("or", node, and_())
        return node

    def and_() -> Node:
        node = cmp()
        while peek() == ("op", "&&"):
            take()
            node = ("and", node, cmp())
        return node

    def cmp() -> Node:
        node = unary()
        while peek()[0] == "op" and peek()[1] in ("==", "!=", "<", "<=", ">", ">="):
            op = take()[1]
            node = ("cmp", op, node, unary())
        return node

    def unary() -> Node:
        if peek() == ("op", "!"):
            take()
            return ("not", unary())
        return postfix(primary())

    def postfix(node: Node) -> Node:
        while True:
            if peek() == ("op", "."):
                take()
                kind, value = take()
                if (kind, value) == ("op", "*"):
                    node = ("star", node)
                elif kind == "name":
                    node = ("prop", node, ("lit", value))
                else:
                    raise ExpressionError(f"expected a property name in {text.strip()!r}")
            elif peek() == ("op", "["):
                take()
                if peek() == ("op", "*"):
                    take()
                    node = ("star", node)
                else:
                    node = ("prop", node, or_())
                expect("]")
            else:
                return node

    def primary() -> Node:
        kind, value = take()
        if kind == "string":
            return ("lit", value[1:-1].replace("''", "'"))
        if kind == "number":
            return ("lit", _number(value))
        if (kind, value) == ("op", "("):
            node = or_()
            expect(")")
            return node
        if kind == "name":
            if value in ("true", "false"):
                return ("lit", value == "true")
            if value == "null":
                return ("lit", None)
            if value in ("NaN", "Infinity"):
                return ("lit", float(value.lower() if value == "NaN" else "inf"))
            if peek() == ("op", "("):
                take()
                args: list[Node] = []
                if peek() != ("op", ")"):
                    args.append(or_())
                    while peek() == ("op", ","):
                        take()
                        args.append(or_())
                expect(")")
                return ("call", value.lower(), tuple(args))
            return ("ctx", value.lower())
        raise ExpressionError(f"unexpected {value or 'end'!r} in {text.strip()!r}")

    node = or_()
    if peek()[0] != "end":
        raise ExpressionError(f"unexpected {peek()[1]!r} in {text.strip()!r}")
    return node


def _number(text: str) -> float | int:
    if text.lower().startswith("0x"):
        return int(text, 16)
    value = float(text)
    return int(value) if value.is_integer() and not re.search(r"[.eE]", text) else value


# -- values --------------------------------------------------------------------------------------

def truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True


def to_string(value: Any) -> str:
    """A value as GitHub writes it into text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2)
    return str(value)


def _to_number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return math.nan
    return math.nan


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return a is b
    if type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                              and not isinstance(a, bool) and not isinstance(b, bool)):
        if isinstance(a, str):
            return a.casefold() == str(b).casefold()
        if a is None:
            return True
        return bool(a == b)
    return _to_number(a) == _to_number(b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if isinstance(a, str) and isinstance(b, str):
        x: Any = a.casefold()
        y: Any = b.casefold()
    else:
        x, y = _to_number(a), _to_number(b)
        if math.isnan(x) or math.isnan(y):
            return False
    return bool({"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op])


def _format(fmt: Any, *args: Any) -> str:
    text = to_string(fmt)

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        index = int(m.group(1))
        if index >= len(args):
            raise ExpressionError(f"format(): no argument {index} for {text!r}")
        return to_string(args[index])

    return re.sub(r"\{\{|\}\}|\{(\d+)\}", one, text)


def _contains(haystack: Any, needle: Any) -> bool:
    if isinstance(haystack, list):
        return any(_equal(item, needle) for item in haystack)
    return to_string(needle).casefold() in to_string(haystack).casefold()


def _from_json(text: Any) -> Any:
    try:
        return json.loads(to_string(text))
    except ValueError as exc:
        raise ExpressionError(f"fromJSON(): {to_string(text)[:60]!r} is not JSON: {exc}") from None


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "contains": _contains,
    "startswith": lambda a, b: to_string(a).casefold().startswith(to_string(b).casefold()),
    "endswith": lambda a, b: to_string(a).casefold().endswith(to_string(b).casefold()),
    "format": _format,
    "join": lambda a, sep=",": to_string(sep).join(to_string(x) for x in a) if isinstance(a, list)
    else to_string(a),
    "tojson": lambda a: json.dumps(a, indent=2),
    "fromjson": _from_json,
}
STATUS_FUNCTIONS = frozenset({"success", "failure", "always", "cancelled"})


def evaluate(text: str, contexts: Mapping[str, Any], functions: Functions | None = None) -> Any:
    """The value of one expression (`${{ }}` around it is allowed).

    Raises:
        ExpressionError: invalid, an unknown function or context, or a function that fails.
    """
    return _eval(parse(strip_braces(text)), contexts, functions or {})


def _eval(node: Node, ctx: Mapping[str, Any], functions: Functions) -> Any:
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "ctx":
        if node[1] not in ctx:
            raise ExpressionError(f"`{node[1]}` is not available here (known: {', '.join(sorted(ctx))})")
        return ctx[node[1]]
    if op == "prop":
        base = _eval(node[1], ctx, functions)
        key = _eval(node[2], ctx, functions)
        return _property(base, key)
    if op == "star":
        base = _eval(node[1], ctx, functions)
        if isinstance(base, dict):
            return list(base.values())
        return list(base) if isinstance(base, list) else []
    if op == "not":
        return not truthy(_eval(node[1], ctx, functions))
    if op == "and":
        left = _eval(node[1], ctx, functions)
        return _eval(node[2], ctx, functions) if truthy(left) else left
    if op == "or":
        left = _eval(node[1], ctx, functions)
        return left if truthy(left) else _eval(node[2], ctx, functions)
    if op == "cmp":
        return _compare(node[1], _eval(node[2], ctx, functions), _eval(node[3], ctx, functions))
    if op == "call":
        name, args = node[1], node[2]
        fn = functions.get(name) or _FUNCTIONS.get(name)
        if fn is None:
            raise ExpressionError(f"function {name}() is not available here")
        try:
            return fn(*(_eval(a, ctx, functions) for a in args))
        except TypeError as exc:
            raise ExpressionError(f"{name}(): {exc}") from None
    raise AssertionError(op)


def _property(base: Any, key: Any) -> Any:
    if isinstance(base, list) and not isinstance(base, str):
        if isinstance(key, (int, float)) and not isinstance(key, bool):
            index = int(key)
            return base[index] if 0 <= index < len(base) else None
        # `a.*.b`: the property of every element
        return [_property(item, key) for item in base]
    if isinstance(base, Mapping):
        wanted = to_string(key).casefold()
        for k, v in base.items():
            if str(k).casefold() == wanted:
                return v
        return None
    return None


def interpolate(text: str, contexts: Mapping[str, Any], functions: Functions | None = None) -> str:
    """Replace every `${{ expr }}` in `text` with its value as text.

    Raises:
        ExpressionError: as `evaluate`.
    """
    return _EXPR.sub(lambda m: to_string(evaluate(m.group(1), contexts, functions)), text)


def value_of(raw: Any, contexts: Mapping[str, Any], functions: Functions | None = None) -> Any:
    """A YAML value with its expressions: a string that is one whole expression keeps its type
    (a list from fromJSON stays a list); other strings are interpolated; lists and maps recurse.

    Raises:
        ExpressionError: as `evaluate`.
    """
    if isinstance(raw, str):
        stripped = raw.strip()
        if stripped.startswith("${{") and stripped.endswith("}}") and stripped.count("${{") == 1:
            return evaluate(stripped, contexts, functions)
        return interpolate(raw, contexts, functions) if "${{" in raw else raw
    if isinstance(raw, list):
        return [value_of(v, contexts, functions) for v in raw]
    if isinstance(raw, Mapping):
        return {str(k): value_of(v, contexts, functions) for k, v in raw.items()}
    return raw


def is_expression(raw: Any) -> bool:
    return isinstance(raw, str) and "${{" in raw


def contexts_used(text: str, *, condition: bool = False) -> set[str]:
    """The contexts and status functions an expression (or every `${{ }}` in a text) reads.

    Raises:
        ExpressionError: invalid.
    """
    sources = [strip_braces(text)] if condition else [m.group(1) for m in _EXPR.finditer(text)]
    out: set[str] = set()

    def walk(node: Node) -> None:
        if node[0] == "ctx":
            out.add(node[1])
        elif node[0] == "call" and node[1] in STATUS_FUNCTIONS | {"hashfiles"}:
            out.add(node[1] + "()")
        for part in node[1:]:
            if isinstance(part, tuple) and part and isinstance(part[0], str):
                walk(part)
            elif isinstance(part, tuple):
                for sub in part:
                    if isinstance(sub, tuple):
                        walk(sub)

    for src in sources:
        walk(parse(src))
    return out
