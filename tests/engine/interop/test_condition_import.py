"""A job-level `if:` imported from GitHub Actions means, in the engine, what GitHub's evaluator says.

Each expression is evaluated twice on the same values: by `_ghexpr` (GitHub's semantics, what the
job runtime uses) and, after `parse_github` + `github_to_engine`, by the engine's condition
language. Their truth must agree (precedence, `!`, `contains`, functions' case).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from engine.interop._expr import GithubNames, Unsupported, github_to_engine, parse_github
from engine.interop._ghexpr import evaluate, truthy
from engine.spec.expr import parse_condition

EXPRESSIONS = [
    "github.event_name == 'push'",
    "github.ref == 'refs/heads/main' && github.event_name != 'pull_request'",
    "!contains(github.ref, 'release') || github.event_name == 'push'",
    "!(github.event_name == 'push')",
    "${{ startsWith(github.ref, 'refs/tags/') }}",
    "StartsWith(github.ref_name, 'ma') && endsWith(github.ref_name, 'in')",
    "matrix.python-version == '3.12' || matrix.python-version == 3.13",
    "env.DEPLOY == 'yes' && (github.event_name == 'push' || github.event_name == 'workflow_dispatch')",
    "success() && github.ref_name == 'main'",
    "always()",
    "!env.DEPLOY == 'yes'",   # GitHub compares `!env.DEPLOY` (a boolean) with 'yes': never equal
]
VALUES = [
    {"event": "push", "branch": "main", "py": "3.12", "deploy": "yes"},
    {"event": "pull_request", "branch": "feature/release", "py": "3.13", "deploy": "no"},
    {"event": "workflow_dispatch", "branch": "main", "py": "3.11", "deploy": "yes"},
]


def _github(v: dict[str, str]) -> dict[str, Any]:
    return {"github": {"event_name": v["event"], "ref": f"refs/heads/{v['branch']}", "ref_name": v["branch"]},
            "matrix": {"python-version": v["py"]}, "env": {"DEPLOY": v["deploy"]}}


def _engine(v: dict[str, str]) -> dict[str, Any]:
    return {"event": v["event"], "ref": f"refs/heads/{v['branch']}", "branch": v["branch"],
            "matrix.python_version": v["py"], "vars.DEPLOY": v["deploy"]}


@pytest.mark.parametrize(("expression", "values"), list(itertools.product(EXPRESSIONS, VALUES)))
def test_an_imported_condition_decides_as_github_does(expression: str, values: dict[str, str]) -> None:
    status = {"success": True, "always": True, "failure": False, "cancelled": False}
    functions = {name: (lambda truth=truth: truth) for name, truth in status.items()}
    expected = truthy(evaluate(expression.removeprefix("${{").removesuffix("}}"), _github(values), functions))
    names = GithubNames(matrix={"python-version": "python_version"})
    text = github_to_engine(parse_github(expression, names))
    condition = parse_condition(text, ["event", "ref", "branch"], prefixes=("matrix.", "vars."))
    assert condition.evaluate(_engine(values), status) == expected, text


@pytest.mark.parametrize(("expression", "why"), [
    ("github.event.pull_request.draft == false", "github.event.pull_request.draft"),
    ("matrix.os == 'ubuntu'", "no matrix key 'os'"),
    ("fromJSON(env.X)", r"function fromjson\(\) is not supported"),
    ("github.event_name ==", "unexpected 'end'"),
])
def test_what_has_no_engine_equivalent_is_refused_with_the_reason(expression: str, why: str) -> None:
    with pytest.raises(Unsupported, match=why):
        parse_github(expression, GithubNames(matrix={"python-version": "python_version"}))
