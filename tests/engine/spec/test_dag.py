from __future__ import annotations

import pytest

from engine.errors import CycleError
from engine.spec import dag


def test_topological_order_puts_dependencies_first() -> None:
    graph = {"c": ["a", "b"], "a": [], "b": ["a"], "d": []}
    order = dag.topological_order(graph)
    assert order.index("a") < order.index("b") < order.index("c")
    assert set(order) == set(graph)


def test_cycle_is_named() -> None:
    with pytest.raises(CycleError) as info:
        dag.topological_order({"a": ["b"], "b": ["c"], "c": ["a"]})
    assert info.value.cycle[0] == info.value.cycle[-1]
    assert set(info.value.cycle) == {"a", "b", "c"}


def test_critical_path_follows_the_longest_chain() -> None:
    graph = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    length, path = dag.critical_path(graph, {"a": 1, "b": 5, "c": 2, "d": 1})
    assert length == 7
    assert path == ["a", "b", "d"]


def test_transitive_deps() -> None:
    assert dag.transitive_deps({"a": [], "b": ["a"], "c": ["b"]}, "c") == {"a", "b"}


def test_critical_path_does_not_depend_on_the_order_nodes_are_listed_in() -> None:
    """Ties go to the greater name and zero-length work stays on the path: the same run read back in
    another order gives the same answer (insights reports it)."""
    graph = {"a": [], "b": [], "c": ["a", "b"], "z": ["c"]}
    durations = {"a": 2.0, "b": 2.0, "c": 0.0, "z": 1.0}
    forward = dag.critical_path(graph, durations)
    backward = dag.critical_path(dict(reversed(list(graph.items()))), durations)
    assert forward == backward == (3.0, ["b", "c", "z"])
