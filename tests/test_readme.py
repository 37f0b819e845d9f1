"""README.md and the documents under docs/ that it links to, run as a reader would run them.

The convention (docs/ARCHITECTURE.md, "Tests and documentation"): blocks tagged sh, bash or
python run, in document order, in a copy of the repository, on the embedded defaults, as root
without a terminal; text, console, yaml and json blocks are shown only; an untagged block is an
error. The "Set up" section's two blocks install things and are tested by tests/test_setup.py;
this test starts from the state they leave: cicd-mcp on PATH (with the venv's python3) and the
example pipeline run once.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

REPO = Path(__file__).resolve().parents[1]
RUN = {"sh", "bash", "python"}
SHOWN = {"text", "console", "yaml", "json"}
SETUP = "Set up"

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
_HEADING = re.compile(r"^(#{1,6}) +(.+?) *$", re.M)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    lang: str
    code: str
    section: str

    def __str__(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line} ({self.lang})"


def blocks(doc: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, each with the heading it stands under."""
    text = doc.read_text(encoding="utf-8")
    headings = [(m.start(), m.group(2)) for m in _HEADING.finditer(_without_blocks(text))]
    out = []
    for m in _FENCE.finditer(text):
        section = next((title for start, title in reversed(headings) if start < m.start()), "")
        out.append(Block(doc, text.count("\n", 0, m.start()) + 1, m.group(1).strip(), m.group(2), section))
    return out


def _without_blocks(text: str) -> str:
    # Blanks code (a `# comment` in a shell block is no heading) but keeps every offset.
    return _FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def setup_blocks() -> list[Block]:
    return [b for b in blocks(REPO / "README.md") if b.section == SETUP]


def _links(doc: Path) -> list[str]:
    return _LINK.findall(_without_blocks(doc.read_text(encoding="utf-8")))


def _anchor(title: str) -> str:
    # GitHub's: lower case, punctuation dropped, spaces to hyphens.
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def documents() -> list[Path]:
    """README.md, then every Markdown file under docs/ that it links to, directly or not."""
    docs_dir = REPO / "docs"
    order, queue = [REPO / "README.md"], [REPO / "README.md"]
    while queue:
        doc = queue.pop(0)
        for link in _links(doc):
            target = link.split("#")[0]
            if not target or "://" in target:
                continue
            path = (doc.parent / target).resolve()
            if path.is_dir():
                path = path / "README.md"
            if path.suffix == ".md" and path.is_relative_to(docs_dir) and path.is_file() and path not in order:
                order.append(path)
                queue.append(path)
    return order


DOCUMENTS = documents()


def _id(doc: Path) -> str:
    return str(doc.relative_to(REPO))


# -- the shape of the documents -------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCUMENTS, ids=_id)
def test_every_block_is_tagged_run_or_shown(doc: Path) -> None:
    untagged = [str(b) for b in blocks(doc) if b.lang not in RUN | SHOWN]
    assert not untagged, f"tag these blocks {sorted(RUN)} (run) or {sorted(SHOWN)} (shown only): {untagged}"


@pytest.mark.parametrize("doc", DOCUMENTS, ids=_id)
def test_every_relative_link_points_into_the_repository(doc: Path) -> None:
    anchors = {_anchor(title) for _, title in _HEADING.findall(_without_blocks(doc.read_text()))}
    broken = []
    for link in _links(doc):
        if "://" in link or link.startswith("mailto:"):
            continue
        target, _, fragment = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists() or not path.is_relative_to(REPO):
            broken.append(link)
        elif not target and fragment not in anchors:
            broken.append(link)
    assert not broken, f"{_id(doc)}: links to nothing in the repository: {broken}"


def test_the_readme_links_its_architecture_and_the_docs_index() -> None:
    assert {REPO / "docs" / "ARCHITECTURE.md", REPO / "docs" / "README.md"} <= set(DOCUMENTS)
    assert "../shared" not in (REPO / "README.md").read_text()


def test_set_up_is_two_commands() -> None:
    found = setup_blocks()
    assert [b.lang for b in found] == ["sh", "sh"], [str(b) for b in found]
    install, tests = (b.code.strip() for b in found)
    assert "\n" not in install and "\n" not in tests
    # This test starts where the first command leaves the reader.
    assert install.endswith("&& cicd-mcp run examples/pipeline.yaml")
    assert tests == "bash scripts/test.sh"


# -- running them -----------------------------------------------------------------------------------


def _tracked_files() -> list[str]:
    """The files a fresh clone has (plus new ones not yet committed, none that git ignores)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True, timeout=60)
    return [f for f in out.stdout.decode().split("\0") if f and (REPO / f).is_file()]


def copy_of_the_repository(dest: Path) -> Path:
    for name in _tracked_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    return dest


@dataclass
class Reader:
    clone: Path
    env: dict[str, str]
    scratch: Path

    def run(self, block: Block) -> subprocess.CompletedProcess[str]:
        if block.lang == "python":
            script = self.scratch / f"block_{block.doc.stem}_{block.line}.py"
            script.write_text(block.code)
            argv = ["python3", str(script)]
        else:
            argv = ["bash", "-euo", "pipefail", "-c", block.code]
        return subprocess.run(argv, cwd=self.clone, env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=600)

    def live_instances(self, *, stop: bool = False) -> list[str]:
        """Instances of every environment deployed in the reader's workspace (stopped first if `stop`)."""
        out = self.run(Block(REPO / "README.md", 0, "python", _LIVE.format(stop=stop), ""))
        assert out.returncode == 0, out.stderr
        return out.stdout.split()


_LIVE = """
import asyncio
from engine import DeploymentOrchestrator
from engine.store import deployments

orch = DeploymentOrchestrator()


async def main():
    for name in deployments.environment_names(orch.store):
        env = orch.get_environment(name)
        target = orch.target_for(env)
        for instance in await target.instances(env.service_name):
            if {stop}:
                await target.stop(instance)
            else:
                print(f"{{env.name}}:{{instance.slot}}")


asyncio.run(main())
"""


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reader]:
    """A reader who has just run the README's set-up: in a fresh clone, cicd-mcp and the venv's
    python3 first on PATH, the example pipeline run once, state on the embedded defaults."""
    base = tmp_path_factory.mktemp("reader")
    clone = copy_of_the_repository(base / "cicd-mcp")
    venv_bin = base / "venv-bin"  # what `. .venv/bin/activate` gives: this interpreter, and cicd-mcp
    venv_bin.mkdir()
    for name, target in (("python3", ""), ("python", ""), ("cicd-mcp", " -m server")):
        shim = venv_bin / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}"{target} "$@"\n')
        shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(clone),
               PIPELINE_WORKSPACE=str(base / "workspace"))
    scratch = base / "scratch"
    scratch.mkdir()
    r = Reader(clone, env, scratch)
    first_run = r.run(Block(REPO / "README.md", 0, "sh", "cicd-mcp run examples/pipeline.yaml", SETUP))
    assert first_run.returncode == 0, first_run.stdout + first_run.stderr
    yield r
    # A document that deploys also shows how to stop it; should it fail before then, stop what it
    # started rather than leave servers behind.
    r.live_instances(stop=True)


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCUMENTS, ids=_id)
def test_the_examples_run_as_written(doc: Path, reader: Reader) -> None:
    runnable = [b for b in blocks(doc) if b.lang in RUN and b.section != SETUP]
    for block in runnable:
        out = reader.run(block)
        assert out.returncode == 0, (
            f"{block} exited {out.returncode}\n--- block ---\n{block.code}\n--- stdout ---\n{out.stdout[-4000:]}"
            f"\n--- stderr ---\n{out.stderr[-4000:]}"
        )
    # What a document deploys, it also shows how to stop.
    assert reader.live_instances() == [], f"{_id(doc)} leaves deployed instances running"


def test_the_claude_code_command_starts_the_server_from_any_directory(tmp_path: Path) -> None:
    """The Claude Code block is shown only (`claude` is not ours to install); what it registers is
    checked here: the command after `--`, with $PWD and $(command -v cicd-mcp) expanded as the shell
    expands them when the reader types it in the checkout, started from another directory."""
    (block,) = [b for b in blocks(REPO / "README.md") if b.section == "Claude Code" and "claude mcp add" in b.code]
    line = next(ln for ln in block.code.splitlines() if ln.startswith("claude mcp add cicd "))
    command = line.split(" -- ", 1)[1]
    assert command == '"$(command -v cicd-mcp)" serve --policy "$PWD/trust_policy.yaml"', command
    policy = REPO / "trust_policy.yaml"
    args = ["-m", "server", "serve", "--policy", str(policy)]  # `cicd-mcp` is `python -m server`
    launch_dir = tmp_path / "elsewhere"
    launch_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PIPELINE_WORKSPACE=str(tmp_path / "ws"), PYTHONPATH=str(REPO))

    async def tools() -> list[str]:
        params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=launch_dir)
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                return [t.name for t in (await session.list_tools()).tools]

    assert "run_pipeline" in anyio.run(tools)
