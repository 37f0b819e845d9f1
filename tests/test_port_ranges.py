"""No two suites that may run at once use the same fixed 127.0.0.1 port.

The suite runs on several pytest-xdist workers; a directory that starts services of its own stays
on one worker (tests/conftest.py `_ONE_WORKER`), and every other test module may run beside any
of them. Each suite's fixed ports and port ranges (`PortPool(low, high)`, `range(low, high)`,
literal numbers 18000-19999) are read from its source here: a port that two of them name is a
collision waiting for CI's scheduling (it happened twice: the reliability suite's nginx port and
the original design's site ports).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from tests.conftest import _ONE_WORKER

ROOT = Path(__file__).resolve().parent.parent
_RANGE_CALLS = {"PortPool": 1, "_Ports": 1, "range": 0}   # name -> 1 when its high end is included
_PORT = re.compile(r"(?<![\w.$])(1[89]\d{3})(?![\w.])")
_SPAN = range(18000, 20000)
# Numbers in that span that are not ports.
_NOT_PORTS = {
    "tests/reliability/test_attacks.py": {19000},   # day counts in a shadow file
}


def _suite(path: Path) -> str:
    where = path.relative_to(ROOT).as_posix()
    for group in _ONE_WORKER:
        if where == group or where.startswith(group + "/"):
            return group
    return where   # not grouped: may run beside anything, its own file is its own suite


def _ports(path: Path) -> set[int]:
    """Ports named in the code (not in comments or docstrings): range calls, numbers, and numbers
    inside strings (configuration written as YAML text)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and len(node.args) == 2:
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            low, high = node.args
            if name in _RANGE_CALLS and all(isinstance(a, ast.Constant) and a.value in _SPAN for a in node.args):
                assert isinstance(low, ast.Constant) and isinstance(high, ast.Constant)
                found.update(range(low.value, high.value + _RANGE_CALLS[name]))
                skip.update((id(low), id(high)))
        elif isinstance(node, ast.Constant) and id(node) not in skip:
            if isinstance(node.value, int) and not isinstance(node.value, bool) and node.value in _SPAN:
                found.add(node.value)
            elif isinstance(node.value, str):
                found.update(int(p) for p in _PORT.findall(node.value))
    return found - _NOT_PORTS.get(path.relative_to(ROOT).as_posix(), set())


def test_no_port_is_named_by_two_suites_that_may_run_at_once() -> None:
    users: dict[int, set[str]] = defaultdict(set)
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if "fixtures" in path.relative_to(ROOT).parts:
            continue
        for port in _ports(path):
            users[port].add(_suite(path))
    shared = {port: sorted(suites) for port, suites in sorted(users.items()) if len(suites) > 1}
    assert not shared, "ports named by suites that run side by side: " + "; ".join(
        f"{port}: {', '.join(suites)}" for port, suites in list(shared.items())[:10])
