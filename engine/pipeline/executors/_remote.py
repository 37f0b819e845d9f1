"""What the executors that run a job on another machine (ssh, kubernetes) share: the job's
environment as that machine should see it, and artifact globs as shell words."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from engine.pipeline.executors.base import JobCommand

__all__ = ["artifact_lister", "remote_env"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def remote_env(command: JobCommand, remote_ws: str) -> dict[str, str]:
    """What the job's environment adds to the other machine's: the values the runner set, not this
    host's own (a local PATH or HOME means nothing there); paths into the local workspace point at
    `remote_ws`."""
    local_ws = str(command.workspace)
    out: dict[str, str] = {}
    for key, value in command.env.items():
        if not _ENV_NAME.match(key) or os.environ.get(key) == value and not _is_runner_name(key):
            continue
        if value == local_ws or value.startswith(local_ws + "/"):
            value = remote_ws + value[len(local_ws):]
        out[key] = value
    return out


def _is_runner_name(key: str) -> bool:
    """A variable the runner always sets for a job (sent even when this host has the same value)."""
    return key in ("CI", "CICD") or key.startswith("CICD_")


def _glob_word(pattern: str) -> str:
    """`pattern` as an unquoted shell word whose only special characters are the glob's own."""
    return "".join(c if c.isalnum() or c in "*?[]/._-" else "\\" + c for c in pattern)


def artifact_lister(patterns: Sequence[str]) -> str:
    """A shell loop printing the regular files (one per line) that the artifact globs match from the
    current directory: a matched directory gives the files under it; symlinks are left out, as the
    runner leaves out links that leave the workspace. Run it with bash -O globstar -O nullglob for `**`."""
    words = " ".join(_glob_word(p) for p in patterns)
    return (f"for m in {words}; do "
            'if [ -d "$m" ] && [ ! -L "$m" ]; then find "$m" -type f; '
            'elif [ -f "$m" ] && [ ! -L "$m" ]; then printf "%s\\n" "$m"; fi; done')
