"""The GitHub Actions expression language (pure): values, functions, matrix expansion, env files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.interop._gha_runtime import _read_kv, decode_payload, encode_payload, match_version
from engine.interop._ghexpr import ExpressionError, contexts_used, evaluate, interpolate, value_of
from engine.interop.github_import import expand_matrix

CTX: dict[str, Any] = {
    "github": {"ref": "refs/heads/main", "event_name": "push", "event": {"inputs": {"type": "minor"}}},
    "matrix": {"os": "ubuntu-latest", "python": "3.12", "go": 22, "platform": "ubuntu"},
    "env": {"MODE": "job"},
    "steps": {"s1": {"outputs": {"any_changed": "false"}}},
    "needs": {"build": {"result": "success", "outputs": {"versions": '["3.12", "3.13"]'}}},
    "inputs": {}, "runner": {"os": "Linux"},
}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("startsWith(github.ref, 'refs/heads/')", True),
        ("${{ endsWith(github.ref, 'MAIN') }}", True),                       # case-insensitive, as GitHub
        ("contains(fromJSON('[\"a\", \"b\"]'), 'b')", True),
        ("contains('Hello', 'ell')", True),
        ("format('{0}-{1}{{x}}', matrix.os, 3)", "ubuntu-latest-3{x}"),
        ("join(fromJSON(needs.build.outputs.versions), ' ')", "3.12 3.13"),
        ("matrix.missing || 'ubuntu-latest'", "ubuntu-latest"),
        ("matrix.platform == 'macOS' && matrix.go < 24 && 'x' || ''", ""),  # cobra's job env, line 78
        ("matrix.go < 24 && 'old' || 'new'", "old"),
        ("fromJSON('{\"minor\": \"--minor\"}')[github.event.inputs.type]", "--minor"),  # axios pr.yml:38
        ("steps.s1.outputs.any_changed == 'false'", True),
        ("1 == '1'", True),
        ("'abc' == 'ABC'", True),
        ("null == ''", True),                                # both coerce to 0
        ("!matrix.missing", True),
        ("github.event.inputs.*", ["minor"]),
        ("toJSON(matrix.os)", '"ubuntu-latest"'),
        ("0x10 == 16", True),
    ],
)
def test_expressions_evaluate_as_github_does(text: str, value: Any) -> None:
    assert evaluate(text, CTX) == value


def test_interpolation_writes_values_as_text() -> None:
    assert interpolate("py${{ matrix.python }} on ${{ runner.os }} ${{ true }} ${{ 3 }}", CTX) == \
        "py3.12 on Linux true 3"
    # A whole-string expression keeps its type: a matrix axis from fromJSON stays a list.
    assert value_of("${{ fromJSON('[1, 2]') }}", CTX) == [1, 2]
    assert value_of({"a": ["${{ matrix.os }}"]}, CTX) == {"a": ["ubuntu-latest"]}


def test_status_functions_and_hashfiles_come_from_the_caller() -> None:
    calls = {"success": lambda: False, "failure": lambda: True, "hashfiles": lambda *p: "h:" + ",".join(p)}
    assert evaluate("failure() && hashFiles('a', 'b')", CTX, calls) == "h:a,b"
    assert contexts_used("always() && needs.a.result == 'success'", condition=True) == {"always()", "needs"}
    assert contexts_used("key-${{ hashFiles('**/go.sum') }}-${{ runner.os }}") == {"hashfiles()", "runner"}


@pytest.mark.parametrize("text", ["secrets.X == ", "foo(", "'unterminated", "a ? b"])
def test_invalid_expressions_raise(text: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate(text, {"secrets": {}, "a": 1, "b": 2})


def test_unknown_context_and_function_raise_with_what_is_known() -> None:
    with pytest.raises(ExpressionError, match="`vars` is not available"):
        evaluate("vars.X", {"github": {}})
    with pytest.raises(ExpressionError, match="function nope"):
        evaluate("nope()", {})


def test_matrix_expansion_exclude_then_include_as_documented() -> None:
    # GitHub's documented example: include adds to matching combinations, else makes its own.
    matrix = {
        "fruit": ["apple", "pear"], "animal": ["cat", "dog"],
        "include": [{"color": "green"}, {"color": "pink", "animal": "cat"}, {"fruit": "apple", "shape": "circle"},
                    {"fruit": "banana"}, {"fruit": "banana", "animal": "cat"}],
    }
    assert expand_matrix(matrix) == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]
    excluded = expand_matrix({"os": ["ubuntu", "windows"], "py": ["3.8", "3.12"],
                              "exclude": [{"os": "windows", "py": "3.8"}]})
    assert excluded == [{"os": "ubuntu", "py": "3.8"}, {"os": "ubuntu", "py": "3.12"},
                        {"os": "windows", "py": "3.12"}]
    # include-only: one combination per entry (click tests.yaml)
    assert expand_matrix({"include": [{"python": "3.13"}, {"python": "3.12", "os": "windows-latest"}]}) == [
        {"python": "3.13"}, {"python": "3.12", "os": "windows-latest"}]


def test_env_and_output_files_are_read_as_github_writes_them(tmp_path: Path) -> None:
    f = tmp_path / "out"
    f.write_text("a=1\nmulti<<EOF\nline 1\nline=2\nEOF\nb=x=y\n")
    assert _read_kv(f) == {"a": "1", "multi": "line 1\nline=2", "b": "x=y"}


@pytest.mark.parametrize(
    ("spec", "chosen"),
    [("3.12", "3.12.1"), ("3.x", "3.13.0"), (">=3.10", "3.13.0"), (">=3.9,<3.12", "3.11.7"), ("3", "3.13.0"),
     ("3.14", None), ("^1.19", None), ("3.11.7", "3.11.7"), ("~3.10", "3.13.0"), ("20.x", None)],
)
def test_setup_version_specs_pick_the_newest_installed_match(spec: str, chosen: str | None) -> None:
    assert match_version(spec, ["3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0"]) == chosen


def test_job_payload_round_trips_without_shell_or_interpolation_characters() -> None:
    data = {"steps": [{"run": 'echo "${PY}" $HOME ${{ matrix.x }}'}], "n": 1}
    text = encode_payload(data)
    assert decode_payload(text) == data
    assert not set(text) - set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
