"""The Executor seam: what runs one job's commands, wherever they run.

The runner hands an executor a `JobCommand` (the job's interpolated commands, or an exact argv,
with its environment, working directory and limits) and the job's `LogWriter`. The executor
starts the commands, streams their output to the writer, waits for the end and returns a
`CommandResult`. When the awaiting task is cancelled (job timeout, cancel_run, fail fast,
pipeline timeout), the executor kills what it started before the cancellation goes on up.

Recovery: as soon as a job runs, the executor hands the runner a recovery record (plain JSON
data, opaque to the runner) that the runner stores with the executor's name. When a runner
dies, the next start asks the executor of that name to `recover` the record: kill what the
dead runner left running.

`EXECUTORS` maps a kind (a job's `runs_on:`) to a factory, imported on first use.
`FakeExecutor` plays scripted outcomes for scheduler tests, with no process at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio

from engine._clock import Clock, SystemClock
from engine._registry import LazyRegistry
from engine.pipeline.logs import LogWriter

__all__ = [
    "EXECUTORS",
    "CommandResult",
    "Executor",
    "FakeExecutor",
    "FakeOutcome",
    "JobCommand",
    "OnStart",
    "RecoveryRecord",
    "make_executor",
]

RecoveryRecord = dict[str, Any]
"""What an executor needs to kill a job's leftovers after its runner died (JSON-serialisable)."""

OnStart = Callable[[RecoveryRecord], None]


@dataclass(frozen=True)
class JobCommand:
    """One attempt of a job, as the runner hands it over.

    `commands` are the job's command lines; an executor runs them in order with `shell` and
    stops at the first failure. Operator values are never pasted into them: a `${NAME}` the
    runner resolved is left as a reference to an environment variable it set in `env`.
    `argv`, when given, is run as it is, without a shell.

    `home` is a writable directory of the job's own (its HOME where the executor isolates
    it); `network` False asks for no network; `image` and `services` are for executors that
    run containers (`services` as (image, alias) pairs).
    """

    job: str
    commands: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    workspace: Path
    shell: str = "bash"
    argv: tuple[str, ...] | None = None
    timeout: float | None = None         # seconds; the runner enforces it, an executor may pass it on
    artifacts: tuple[str, ...] = ()      # globs (relative to cwd) the runner collects after success
    run_id: str = ""
    home: Path | None = None             # the job's own HOME (sandbox)
    network: bool = True
    image: str | None = None             # for executors that run containers (docker, kubernetes)
    services: tuple[tuple[str, str], ...] = ()   # (image, alias) beside the job (docker)
    resources: Mapping[str, str] = field(default_factory=dict)   # cpu, memory (Kubernetes quantities)


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None           # None when the commands could not be started
    cpu_user: float = 0.0           # seconds
    cpu_system: float = 0.0         # seconds
    peak_rss_kb: int | None = None   # None: not measured
    infrastructure_error: str | None = None   # could not start or supervise the commands
    signal: int | None = None       # killed by this signal


class Executor(Protocol):
    """Runs one job's commands. See the module docstring for the contract."""

    name: str

    def set_capacity(self, workers: int) -> None:
        """The run may have up to `workers` jobs on this executor at once."""
        ...

    async def prepare(self, command: JobCommand) -> None:
        """Make the job's workspace (filled by the runner on this host) usable where the job runs.

        Raises:
            OSError, ExecutorError: the workspace cannot be made ready (an infrastructure failure).
        """
        ...

    async def run(self, command: JobCommand, log: LogWriter, on_start: OnStart | None = None) -> CommandResult:
        """Start the commands, stream their output to `log`, wait for them to end.

        `on_start(record)` is called once they run, with the recovery record (possibly from a
        worker thread). Cancelling the caller kills them; the cancellation is re-raised.
        """
        ...

    def recover(self, record: RecoveryRecord) -> bool:
        """Kill what a job left running when its runner died; True when something was killed."""
        ...


EXECUTORS: LazyRegistry[Callable[..., Executor]] = LazyRegistry("executor", {
    "sandbox": "engine.pipeline.executors.sandbox:SandboxExecutor",
    "local": "engine.pipeline.executors.local:LocalExecutor",
    "docker": "engine.pipeline.executors.docker:DockerExecutor",
    "ssh": "engine.pipeline.executors.ssh:SSHExecutor",
    "kubernetes": "engine.pipeline.executors.kubernetes:KubernetesExecutor",
})
"""Executor kind (a job's `runs_on:`) -> factory. engine.spec.model.EXECUTOR_KINDS names the same kinds.
A kind may carry an option after a colon (`ssh:<pool>`), passed to the factory."""


def make_executor(kind: str) -> Executor:
    """A new executor of `kind` (`name` or `name:option`).

    Raises:
        InputError: no such kind (the message lists the known ones), or the option is refused.
    """
    name, colon, option = kind.partition(":")
    factory = EXECUTORS[name]
    return factory(option) if colon else factory()


# -- the fake -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FakeOutcome:
    """What one attempt of a job does under FakeExecutor."""

    exit_code: int = 0
    output: Sequence[str] = ()
    duration: float = 0.0                    # seconds on the executor's clock
    infrastructure_error: str | None = None
    hang: bool = False                       # runs until it is killed
    cpu_user: float = 0.0
    cpu_system: float = 0.0
    peak_rss_kb: int | None = None


@dataclass
class FakeExecutor:
    """Plays scripted outcomes per job (one per attempt, the last one repeats); starts no process.

    `started` lists job names in the order their attempts started, `killed` the jobs whose
    attempt was cancelled, `commands` what the runner handed over, `recovered` the records
    that `recover` was given.
    """

    outcomes: Mapping[str, FakeOutcome | Sequence[FakeOutcome]] = field(default_factory=dict)
    clock: Clock = field(default_factory=SystemClock)
    default: FakeOutcome = field(default_factory=FakeOutcome)
    name: str = "fake"
    started: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    commands: list[JobCommand] = field(default_factory=list)
    recovered: list[RecoveryRecord] = field(default_factory=list)
    prepared: list[str] = field(default_factory=list)
    running: int = 0
    most_running: int = 0

    def set_capacity(self, workers: int) -> None:
        pass

    async def prepare(self, command: JobCommand) -> None:
        self.prepared.append(command.job)

    def _outcome(self, job: str) -> FakeOutcome:
        script = self.outcomes.get(job, self.default)
        if isinstance(script, FakeOutcome):
            return script
        attempt = sum(1 for name in self.started if name == job) - 1
        return script[min(attempt, len(script) - 1)]

    async def run(self, command: JobCommand, log: LogWriter, on_start: OnStart | None = None) -> CommandResult:
        self.started.append(command.job)
        self.commands.append(command)
        outcome = self._outcome(command.job)
        if outcome.infrastructure_error is not None:
            return CommandResult(exit_code=None, infrastructure_error=outcome.infrastructure_error)
        if on_start is not None:
            on_start({"job": command.job})
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            for line in outcome.output:
                log.feed(line.encode() + b"\n")
            if outcome.hang:
                await anyio.Event().wait()   # until the runner cancels it
            await self.clock.sleep(outcome.duration)
        except anyio.get_cancelled_exc_class():
            self.killed.append(command.job)
            raise
        finally:
            self.running -= 1
            log.flush()
        return CommandResult(exit_code=outcome.exit_code, cpu_user=outcome.cpu_user, cpu_system=outcome.cpu_system,
                             peak_rss_kb=outcome.peak_rss_kb)

    def recover(self, record: RecoveryRecord) -> bool:
        self.recovered.append(dict(record))
        return True

