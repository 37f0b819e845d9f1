"""The small, safe expression language of `if:` conditions. Never eval.

Grammar (lowest precedence first)::

    expr    := or
    or      := and (("or" | "||") and)*
    and     := not (("and" | "&&") not)*
    not     := ("not" | "!") not | cmp
    cmp     := atom (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") atom)?
    atom    := STRING | NUMBER | true | false | null | NAME | NAME "(" [expr ("," expr)*] ")"
             | "[" [expr ("," expr)*] "]" | "(" expr ")"

Names are dotted (``branch``, ``event``, ``matrix.py``, ``vars.PY``, ``env.HOME``, or a
pipeline variable by its bare name). Functions: ``success()``, ``failure()``,
``always()``, ``cancelled()`` — as in GitHub Actions, they decide whether a job runs
after its dependencies failed. A condition without a status function behaves as if
``success() and`` stood before it. String functions, case-insensitive as in GitHub
Actions: ``startsWith(a, b)``, ``endsWith(a, b)``, ``contains(a, b)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import ExpressionError

__all__ = ["Condition", "STATUS_FUNCTIONS", "parse_condition"]

STATUS_FUNCTIONS = frozenset({"success", "failure", "always", "cancelled"})
STRING_FUNCTIONS: dict[str, Callable[[str, str], bool]] = {
    "startswith": lambda a, b: a.lower().startswith(b.lower()),
    "endswith": lambda a, b: a.lower().endswith(b.lower()),
    "contains": lambda a, b: b.lower() in a.lower(),
}
_MAX_LENGTH = 2000

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\],])
      | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)*)
    )""",
    re.VERBOSE,
)

Node = tuple[Any, ...]


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            at = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise ExpressionError(f"unexpected character {text[at]!r} at position {at + 1} in {text!r}")
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    tokens.append(("end", ""))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        kind, got = self.take()
        if got != value or kind == "string":
            raise ExpressionError(f"expected {value!r} but found {got or 'the end'!r} in {self.text!r}")

    def is_word(self, word: str) -> bool:
        kind, value = self.peek()
        return kind == "name" and value == word

    def parse(self) -> Node:
        node = self.or_()
        if self.peek()[0] != "end":
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.text!r}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.is_word("or") or self.peek() == ("op", "||"):
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.is_word("and") or self.peek() == ("op", "&&"):
            self.take()
            node = ("and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self.is_word("not") or self.peek() == ("op", "!"):
            self.take()
            return ("not", self.not_())
        return self.cmp()

    def cmp(self) -> Node:
        left = self.atom()
        kind, value = self.peek()
        if kind == "op" and value in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            return ("cmp", value, left, self.atom())
        if self.is_word("in"):
            self.take()
            return ("cmp", "in", left, self.atom())
        if self.is_word("not") and self.tokens[self.i + 1] == ("name", "in"):
            self.i += 2
            return ("not", ("cmp", "in", left, self.atom()))
        return left

    def atom(self) -> Node:
        kind, value = self.take()
        if kind == "string":
            body = value[1:-1]
            return ("lit", re.sub(r"\\(.)", r"\1", body))
        if kind == "number":
            return ("lit", float(value) if "." in value else int(value))
        if kind == "op" and value == "(":
            node = self.or_()
            self.expect(")")
            return node
        if kind == "op" and value == "[":
            items: list[Node] = []
            if self.peek() != ("op", "]"):
                items.append(self.or_())
                while self.peek() == ("op", ","):
                    self.take()
                    items.append(self.or_())
            self.expect("]")
            return ("list", items)
        if kind == "name":
            if value in ("true", "false"):
                return ("lit", value == "true")
            if value == "null":
                return ("lit", None)
            if value in ("and", "or", "not", "in"):
                raise ExpressionError(f"unexpected {value!r} in {self.text!r}")
            if self.peek() == ("op", "("):
                self.take()
                if value in STATUS_FUNCTIONS:
                    self.expect(")")
                    return ("call", value)
                if value.lower() in STRING_FUNCTIONS:
                    args = [self.or_()]
                    while self.peek() == ("op", ","):
                        self.take()
                        args.append(self.or_())
                    self.expect(")")
                    if len(args) != 2:
                        raise ExpressionError(f"{value}() takes 2 arguments, not {len(args)}, in {self.text!r}")
                    return ("fn", value.lower(), args)
                raise ExpressionError(
                    f"unknown function {value}() in {self.text!r}; known: "
                    + ", ".join(f"{f}()" for f in sorted(STATUS_FUNCTIONS)) + ", startsWith(a, b), endsWith(a, b), "
                    "contains(a, b)"
                )
            return ("name", value)
        raise ExpressionError(f"unexpected {value or 'end of expression'!r} in {self.text!r}")


def _names(node: Node) -> Iterable[str]:
    if node[0] == "name":
        yield node[1]
    elif node[0] in ("and", "or"):
        yield from _names(node[1])
        yield from _names(node[2])
    elif node[0] == "not":
        yield from _names(node[1])
    elif node[0] == "cmp":
        yield from _names(node[2])
        yield from _names(node[3])
    elif node[0] == "list":
        for item in node[1]:
            yield from _names(item)
    elif node[0] == "fn":
        for item in node[2]:
            yield from _names(item)


def _calls(node: Node) -> Iterable[str]:
    if node[0] == "call":
        yield node[1]
    elif node[0] in ("and", "or"):
        yield from _calls(node[1])
        yield from _calls(node[2])
    elif node[0] == "not":
        yield from _calls(node[1])
    elif node[0] == "cmp":
        yield from _calls(node[2])
        yield from _calls(node[3])
    elif node[0] in ("list", "fn"):
        for item in node[-1]:
            yield from _calls(item)


@dataclass(frozen=True)
class Condition:
    text: str
    tree: Node
    uses_status: bool  # mentions success()/failure()/always()/cancelled()

    def evaluate(self, names: Mapping[str, Any], status: Mapping[str, bool]) -> bool:
        """Evaluate with `names` (dotted name -> value) and `status` (function -> truth)."""
        return bool(_eval(self.tree, names.get, status))


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return bool(_norm(a) == _norm(b))
    if op == "!=":
        return bool(_norm(a) != _norm(b))
    if op == "in":
        if isinstance(b, (list, tuple)):
            return _norm(a) in [_norm(x) for x in b]
        return str(a) in str(b) if b is not None else False
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        x, y = str(a), str(b)  # type: ignore[assignment]
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def _norm(v: Any) -> Any:
    # Values from variables are strings; compare "3" with 3 as equal, as users expect.
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _eval(node: Node, lookup: Callable[[str], Any], status: Mapping[str, bool]) -> Any:
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "name":
        return lookup(node[1])
    if op == "call":
        return status.get(node[1], False)
    if op == "list":
        return [_eval(n, lookup, status) for n in node[1]]
    if op == "fn":
        a, b = (_eval(n, lookup, status) for n in node[2])
        return bool(STRING_FUNCTIONS[node[1]]("" if a is None else str(a), "" if b is None else str(b)))
    if op == "not":
        return not _eval(node[1], lookup, status)
    if op == "and":
        return _eval(node[1], lookup, status) and _eval(node[2], lookup, status)
    if op == "or":
        return _eval(node[1], lookup, status) or _eval(node[2], lookup, status)
    if op == "cmp":
        return _compare(node[1], _eval(node[2], lookup, status), _eval(node[3], lookup, status))
    raise AssertionError(op)


def parse_condition(text: str, known_names: Iterable[str] = (), *, prefixes: Iterable[str] = ()) -> Condition:
    """Parse and check an `if:` expression.

    `known_names` are the bare names it may use; a dotted name must start with one of
    `prefixes` (e.g. ``matrix.``, ``env.``, ``vars.``).

    Raises:
        ExpressionError: syntax error, unknown function, or unknown name.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("an empty condition")
    if len(text) > _MAX_LENGTH:
        raise ExpressionError(f"condition longer than {_MAX_LENGTH} characters")
    tree = _Parser(text).parse()
    known = set(known_names)
    pre = tuple(prefixes)
    for name in _names(tree):
        if name in known or (pre and name.startswith(pre)):
            continue
        raise ExpressionError(
            f"unknown name {name!r} in {text!r}; known: " + ", ".join(sorted(known) + [p + "*" for p in pre])
        )
    return Condition(text=text, tree=tree, uses_status=any(True for _ in _calls(tree)))
