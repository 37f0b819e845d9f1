"""The import graph of engine/ and server/: no circles, and packages import downward only.

Read from the source with `ast`, nothing imported. An import is an `import` statement wherever it
stands (module level, in a function, under TYPE_CHECKING) or `importlib.import_module("...")`.
Importing `a.b.c` also runs `a/__init__` and `a/b/__init__`, so those are edges too, except the
importer's own packages (already being imported when it runs).

A string that names a module (`"engine.deploy.targets.local:LocalTarget"` in a registry,
`{"Name": "package.module"}` in lazy exports, a list of modules to load) is a dependency too,
and counts for the direction rules; not for circles, because a lazy registry in `base.py` that
names the implementations importing `base.py` is the registry pattern, not a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "server")

# Edges that work in progress elsewhere removes. Each is named so that the test turns strict
# the moment it goes: an edge listed here that no longer exists fails the test.
EXPECTED: dict[tuple[str, str], str] = {}

Graph = dict[str, set[str]]
Edges = dict[str, dict[str, bool]]   # importer -> {module: by name only}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _known(dotted: str) -> str | None:
    """The project module `dotted` names (a name inside a module counts as the module)."""
    modules = _modules()
    while dotted:
        if dotted in modules:
            return dotted
        dotted = dotted.rpartition(".")[0]
    return None


def _targets(name: str, path: Path) -> Iterator[tuple[str, bool]]:
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, False) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from a.b import c` imports the module a.b.c when there is one.
            yield from ((f"{module}.{alias.name}", False) for alias in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.args[0].value, False
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.partition(":")[0]
            if text.startswith(tuple(f"{p}." for p in PACKAGES)) and text.replace(".", "").replace("_", "").isalnum():
                yield text, True


def _edges(name: str, path: Path) -> dict[str, bool]:
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    out: dict[str, bool] = {}
    for target, by_name in _targets(name, path):
        found = _known(target)
        if found is None:
            continue
        parts = found.split(".")
        for i in range(1, len(parts) + 1):
            step = ".".join(parts[:i])
            if step != name and step not in own:
                out[step] = out.get(step, True) and by_name
    return out


@cache
def _all_edges() -> Edges:
    return {name: _edges(name, path) for name, path in _modules().items()}


def graph(*, by_name: bool) -> Graph:
    """Imports only, or (`by_name`) every dependency including modules named in strings."""
    return {src: {dst for dst, named in dsts.items() if by_name or not named} for src, dsts in _all_edges().items()}


def _without_expected(g: Graph) -> Graph:
    return {src: {dst for dst in dsts if (src, dst) not in EXPECTED} for src, dsts in g.items()}


def cycles(g: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def _show(g: Graph, component: list[str]) -> str:
    inside = set(component)
    return "; ".join(f"{src} -> {dst}" for src in component for dst in sorted(g[src] & inside))


def test_the_graph_is_read() -> None:
    g = graph(by_name=False)
    assert {"server.app", "server.gate", "engine.cli", "engine.pipeline.runner"} <= set(g)
    assert "server.state" in g["server.gate"] and "engine.store" in g["server.state"]
    # An import inside a function counts; a module named in a string counts as a dependency only.
    assert "engine.pipeline.manager" in g["server.state"]
    assert "server.cli" not in g["server"] and "server.cli" in graph(by_name=True)["server"]


def test_no_import_circles() -> None:
    g = _without_expected(graph(by_name=False))
    found = cycles(g)
    assert not found, "import circles:\n" + "\n".join(_show(g, c) for c in found)


def test_engine_never_imports_the_server() -> None:
    g = _without_expected(graph(by_name=True))
    upward = sorted(f"{src} -> {dst}" for src, dsts in g.items() if src.startswith("engine")
                    for dst in dsts if dst.startswith("server"))
    assert not upward, upward


def test_deploy_and_rollback_do_not_import_pipelines() -> None:
    g = _without_expected(graph(by_name=True))
    upward = sorted(f"{src} -> {dst}" for src, dsts in g.items()
                    if src.startswith(("engine.deploy", "engine.rollback"))
                    for dst in dsts if dst == "engine.pipeline" or dst.startswith("engine.pipeline."))
    assert not upward, upward


def test_expected_edges_still_exist() -> None:
    """An edge listed in EXPECTED that is gone must leave the list, so the checks above turn strict."""
    g = graph(by_name=True)
    stale = sorted(f"{src} -> {dst} ({why})" for (src, dst), why in EXPECTED.items() if dst not in g.get(src, ()))
    assert not stale, "remove from EXPECTED: " + "; ".join(stale)


def test_cycles_are_found() -> None:
    g: Graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
