"""The engine's one exception hierarchy.

Two families: the caller's input is wrong (fix the input and try again), or the
world failed (a process, a target, the store). Foreign exceptions (docker,
paramiko, kubernetes, httpx, sqlite3) are translated where they enter, once.

    CicdError
    ├── InputError                      your input is wrong; nothing was changed
    │   ├── SpecError                   a pipeline/deployment file is invalid (file:line:col + field path)
    │   ├── ExpressionError             an `if:` expression does not parse or uses an unknown name
    │   ├── CycleError                  the job graph has a cycle (carries the cycle)
    │   ├── NotFoundError               no such pipeline, run, job, deployment, plan
    │   ├── ConflictError               the operation clashes with one in progress
    │   └── TrustError                  the caller's trust level is too low (says which is needed)
    ├── InvalidTransition               a state machine was asked for an illegal move (a bug)
    └── WorldError                      the world failed
        ├── ExecutorError               a job's process could not be started or supervised
        ├── TargetError                 a deploy target (local, docker, ssh, kubernetes) failed
        ├── RouterError                 a traffic router (nginx, service selector) failed
        ├── HealthCheckError            a health probe could not be made
        └── StoreError                  the state store failed
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CicdError",
    "ConflictError",
    "CycleError",
    "ExecutorError",
    "ExpressionError",
    "HealthCheckError",
    "InputError",
    "InvalidTransition",
    "NotFoundError",
    "RouterError",
    "SpecError",
    "SpecIssue",
    "StoreError",
    "TargetError",
    "TrustError",
    "WorldError",
]


class CicdError(Exception):
    """Base of every error the engine raises on purpose."""


class InputError(CicdError):
    """The caller's input is wrong; nothing was changed."""


class SpecIssue:
    """One problem found in a spec file, with where it is."""

    __slots__ = ("column", "field", "file", "line", "message")

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None,
        column: int | None = None, field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.field = field

    def __str__(self) -> str:
        where = self.file or "<pipeline>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"

    def __repr__(self) -> str:
        return f"SpecIssue({str(self)!r})"


class SpecError(InputError):
    """A pipeline or deployment file is invalid. `issues` lists every problem found."""

    def __init__(self, issues: Sequence[SpecIssue] | str) -> None:
        if isinstance(issues, str):
            issues = [SpecIssue(issues)]
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class ExpressionError(InputError):
    """An `if:` expression does not parse, or names something unknown."""


class CycleError(InputError):
    """The job graph has a cycle; `cycle` lists it, first node repeated at the end."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__("dependency cycle: " + " -> ".join(self.cycle))


class NotFoundError(InputError):
    """No such pipeline, run, job, deployment or plan."""


class ConflictError(InputError):
    """The operation clashes with one already in progress."""


class TrustError(InputError):
    """The caller's trust level is too low for the operation."""


class InvalidTransition(CicdError):
    """A state machine was asked for a move its table does not allow."""


class WorldError(CicdError):
    """Something outside the caller's input failed."""


class ExecutorError(WorldError):
    """A job's process could not be started or supervised."""


class TargetError(WorldError):
    """A deploy target failed."""


class RouterError(WorldError):
    """A traffic router failed."""


class HealthCheckError(WorldError):
    """A health probe could not be made."""


class StoreError(WorldError):
    """The state store failed."""
