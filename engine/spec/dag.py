"""The job graph, pure: validate, order, and find the critical path. No I/O.

A graph is a mapping ``node -> dependencies``. Every function takes data and returns
data, so the scheduler, the spec checks and the insights share one definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from engine.errors import CycleError

__all__ = ["critical_path", "dependents", "find_cycle", "topological_order", "transitive_deps"]

Graph = Mapping[str, Sequence[str]]


def find_cycle(graph: Graph) -> list[str] | None:
    """A cycle as a list of nodes (first repeated at the end), or None. Unknown deps are ignored."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for root in graph:
        if colour[root] != white:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        colour[root] = grey
        while stack:
            node, i = stack[-1]
            deps = [d for d in graph[node] if d in graph]
            if i < len(deps):
                stack[-1] = (node, i + 1)
                dep = deps[i]
                if colour[dep] == grey:
                    return [*path[path.index(dep):], dep]
                if colour[dep] == white:
                    colour[dep] = grey
                    stack.append((dep, 0))
                    path.append(dep)
            else:
                colour[node] = black
                stack.pop()
                path.pop()
    return None


def topological_order(graph: Graph) -> list[str]:
    """Nodes ordered so each comes after its dependencies (stable: ties keep input order).

    Raises:
        CycleError: the graph has a cycle.
    """
    cycle = find_cycle(graph)
    if cycle:
        raise CycleError(cycle)
    indegree = {n: sum(1 for d in deps if d in graph) for n, deps in graph.items()}
    users = dependents(graph)
    ready = [n for n in graph if indegree[n] == 0]
    order: list[str] = []
    while ready:
        nxt: list[str] = []
        for n in ready:
            order.append(n)
            for u in users[n]:
                indegree[u] -= 1
                if indegree[u] == 0:
                    nxt.append(u)
        ready = nxt
    return order


def dependents(graph: Graph) -> dict[str, list[str]]:
    """Reverse edges: node -> nodes that depend on it."""
    out: dict[str, list[str]] = {n: [] for n in graph}
    for n, deps in graph.items():
        for d in deps:
            if d in out:
                out[d].append(n)
    return out


def transitive_deps(graph: Graph, node: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(node, ()))
    while todo:
        d = todo.pop()
        if d not in seen and d in graph:
            seen.add(d)
            todo.extend(graph[d])
    return seen


def critical_path(graph: Graph, durations: Mapping[str, float]) -> tuple[float, list[str]]:
    """The longest chain of dependent work: (its length in the durations' unit, its nodes in order).

    Ties go to the greater node name, and a zero-length dependency stays on the path, so the answer
    does not depend on the order the nodes are listed in (the same run read back twice gives the same
    path). A dependency on a name that is not a node counts as done at time zero.

    Raises:
        CycleError: the graph has a cycle.
    """
    best: dict[str, tuple[float, str | None]] = {}
    for n in topological_order(graph):
        prev = max((d for d in graph[n] if d in best), key=lambda d: (best[d][0], d), default=None)
        best[n] = (max(0.0, durations.get(n, 0.0)) + (best[prev][0] if prev else 0.0), prev)
    if not best:
        return 0.0, []
    end = max(best, key=lambda n: (best[n][0], n))
    path: list[str] = []
    node: str | None = end
    while node is not None:
        path.append(node)
        node = best[node][1]
    return best[end][0], path[::-1]


def roots(graph: Graph) -> Iterable[str]:
    return (n for n, deps in graph.items() if not deps)
