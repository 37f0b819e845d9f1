"""A small stdlib-only linter: syntax, unused imports, tabs, trailing spaces, long lines."""

import ast
import sys
from pathlib import Path

MAX = 100


def check(path: Path) -> list[str]:
    text = path.read_text()
    problems = []
    tree = ast.parse(text, filename=str(path))
    imported = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                imported[(alias.asname or alias.name).split(".")[0]] = node.lineno
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    used |= {n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    for name, line in imported.items():
        if name not in used:
            problems.append(f"{path}:{line}: unused import {name}")
    for no, line in enumerate(text.splitlines(), 1):
        if "\t" in line:
            problems.append(f"{path}:{no}: tab")
        if line != line.rstrip():
            problems.append(f"{path}:{no}: trailing whitespace")
        if len(line) > MAX:
            problems.append(f"{path}:{no}: line longer than {MAX}")
    return problems


def main(roots):
    problems = [p for root in roots for f in sorted(Path(root).rglob("*.py")) for p in check(f)]
    for p in problems:
        print(p)
    print(f"lint: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["."]))
