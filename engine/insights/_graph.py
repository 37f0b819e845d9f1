"""Critical paths and schedule replays over a run's job graph: pure functions.

A run is replayed from its measured job durations: every job starts as soon as its
dependencies have finished and a worker is free (jobs that became ready earlier go
first; ties keep the order the caller gives, normally the order they really started).
Replaying a changed graph -- an edge removed, a job halved, a job made free by a
cache, more workers -- and comparing the two makespans estimates what the change
saves. Measured overheads outside the jobs (start-up, scheduling gaps) are the same
on both sides of the comparison and cancel out.

Dependencies on names that are not in the graph (a job that was skipped and never
measured) are treated as satisfied at time zero.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from engine.errors import CycleError
from engine.spec import dag

__all__ = [
    "Schedule",
    "Task",
    "critical_path",
    "edges",
    "longest_chain",
    "replay",
    "with_durations",
    "without_edge",
]


@dataclass(frozen=True)
class Task:
    name: str
    duration: float  # seconds
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Schedule:
    start: dict[str, float] = field(default_factory=dict)  # seconds from the run's start
    finish: dict[str, float] = field(default_factory=dict)

    @property
    def makespan(self) -> float:
        return max(self.finish.values(), default=0.0)


def _deps(tasks: Mapping[str, Task], task: Task) -> list[str]:
    return [d for d in dict.fromkeys(task.needs) if d in tasks and d != task.name]


def _topological(tasks: Mapping[str, Task]) -> list[str]:
    """The jobs in dependency order, by the pipeline language's own sort (`spec.dag`).

    Raises:
        CycleError: the graph has a cycle.
    """
    return dag.topological_order({name: _deps(tasks, task) for name, task in tasks.items()})


def critical_path(tasks: Mapping[str, Task]) -> tuple[float, list[str]]:
    """The longest chain of dependencies by duration (seconds), with unlimited workers: the
    pipeline language's own (`spec.dag.critical_path`), over the measured durations.

    Raises:
        CycleError: the graph has a cycle.
    """
    graph = {name: list(_deps(tasks, task)) for name, task in tasks.items()}
    return dag.critical_path(graph, {name: task.duration for name, task in tasks.items()})


def longest_chain(tasks: Mapping[str, Task]) -> list[str]:
    """The dependency chain with the most jobs (ties: the longer in seconds).

    Raises:
        CycleError: the graph has a cycle.
    """
    best: dict[str, tuple[int, float, str | None]] = {}
    for name in _topological(tasks):
        task = tasks[name]
        prev = max(_deps(tasks, task), key=lambda d: (best[d][0], best[d][1], d), default=None)
        if prev is None:
            best[name] = (1, task.duration, None)
        else:
            best[name] = (best[prev][0] + 1, best[prev][1] + task.duration, prev)
    if not best:
        return []
    node: str | None = max(best, key=lambda n: (best[n][0], best[n][1], n))
    chain: list[str] = []
    while node is not None:
        chain.append(node)
        node = best[node][2]
    return chain[::-1]


def replay(tasks: Mapping[str, Task], workers: int | None = None) -> Schedule:
    """List-schedule the graph on `workers` workers (None: unlimited) with the given durations.

    Raises:
        CycleError: the graph has a cycle.
        ValueError: workers < 1 or a negative duration.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    order = {name: i for i, name in enumerate(tasks)}
    waiting = {name: set(_deps(tasks, t)) for name, t in tasks.items()}
    dependents: dict[str, list[str]] = {name: [] for name in tasks}
    for name, deps in waiting.items():
        if tasks[name].duration < 0 or math.isnan(tasks[name].duration):
            raise ValueError(f"job {name!r} has an invalid duration {tasks[name].duration}")
        for dep in deps:
            dependents[dep].append(name)
    ready: list[tuple[float, int, str]] = [(0.0, order[n], n) for n, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    running: list[tuple[float, int, str]] = []
    free = math.inf if workers is None else workers
    start: dict[str, float] = {}
    finish: dict[str, float] = {}
    now = 0.0
    while ready or running:
        while ready and free > 0 and ready[0][0] <= now:
            _, idx, name = heapq.heappop(ready)
            start[name] = now
            heapq.heappush(running, (now + tasks[name].duration, idx, name))
            free -= 1
        upcoming = [running[0][0]] if running else []
        if ready and free > 0:
            upcoming.append(ready[0][0])
        if not upcoming:
            break
        now = max(now, min(upcoming))
        while running and running[0][0] <= now:
            done_at, _, name = heapq.heappop(running)
            finish[name] = done_at
            free += 1
            for child in dependents[name]:
                waiting[child].discard(name)
                if not waiting[child]:
                    heapq.heappush(ready, (done_at, order[child], child))
    if len(finish) != len(tasks):
        _topological(tasks)  # raises CycleError naming the cycle
        raise CycleError(sorted(set(tasks) - set(finish)))
    return Schedule(start, finish)


def without_edge(tasks: Mapping[str, Task], job: str, dependency: str) -> dict[str, Task]:
    """The graph with `job` no longer needing `dependency`."""
    out = dict(tasks)
    out[job] = replace(tasks[job], needs=tuple(d for d in tasks[job].needs if d != dependency))
    return out


def with_durations(tasks: Mapping[str, Task], durations: Mapping[str, float]) -> dict[str, Task]:
    """The graph with some jobs' durations replaced."""
    return {n: replace(t, duration=durations[n]) if n in durations else t for n, t in tasks.items()}


def edges(tasks: Mapping[str, Task]) -> Iterable[tuple[str, str]]:
    """(job, dependency) pairs present in the graph."""
    for name, task in tasks.items():
        for dep in _deps(tasks, task):
            yield name, dep
