"""Expressions across CI dialects (pure).

Importing: a GitHub Actions expression (``${{ ... }}`` or a bare `if:`) is parsed into a
small tree (by `_ghexpr`'s parser, the one the job runtime uses) whose names are then the
engine's (``github.ref`` -> ``ref``,
``env.X`` -> ``vars.X``, ...). The tree is then written as an engine `if:`
condition (job level, evaluated by the runner); everything else in an imported workflow
is evaluated with GitHub's own semantics by `_ghexpr`.

Exporting: an engine condition tree (from `engine.spec.expr`) is written back as a
GitHub Actions expression, or split into a GitLab `rules:` entry (`if:` text plus `when:`).

Anything without an equivalent raises `Unsupported` with a sentence saying what.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.interop import _ghexpr

__all__ = [
    "GithubNames",
    "Unsupported",
    "condition_to_github",
    "condition_to_gitlab",
    "github_to_engine",
    "parse_github",
]

Node = tuple[Any, ...]


class Unsupported(Exception):
    """The construct has no equivalent on the other side."""


_STATUS = {"success", "failure", "always", "cancelled"}
# github.* names the local runner knows, as engine names.
_GITHUB_CONTEXT = {
    "github.ref": "ref",
    "github.ref_name": "branch",
    "github.event_name": "event",
    "github.workflow": "pipeline",
    "github.run_id": "run_id",
}


@dataclass
class GithubNames:
    """How a workflow's names map to the engine's: renamed matrix keys, declared secrets."""

    matrix: Mapping[str, str] = field(default_factory=dict)     # GitHub key -> engine key
    secrets: frozenset[str] = frozenset()                        # declared (masked) in the spec
    used_secrets: set[str] = field(default_factory=set)          # every secrets.X met

    def name(self, dotted: str) -> Node:
        if dotted in _GITHUB_CONTEXT:
            return ("name", _GITHUB_CONTEXT[dotted])
        if dotted == "runner.os":
            return ("lit", "Linux")
        head, _, rest = dotted.partition(".")
        if rest and "." not in rest and "*" not in rest:
            if head == "matrix":
                if rest not in self.matrix:
                    raise Unsupported(f"`{dotted}`: the job has no matrix key {rest!r}")
                return ("name", f"matrix.{self.matrix[rest]}")
            if head == "env":          # the workflow/job env, which the engine calls variables
                return ("name", f"vars.{rest}")
            if head == "vars":         # repository configuration variables: from the environment
                return ("name", f"env.{rest}")
            if head == "secrets":
                self.used_secrets.add(rest)
                return ("name", f"secrets.{rest}" if rest in self.secrets else f"env.{rest}")
        raise Unsupported(f"`{dotted}` is not available when running locally")


def parse_github(text: str, names: GithubNames) -> Node:
    """Parse a GitHub Actions expression into an engine-named tree.

    The expression is read by `_ghexpr`'s parser, the one the job runtime evaluates with (one
    grammar: GitHub's precedence, `!` binding tighter than `==`), and its tree is renamed here.

    Raises:
        Unsupported: not an expression, or a function or context the engine has no equivalent for.
    """
    try:
        tree = _ghexpr.parse(_ghexpr.strip_braces(text))
    except _ghexpr.ExpressionError as exc:
        raise Unsupported(str(exc)) from exc
    return _renamed(tree, names)


def _renamed(node: Node, names: GithubNames) -> Node:
    op = node[0]
    if op == "lit":
        return node
    if op in ("and", "or"):
        return (op, _renamed(node[1], names), _renamed(node[2], names))
    if op == "not":
        return ("not", _renamed(node[1], names))
    if op == "cmp":
        return ("cmp", node[1], _renamed(node[2], names), _renamed(node[3], names))
    if op == "call":
        return _call(node[1], [_renamed(a, names) for a in node[2]])
    return names.name(_dotted(node))


def _dotted(node: Node) -> str:
    """`github.ref` from the parser's ("prop", ("ctx", "github"), ("lit", "ref")) chain."""
    if node[0] == "ctx":
        return str(node[1])
    if node[0] == "prop" and node[2][0] == "lit" and isinstance(node[2][1], str):
        return f"{_dotted(node[1])}.{node[2][1]}"
    if node[0] == "star":
        return f"{_dotted(node[1])}.*"
    raise Unsupported("an index computed by an expression is not available when running locally")


_FUNCTIONS = {"startswith": "startsWith", "endswith": "endsWith"}


def _call(fn: str, args: list[Node]) -> Node:
    """`fn`: lower case, as the parser gives it (GitHub's function names are case-insensitive)."""
    if fn in _STATUS and not args:
        return ("call", fn)
    if fn == "contains" and len(args) == 2:
        return ("cmp", "in", args[1], args[0])
    if fn in _FUNCTIONS and len(args) == 2:
        return ("fn", _FUNCTIONS[fn], args[0], args[1])
    raise Unsupported(f"function {fn}() is not supported locally (supported: success(), failure(), always(), "
                      "cancelled(), contains(), startsWith(), endsWith())")


# -- writers -----------------------------------------------------------------------------------

def _engine_lit(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def github_to_engine(node: Node) -> str:
    """The tree as an engine `if:` condition."""
    op = node[0]
    if op == "lit":
        return _engine_lit(node[1])
    if op == "name":
        return str(node[1])
    if op == "call":
        return f"{node[1]}()"
    if op == "not":
        return f"not ({github_to_engine(node[1])})"
    if op in ("and", "or"):
        return f"({github_to_engine(node[1])} {op} {github_to_engine(node[2])})"
    if op == "cmp":
        return f"{_operand(node[2])} {node[1]} {_operand(node[3])}"
    if op == "fn":
        return f"{node[1]}({github_to_engine(node[2])}, {github_to_engine(node[3])})"
    raise AssertionError(op)


def _operand(node: Node) -> str:
    """A comparison's side: in parentheses unless atomic (GitHub's `!a == b` compares `!a`)."""
    text = github_to_engine(node)
    return f"({text})" if node[0] in ("not", "cmp") else text


# -- export: engine condition tree -> other dialects -----------------------------------------

def _gh_value(node: Node, rename: Callable[[str], str]) -> str:
    op = node[0]
    if op == "lit":
        value = node[1]
        if isinstance(value, str):
            return "'" + value.replace("'", "''") + "'"
        return _engine_lit(value)
    if op == "name":
        return rename(str(node[1]))
    if op == "list":
        raise Unsupported("list literals have no GitHub Actions equivalent")
    return condition_to_github(node, rename)


_GH_NAMES = {"ref": "github.ref", "branch": "github.ref_name", "event": "github.event_name",
             "pipeline": "github.workflow", "run_id": "github.run_id"}


def github_name(name: str, variables: frozenset[str]) -> str:
    if name in _GH_NAMES:
        return _GH_NAMES[name]
    if name == "provider":
        return "'github'"
    head, _, rest = name.partition(".")
    if head in ("matrix", "secrets") and rest:
        return name
    if head == "vars" and rest:
        return f"env.{rest}"
    if head == "env" and rest:
        return f"vars.{rest}"
    if name in variables:
        return f"env.{name}"
    raise Unsupported(f"name {name!r} has no GitHub Actions equivalent")


def condition_to_github(node: Node, rename: Callable[[str], str]) -> str:
    """An engine condition tree as a GitHub Actions expression."""
    op = node[0]
    if op == "call":
        return f"{node[1]}()"
    if op == "not":
        return f"!({condition_to_github(node[1], rename)})"
    if op in ("and", "or"):
        sym = "&&" if op == "and" else "||"
        return f"({condition_to_github(node[1], rename)} {sym} {condition_to_github(node[2], rename)})"
    if op == "cmp":
        a, b = _gh_value(node[2], rename), _gh_value(node[3], rename)
        if node[1] == "in":
            return f"contains({b}, {a})"
        return f"{a} {node[1]} {b}"
    return _gh_value(node, rename)


_GL_NAMES = {"branch": "$CI_COMMIT_BRANCH", "event": "$CI_PIPELINE_SOURCE", "pipeline": "$CI_PROJECT_NAME",
             "run_id": "$CI_PIPELINE_ID"}


def _gl(node: Node, variables: frozenset[str]) -> str:
    op = node[0]
    if op == "lit":
        value = node[1]
        if value is None:
            return "null"
        if isinstance(value, bool):
            raise Unsupported("boolean literals have no GitLab rules equivalent")
        return '"' + str(value).replace('"', '\\"') + '"'
    if op == "name":
        name = str(node[1])
        if name in _GL_NAMES:
            return _GL_NAMES[name]
        head, _, rest = name.partition(".")
        if head in ("vars", "env", "secrets", "matrix") and rest:
            return f"${rest}"
        if name in variables:
            return f"${name}"
        raise Unsupported(f"name {name!r} has no GitLab CI equivalent")
    if op == "not":
        inner = node[1]
        if inner[0] == "cmp" and inner[1] == "==":
            return f"{_gl(inner[2], variables)} != {_gl(inner[3], variables)}"
        raise Unsupported("`not` of anything but a comparison has no GitLab rules equivalent")
    if op in ("and", "or"):
        sym = "&&" if op == "and" else "||"
        return f"({_gl(node[1], variables)} {sym} {_gl(node[2], variables)})"
    if op == "cmp":
        if node[1] in ("==", "!=") and ("name", "ref") in (node[2], node[3]):
            other = node[3] if node[2] == ("name", "ref") else node[2]
            for prefix, var in (("refs/heads/", "$CI_COMMIT_BRANCH"), ("refs/tags/", "$CI_COMMIT_TAG")):
                if other[0] == "lit" and isinstance(other[1], str) and other[1].startswith(prefix):
                    return f"{var} {node[1]} " + _gl(("lit", other[1][len(prefix):]), variables)
            raise Unsupported("`ref` compares only with refs/heads/... or refs/tags/... in GitLab rules")
        if node[1] in ("==", "!="):
            return f"{_gl(node[2], variables)} {node[1]} {_gl(node[3], variables)}"
        raise Unsupported(f"operator {node[1]!r} has no GitLab rules equivalent")
    if op == "call":
        raise Unsupported("a status function inside a larger expression has no GitLab rules equivalent")
    raise Unsupported(f"{op} has no GitLab rules equivalent")


def condition_to_gitlab(node: Node, variables: frozenset[str]) -> tuple[str | None, str]:
    """An engine condition as a GitLab rule: (`if:` text or None, `when:`).

    A status function must stand alone or be one side of a top-level `and`.

    Raises:
        Unsupported: the condition has no rules equivalent.
    """
    when_of = {"success": "on_success", "failure": "on_failure", "always": "always"}
    calls: list[str] = []
    rest: list[Node] = []

    def split(n: Node) -> None:
        if n[0] == "and":
            split(n[1])
            split(n[2])
        elif n[0] == "call":
            calls.append(str(n[1]))
        else:
            rest.append(n)

    split(node)
    if len(calls) > 1 or (calls and calls[0] not in when_of):
        raise Unsupported("this combination of status functions has no GitLab rules equivalent")
    when = when_of[calls[0]] if calls else "on_success"
    if not rest:
        return None, when
    expr = rest[0]
    for more in rest[1:]:
        expr = ("and", expr, more)
    text = _gl(expr, variables)
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    return text, when
