"""A GitHub Actions workflow run by us vs the same steps run by hand as one plain bash script.

The workflow is one job of the shape most Python repositories have (checkout, setup-python,
pip install of the project, a few checks), on a copy of the tiny project in
tests/fixtures/projects/python made a git repository. "By hand" is what a developer would
type: a venv of the same interpreter, then the steps' commands in order, in one `bash -e`.
Both run in the same process tree, alternately, `--repeat` times; the figure is the ratio of
the medians (goal: <= 1.2).

    python3 bench/workflows_overhead.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "tests" / "fixtures" / "projects" / "python"
CLI = [sys.executable, "-m", "engine.cli"]

WORKFLOW = """\
name: overhead
on: push
jobs:
  test:
    runs-on: ubuntu-latest
    env:
      PYTHONDONTWRITEBYTECODE: "1"
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install
        run: |
          python -m pip install -q hatchling editables
          python -m pip install -q --no-deps --no-build-isolation -e .
      - name: Compile
        run: python -m compileall -q src
      - name: Import
        run: python -c "import hello_py; assert hello_py.greet('ci') == 'hello, ci'"
      - name: Version
        run: |
          for PY in a b c; do echo "${PY}"; done
          python --version
"""

BY_HAND = """\
set -e
python3.11 -m venv "$VENV"
export PATH="$VENV/bin:$PATH" PYTHONDONTWRITEBYTECODE=1
python -m pip install -q hatchling editables
python -m pip install -q --no-deps --no-build-isolation -e .
python -m compileall -q src
python -c "import hello_py; assert hello_py.greet('ci') == 'hello, ci'"
for PY in a b c; do echo "${PY}"; done
python --version
"""


def _repo(tmp: Path) -> Path:
    repo = tmp / "repo"
    shutil.copytree(PROJECT, repo)
    flows = repo / ".github" / "workflows"
    flows.mkdir(parents=True)
    (flows / "ci.yml").write_text(WORKFLOW)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], cwd=repo, check=True)
    return repo


def _ours(repo: Path, state: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([*CLI, "--workspace", str(state), "run", str(repo / ".github" / "workflows" / "ci.yml"),
                           "-q"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the workflow failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return elapsed


def _by_hand(repo: Path, tmp: Path, env: dict[str, str]) -> float:
    work = tmp / "by-hand"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(repo, work, ignore=shutil.ignore_patterns(".git"))
    start = time.perf_counter()
    subprocess.run(["bash", "-c", BY_HAND], cwd=work, env={**env, "VENV": str(tmp / "hand-venv")},
                   capture_output=True, check=True)
    elapsed = time.perf_counter() - start
    shutil.rmtree(tmp / "hand-venv", ignore_errors=True)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wf-overhead-"))
    try:
        repo = _repo(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PIP_REQUIRE_VIRTUALENV": "1", "HOME": str(tmp / "home")}
        (tmp / "home").mkdir()
        ours: list[float] = []
        hand: list[float] = []
        for i in range(args.repeat):
            ours.append(_ours(repo, tmp / f"state-{i}", env))
            hand.append(_by_hand(repo, tmp, env))
            print(f"run {i + 1}: ours {ours[-1]:.2f}s  by hand {hand[-1]:.2f}s", flush=True)
        o, h = statistics.median(ours), statistics.median(hand)
        print(f"median: ours {o:.2f}s, by hand {h:.2f}s, ratio x{o / h:.2f} (goal <= x1.2)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
