from __future__ import annotations

import pytest

from engine.errors import ExpressionError
from engine.spec.expr import parse_condition

NAMES = {"branch": "main", "event": "push", "matrix.py": "3.12", "PY": "python3", "count": "3"}
OK = {"success": True, "failure": False, "always": True, "cancelled": False}


@pytest.mark.parametrize(("text", "expected"), [
    ("branch == 'main'", True),
    ("branch != 'main'", False),
    ("branch == 'main' and event == 'push'", True),
    ("branch == 'dev' || event == 'push'", True),
    ("not (branch == 'main')", False),
    ("!(branch == 'dev')", True),
    ("event in ['push', 'pull_request']", True),
    ("event not in ['push']", False),
    ("matrix.py == '3.12'", True),
    ("count >= 3 and count < 4", True),
    ("count == 3", True),
    ("'ai' in branch", True),
    ("success() && branch == 'main'", True),
    ("failure()", False),
    ("always()", True),
    ("true", True),
    ("null == null", True),
    ("startsWith(branch, 'ma')", True),
    ("endsWith(branch, 'IN')", True),
    ("contains(event, 'us') && !contains(branch, 'dev')", True),
    ("startsWith(matrix.py, '2')", False),
])
def test_evaluates(text: str, expected: bool) -> None:
    cond = parse_condition(text, ["branch", "event", "PY", "count"], prefixes=("matrix.",))
    assert cond.evaluate(NAMES, OK) is expected


@pytest.mark.parametrize(("text", "message"), [
    ("branch = 'main'", "unexpected character '='"),
    ("branch ==", "unexpected"),
    ("(branch == 'x'", r"expected '\)'"),
    ("__import__('os')", "unknown function"),
    ("os.system", "unknown name"),
    ("", "empty"),
    ("x" * 3000, "longer than"),
    ("startsWith(branch)", "takes 2 arguments"),
    ("contains(nope, 'x')", "unknown name 'nope'"),
])
def test_refuses(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        parse_condition(text, ["branch"], prefixes=("matrix.",))


def test_status_functions_are_noticed() -> None:
    assert parse_condition("always()", []).uses_status
    assert not parse_condition("branch == 'x'", ["branch"]).uses_status
