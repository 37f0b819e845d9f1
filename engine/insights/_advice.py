"""Bottlenecks and suggestions from a few recorded runs: pure functions.

Theory of operation. Each suggestion is a change to a run's job graph; its estimate is
what that change would have saved on the runs we have, found by replaying each run
(`_graph.replay`, with the run's own measured job durations and worker count) with and
without the change. The mean of the per-run savings is the estimate; the estimated
duration is the mean measured run duration minus it, so time spent outside the jobs
stays counted. Changes:

- remove_dependency(job, dep): a dependency is "not used" when the job consumed no
  artifact through it. A job receives the artifacts of all its ancestors, so the edge
  job -> dep carries the artifacts of dep and of dep's ancestors that are not ancestors
  of job by another path. If none of those jobs produced an artifact in any replayed
  run, nor declares `artifacts:` in the pipeline spec, nothing flowed through the edge.
  (Side effects outside artifacts -- a service started, a file written outside the
  workspace -- cannot be seen in the store; the suggestion says to check for them.)
- split_job(job): the longest job on the critical path split into two halves that run
  in parallel (both need what it needed; its dependents need both). Assumes the work
  divides evenly: an upper bound.
- raise_workers(n): offered when jobs waited for a worker; n is the fewest workers that
  reach the replay's best makespan.
- cache_job(job): a job whose spec, received artifacts and produced artifacts (by
  sha256) were identical across the replayed runs redid the same work each time;
  replayed at zero seconds (restoring a cache is not free: an upper bound).
- fix_flaky_job(job): a job that passed on retry, replayed with only its final attempt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine.insights._graph import Task, critical_path, longest_chain
from engine.insights._graph import replay as replay_graph
from engine.insights._queries import RecentRun
from engine.insights.models import (
    CriticalPath,
    CriticalPathJob,
    CriticalPathShare,
    Effort,
    SerialChain,
    Suggestion,
    seconds,
)

__all__ = [
    "Change",
    "combined_saving",
    "critical_path_of",
    "critical_path_shares",
    "declared_artifacts",
    "serial_chains",
    "suggest",
    "tasks_of",
]

# A saving below this many seconds, or this fraction of the mean run, is noise.
MIN_SAVING_S = 0.1
MIN_SAVING_FRACTION = 0.01
# A job whose mean wait for a worker exceeds this many seconds counts as queueing.
QUEUE_NOTABLE_S = 0.5
SERIAL_CHAIN_MIN_JOBS = 3
_EFFORT_ORDER: dict[Effort, int] = {"low": 0, "medium": 1, "high": 2}


def tasks_of(run: RecentRun) -> dict[str, Task]:
    """The run's started jobs as replayable tasks (wall seconds), in the order they started."""
    out: dict[str, Task] = {}
    for job in run.jobs.values():
        wall = job.wall
        if job.started_at is None or wall is None:
            continue
        out[job.name] = Task(job.name, wall, job.needs)
    return out


def critical_path_of(run: RecentRun) -> CriticalPath | None:
    tasks = tasks_of(run)
    if not tasks:
        return None
    length, path = critical_path(tasks)
    return CriticalPath(
        run_id=run.run_id,
        length=seconds(length),
        run_duration=seconds(run.duration) if run.duration is not None else None,
        jobs=[
            CriticalPathJob(
                job=j,
                duration=seconds(tasks[j].duration),
                share=round(tasks[j].duration / length, 4) if length > 0 else 0.0,
            )
            for j in path
        ],
    )


def critical_path_shares(runs: Sequence[RecentRun]) -> list[CriticalPathShare]:
    seen: dict[str, list[float]] = {}
    analysed = 0
    for run in runs:
        cp = critical_path_of(run)
        if cp is None:
            continue
        analysed += 1
        for j in cp.jobs:
            seen.setdefault(j.job, []).append(j.share)
    shares = [
        CriticalPathShare(
            job=job, runs_on_path=len(s), runs_analysed=analysed, mean_share=round(sum(s) / len(s), 4)
        )
        for job, s in seen.items()
    ]
    return sorted(shares, key=lambda s: (-s.runs_on_path, -s.mean_share, s.job))


def serial_chains(run: RecentRun) -> list[SerialChain]:
    tasks = tasks_of(run)
    chain = longest_chain(tasks)
    if len(chain) < SERIAL_CHAIN_MIN_JOBS:
        return []
    return [SerialChain(run_id=run.run_id, jobs=chain, length=seconds(sum(tasks[j].duration for j in chain)))]


def declared_artifacts(spec: Mapping[str, Any] | None) -> set[str]:
    """Base names of jobs whose spec declares artifact paths."""
    out: set[str] = set()
    if not spec:
        return out
    for stage in spec.get("stages") or []:
        for job in (stage or {}).get("jobs") or []:
            arts = (job or {}).get("artifacts")
            paths = arts.get("paths") if isinstance(arts, Mapping) else arts
            if paths:
                out.add(str(job.get("name")))
    return out


def _job_spec(spec: Mapping[str, Any] | None, base: str) -> Any:
    for stage in (spec or {}).get("stages") or []:
        for job in (stage or {}).get("jobs") or []:
            if (job or {}).get("name") == base:
                return job
    return None


def _ancestors(tasks: Mapping[str, Task], name: str, skip_edge: tuple[str, str] | None = None) -> set[str]:
    seen: set[str] = set()
    todo = [d for d in tasks[name].needs if (name, d) != skip_edge]
    while todo:
        d = todo.pop()
        if d in seen or d not in tasks:
            continue
        seen.add(d)
        todo.extend(tasks[d].needs)
    return seen


def _base(name: str) -> str:
    return name.split("[", 1)[0]


# -- changes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A change to a run's graph: (tasks, workers, run) -> (tasks, workers)."""

    kind: str
    key: tuple[str, ...]
    apply: Callable[[dict[str, Task], int | None, RecentRun], tuple[dict[str, Task], int | None]]


def _remove_edge(job: str, dep: str) -> Change:
    def apply(t: dict[str, Task], w: int | None, _r: RecentRun) -> tuple[dict[str, Task], int | None]:
        if job in t:
            t = {**t, job: replace(t[job], needs=tuple(d for d in t[job].needs if d != dep))}
        return t, w

    return Change("remove_dependency", (job, dep), apply)


def _split(job: str) -> Change:
    def apply(t: dict[str, Task], w: int | None, _r: RecentRun) -> tuple[dict[str, Task], int | None]:
        if job not in t:
            return t, w
        a, b = f"{job}#1", f"{job}#2"
        half = t[job].duration / 2
        out: dict[str, Task] = {}
        for name, task in t.items():
            if name == job:
                out[a] = Task(a, half, task.needs)
                out[b] = Task(b, half, task.needs)
                continue
            if job in task.needs:
                task = replace(task, needs=tuple(d for d in task.needs if d != job) + (a, b))
            out[name] = task
        return out, w

    return Change("split_job", (job,), apply)


def _workers(n: int) -> Change:
    def apply(t: dict[str, Task], _w: int | None, _r: RecentRun) -> tuple[dict[str, Task], int | None]:
        return t, n

    return Change("raise_workers", (str(n),), apply)


def _cache(job: str) -> Change:
    def apply(t: dict[str, Task], w: int | None, _r: RecentRun) -> tuple[dict[str, Task], int | None]:
        return ({**t, job: replace(t[job], duration=0.0)} if job in t else t), w

    return Change("cache_job", (job,), apply)


def _final_attempt_only(job: str) -> Change:
    def apply(t: dict[str, Task], w: int | None, r: RecentRun) -> tuple[dict[str, Task], int | None]:
        rec = r.jobs.get(job)
        if job in t and rec is not None and rec.attempts > 1 and rec.last_attempt is not None:
            t = {**t, job: replace(t[job], duration=min(t[job].duration, rec.last_attempt))}
        return t, w

    return Change("fix_flaky_job", (job,), apply)


def _makespan(tasks: dict[str, Task], workers: int | None) -> float:
    return replay_graph(tasks, workers).makespan


_BASELINES: dict[tuple[str, int | None, float], float] = {}


def _baseline(run: RecentRun) -> float:
    """The replayed makespan of the run as it was (memoised: every candidate compares with it)."""
    tasks = tasks_of(run)
    key = (run.run_id, run.max_workers, sum(t.duration for t in tasks.values()))
    if key not in _BASELINES:
        if len(_BASELINES) > 4096:
            _BASELINES.clear()
        _BASELINES[key] = _makespan(tasks, run.max_workers)
    return _BASELINES[key]


def _saving(runs: Sequence[RecentRun], changes: Sequence[Change]) -> float:
    """Mean seconds per run that the changes, applied together, would have saved."""
    total = 0.0
    for run in runs:
        tasks, workers = tasks_of(run), run.max_workers
        for change in changes:
            tasks, workers = change.apply(tasks, workers, run)
        total += _baseline(run) - _makespan(tasks, workers)
    return total / len(runs) if runs else 0.0


# -- candidates ------------------------------------------------------------------------------


def _false_dependencies(runs: Sequence[RecentRun]) -> list[tuple[Change, str]]:
    newest = runs[0]
    tasks = tasks_of(newest)
    declared = set().union(*(declared_artifacts(r.spec) for r in runs))
    produced = {name for r in runs for name, j in r.jobs.items() if j.artifacts}
    out = []
    for job, task in tasks.items():
        for dep in dict.fromkeys(task.needs):
            if dep not in tasks:
                continue
            keeps = _ancestors(tasks, job, skip_edge=(job, dep))
            lost = ({dep} | _ancestors(tasks, dep)) - keeps
            if any(x in produced or _base(x) in declared for x in lost):
                continue
            why = (
                f"{job} needs {dep}, but no artifact reaches {job} through that edge: "
                + ", ".join(sorted(lost))
                + " produced none in the runs analysed and declare none. "
                "Check for side effects outside artifacts before removing it."
            )
            out.append((_remove_edge(job, dep), why))
    return out


def _split_candidate(runs: Sequence[RecentRun]) -> list[tuple[Change, str]]:
    cp = critical_path_of(runs[0])
    if cp is None or not cp.jobs:
        return []
    longest = max(cp.jobs, key=lambda j: j.duration.value)
    why = (
        f"{longest.job} is the longest job on the critical path ({longest.duration}, "
        f"{longest.share:.0%} of it); estimate assumes it splits into two equal halves run in parallel."
    )
    return [(_split(longest.job), why)]


def _workers_candidate(
    runs: Sequence[RecentRun], queue_means: Mapping[str, float]
) -> list[tuple[Change, str]]:
    waiting = {j: w for j, w in queue_means.items() if w > QUEUE_NOTABLE_S}
    current = runs[0].max_workers
    if not waiting or current is None:
        return []
    n_jobs = max(len(tasks_of(r)) for r in runs)
    best = _saving(runs, [_workers(max(n_jobs, current))])
    if best <= 0:
        return []
    needed = next(
        (
            w
            for w in range(current + 1, max(n_jobs, current) + 1)
            if _saving(runs, [_workers(w)]) >= best - 1e-6
        ),
        max(n_jobs, current),
    )
    names = ", ".join(f"{j} ({w:.2g} s)" for j, w in sorted(waiting.items(), key=lambda x: -x[1])[:5])
    why = (
        f"jobs waited for a worker (mean wait: {names}); {current} worker(s) now, "
        f"{needed} reach the best replay."
    )
    return [(_workers(needed), why)]


def _cache_candidates(runs: Sequence[RecentRun]) -> list[tuple[Change, str]]:
    if len(runs) < 2:
        return []
    tasks = tasks_of(runs[0])
    out = []
    for job in tasks:
        recs = [r.jobs.get(job) for r in runs]
        if any(rec is None or rec.status != "succeeded" or not rec.artifacts for rec in recs):
            continue
        outputs = {tuple(sorted(rec.artifacts.items())) for rec in recs if rec is not None}
        inputs = {
            tuple(
                sorted(
                    (a, tuple(sorted(r.jobs[a].artifacts.items())))
                    for a in _ancestors(tasks, job)
                    if a in r.jobs
                )
            )
            for r in runs
        }
        specs = {repr(_job_spec(r.spec, _base(job))) for r in runs}
        if len(outputs) == 1 and len(inputs) == 1 and len(specs) == 1:
            why = (
                f"{job} had the same spec and inputs and produced identical artifacts (sha256) in "
                f"{len(runs)} runs; a cache keyed on its inputs would skip it (restore time not counted)."
            )
            out.append((_cache(job), why))
    return out


def _flaky_candidates(runs: Sequence[RecentRun]) -> list[tuple[Change, str]]:
    out = []
    names = sorted({n for r in runs for n, j in r.jobs.items() if j.status == "succeeded" and j.attempts > 1})
    for name in names:
        retried = sum(1 for r in runs if (j := r.jobs.get(name)) is not None and j.attempts > 1)
        why = f"{name} passed only on retry in {retried} of {len(runs)} runs; each retry re-runs it."
        out.append((_final_attempt_only(name), why))
    return out


_TITLES = {
    "remove_dependency": "Remove the unused dependency {1} from {0}",
    "split_job": "Split {0} into parallel parts",
    "raise_workers": "Raise the worker count to {0}",
    "cache_job": "Cache the output of {0}",
    "fix_flaky_job": "Fix the flaky job {0}",
}
_EFFORT: dict[str, Effort] = {
    "remove_dependency": "low",
    "raise_workers": "low",
    "split_job": "high",
    "cache_job": "medium",
    "fix_flaky_job": "medium",
}


def suggest(
    runs: Sequence[RecentRun], mean_duration: float, queue_means: Mapping[str, float]
) -> tuple[list[Suggestion], list[Change]]:
    """Suggestions worth their noise threshold, ranked by seconds saved then effort.

    `runs` are succeeded runs, newest first; `mean_duration` their mean measured duration (s).
    Returns the suggestions and the changes behind them (to estimate them together)."""
    if not runs:
        return [], []
    threshold = max(MIN_SAVING_S, MIN_SAVING_FRACTION * mean_duration)
    candidates = [
        *_false_dependencies(runs),
        *_workers_candidate(runs, queue_means),
        *_cache_candidates(runs),
        *_flaky_candidates(runs),
        *_split_candidate(runs),
    ]
    kept: list[tuple[Suggestion, Change]] = []
    for change, why in candidates:
        saving = _saving(runs, [change])
        if saving < threshold or math.isnan(saving):
            continue
        jobs = [k for k in change.key if change.kind != "raise_workers"]
        kept.append(
            (
                Suggestion(
                    kind=change.kind,
                    title=_TITLES[change.kind].format(*change.key),
                    detail=why,
                    jobs=jobs,
                    estimated_saving=seconds(saving),
                    estimated_duration=seconds(max(0.0, mean_duration - saving)),
                    effort=_EFFORT[change.kind],
                    runs_replayed=len(runs),
                ),
                change,
            )
        )
    kept.sort(key=lambda sc: (-sc[0].estimated_saving.value, _EFFORT_ORDER[sc[0].effort], sc[0].title))
    return [s for s, _ in kept], [c for _, c in kept]


def combined_saving(runs: Sequence[RecentRun], changes: Sequence[Change]) -> float:
    """Mean seconds per run saved with all changes applied together (a cached job is not also split)."""
    cached = {c.key[0] for c in changes if c.kind == "cache_job"}
    usable = [c for c in changes if not (c.kind == "split_job" and c.key[0] in cached)]
    # A split renames the job; every other change must see it under its own name first.
    usable.sort(key=lambda c: c.kind == "split_job")
    return _saving(runs, usable)
