"""Plain data of a build: the plan (steps to run), what each step did, and the result."""

from __future__ import annotations

import shlex
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BuildArtifact",
    "BuildPlan",
    "BuildResult",
    "BuildStatus",
    "BuildStep",
    "CommandRecord",
    "Finding",
]


class BuildStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class Finding(BaseModel):
    """One thing found wrong (or worth knowing) about a project before a build runs."""

    model_config = ConfigDict(frozen=True)

    severity: Literal["error", "warning"] = Field(description="`error` stops the build; `warning` does not.")
    code: str = Field(description="Stable identifier, e.g. `toolchain-missing`, `no-lockfile`.")
    message: str = Field(description="What is wrong and how to fix it.")
    path: str | None = Field(default=None, description="The file the finding is about, when there is one.")

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.severity}: {where}{self.message} [{self.code}]"


class BuildStep(BaseModel):
    """One command of a build: an argument list, never a shell string."""

    model_config = ConfigDict(frozen=True)

    argv: tuple[str, ...] = Field(description="The program and its arguments.")
    env: dict[str, str] = Field(default_factory=dict, description="Variables set on top of the environment.")
    description: str = Field(default="", description="Why this step runs.")

    def as_command(self) -> list[str]:
        """The step as one argument list; environment overrides go through `env(1)`."""
        if not self.env:
            return list(self.argv)
        return ["env", *(f"{k}={v}" for k, v in sorted(self.env.items())), *self.argv]

    def display(self) -> str:
        """One log line; an inline script shows as its size (the full argv is in the CommandRecord)."""
        return shlex.join(
            f"<script: {arg.count(chr(10)) + 1} lines>" if "\n" in arg else arg for arg in self.as_command()
        )


class BuildPlan(BaseModel):
    """What a language's standard build will do for one project (decided without running anything)."""

    model_config = ConfigDict(frozen=True)

    language: str
    steps: tuple[BuildStep, ...]
    artifact_kinds: dict[str, str] = Field(
        default_factory=dict,
        description="File name suffix -> artifact kind (`.whl` -> wheel); a name matching none is `binary`.",
    )
    expects_artifacts: bool = True
    warnings: tuple[str, ...] = ()


class CommandRecord(BaseModel):
    """A command that was run, and how it ended."""

    argv: list[str]
    env: dict[str, str] = Field(default_factory=dict, description="Overrides set for this command.")
    cwd: str
    exit_code: int | None = Field(description="None when the command was killed (timeout, cancel).")
    duration: float = Field(description="Seconds.")
    started_at: float = Field(description="Unix time.")


class BuildArtifact(BaseModel):
    path: str = Field(description="Absolute path of the file.")
    kind: str = Field(description="wheel, sdist, npm-package, binary.")
    size: int = Field(description="Bytes.")
    sha256: str


class BuildResult(BaseModel):
    """The outcome of `orchestrate_build_pipeline`."""

    status: BuildStatus
    language: str = Field(description="The language built (the detected one when `auto` was asked).")
    project_path: str
    output_dir: str
    artifacts: list[BuildArtifact] = Field(default_factory=list)
    commands: list[CommandRecord] = Field(default_factory=list, description="Every command run, in order.")
    log_path: str = Field(description="The build log: every output line, timestamped, as produced.")
    log_tail: str = Field(default="", description="The last lines of the log.")
    duration: float = Field(description="Seconds, preflight checks included.")
    findings: list[Finding] = Field(default_factory=list, description="What the preflight checks found.")
    warnings: list[str] = Field(default_factory=list)
    reason: str | None = Field(default=None, description="Why the build did not succeed.")

    @property
    def ok(self) -> bool:
        return self.status == BuildStatus.SUCCEEDED
