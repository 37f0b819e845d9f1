"""Where things live: SQL only in engine/store/, and no import against the layers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b", re.IGNORECASE | re.DOTALL)


def _sources(*parts: str) -> list[Path]:
    found: list[Path] = []
    for part in parts:
        path = ROOT / part
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return found


def _strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_sql_outside_the_store() -> None:
    store = ROOT / "engine" / "store"
    found = [f"{p.relative_to(ROOT)}:{line}" for p in _sources("engine", "server") if not p.is_relative_to(store)
             for line, text in _strings(p) if _SQL.search(text)]
    assert found == []


@pytest.mark.parametrize(("package", "forbidden"), [
    ("engine/spec", ("engine.build", "engine.pipeline", "engine.interop", "engine.deploy", "engine.store", "server")),
    ("engine/interop", ("engine.pipeline", "engine.deploy", "engine.store", "server")),
    ("engine/build", ("engine.pipeline", "engine.interop", "engine.deploy", "server")),
    ("engine/pipeline", ("server",)),
    ("engine/cli.py", ("server",)),
])
def test_packages_import_downward_only(package: str, forbidden: tuple[str, ...]) -> None:
    bad = [f"{p.relative_to(ROOT)}: {name}" for p in _sources(package) for name in sorted(_imports(p))
           if any(name == f or name.startswith(f + ".") for f in forbidden)]
    assert bad == []


def test_the_engine_command_line_does_not_load_the_server() -> None:
    text = (ROOT / "engine" / "cli.py").read_text()
    assert "server" not in re.findall(r"_EXTENSIONS = \((.*?)\)", text, re.DOTALL)[0]
