"""The scheduler's DAG semantics with a FakeExecutor on virtual time: no process is started.

Skip propagation, allow_failure, retries by failure class, job and pipeline timeouts, fail
fast, cancellation (in process and through the store) and `if:` conditions, each decided by
the runner alone. The same behaviours with real processes are in test_runner.py.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from engine.errors import InputError, SpecError
from engine.pipeline._workspace import RunPaths
from engine.pipeline.executors import EXECUTORS, FakeExecutor, FakeOutcome, make_executor
from engine.pipeline.manager import PipelineManager, recover_interrupted
from engine.pipeline.results import PipelineRun
from engine.pipeline.runner import Runner
from engine.pipeline.states import JobStatus, RunStatus
from engine.spec.model import EXECUTOR_KINDS, load_pipeline
from engine.store import open_store, runs
from engine.store.base import Store

pytestmark = pytest.mark.anyio


class VirtualClock:
    """Time that moves only when every task waits: sleepers wake in deadline order, at once.

    Unlike a clock that advances on each sleep, two timers racing (a job's duration against
    its timeout) end in the order their deadlines say.
    """

    def __init__(self) -> None:
        self.t = 0.0
        self._queue: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    def time(self) -> float:
        return 1_700_000_000.0 + self.t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        entry = (self.t + seconds, next(self._seq), anyio.Event())
        heapq.heappush(self._queue, entry)
        try:
            await entry[2].wait()
        finally:
            if not entry[2].is_set():   # cancelled: its deadline must not move time
                self._queue.remove(entry)
                heapq.heapify(self._queue)

    async def drive(self) -> None:
        while True:
            await _all_other_tasks_blocked()
            if self._queue:
                deadline, _, event = heapq.heappop(self._queue)
                self.t = max(self.t, deadline)
                event.set()
            else:
                await anyio.sleep(0.0005)


async def _all_other_tasks_blocked() -> None:
    # anyio.wait_all_tasks_blocked polls every 0.1 s of real time; this checks at each loop turn.
    this = asyncio.current_task()
    while True:
        await asyncio.sleep(0)
        waiting = (getattr(t, "_fut_waiter", None) for t in asyncio.all_tasks() if t is not this)
        if all(w is not None and not w.done() for w in waiting):
            return


@pytest.fixture(autouse=True)
def no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a process was started")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(os, "fork", refuse)
    monkeypatch.setattr(os, "posix_spawn", refuse)
    yield


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "ws")
    yield s
    s.close()


def pipeline(*jobs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "t", "source": None, "stages": [{"name": "s", "jobs": list(jobs)}], **extra}


def job(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "commands": [f"run {name}"], "depends_on": extra.pop("depends_on", []), **extra}


_ids = itertools.count()


def make_runner(store: Store, tmp_path: Path, spec: Mapping[str, Any], executor: FakeExecutor, clock: VirtualClock,
                *, workers: int = 4, context: Mapping[str, str] | None = None) -> Runner:
    plan = load_pipeline(dict(spec))
    run_id = f"r{next(_ids)}"
    runs.insert_run(store, run_id, pipeline=plan.name, status="queued", created_at=clock.time(), variables={},
                    context=dict(context or {}), spec_path=None, spec_json=plan.spec_json(), max_workers=workers)
    paths = RunPaths(root=tmp_path / "ws" / "runs" / run_id, artifacts=tmp_path / "ws" / "runs" / run_id / "a")
    return Runner(plan, run_id=run_id, store=store, paths=paths, max_workers=workers, variables={}, secrets={},
                  context=dict(context or {"branch": "main", "event": "push"}), executor=executor, clock=clock)


async def drive(runner: Runner, clock: VirtualClock) -> PipelineRun:
    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.drive)
        result = await runner.run()
        tg.cancel_scope.cancel()
    return result


async def play(store: Store, tmp_path: Path, spec: Mapping[str, Any],
               outcomes: Mapping[str, FakeOutcome | list[FakeOutcome]] | None = None, *, workers: int = 4,
               context: Mapping[str, str] | None = None) -> tuple[PipelineRun, FakeExecutor, VirtualClock]:
    clock = VirtualClock()
    fake = FakeExecutor(dict(outcomes or {}), clock=clock)
    runner = make_runner(store, tmp_path, spec, fake, clock, workers=workers, context=context)
    return await drive(runner, clock), fake, clock


def statuses(run: PipelineRun) -> dict[str, str]:
    return {n: j.status.value for n, j in run.jobs.items()}


async def test_a_failure_skips_its_dependents_and_the_rest_goes_on(store: Store, tmp_path: Path) -> None:
    run, fake, _ = await play(store, tmp_path, pipeline(
        job("a"), job("b", depends_on=["a"]), job("c", depends_on=["b"]), job("d"),
        job("cleanup", depends_on=["a"], **{"if": "always()"}),
        job("on-failure", depends_on=["a"], **{"if": "failure()"}),
        job("on-success", depends_on=["a"], **{"if": "success()"}),
    ), {"a": FakeOutcome(exit_code=1)})
    assert run.status == RunStatus.FAILED
    assert statuses(run) == {"a": "failed", "b": "skipped", "c": "skipped", "d": "succeeded",
                             "cleanup": "succeeded", "on-failure": "succeeded", "on-success": "skipped"}
    assert run.jobs["b"].reason == "dependency a did not succeed"
    assert run.jobs["c"].reason == "dependency b did not succeed"
    assert sorted(fake.started) == ["a", "cleanup", "d", "on-failure"]
    assert run.reason == "failed jobs: a"


async def test_allow_failure_lets_dependents_run_and_the_run_succeed(store: Store, tmp_path: Path) -> None:
    run, _, _ = await play(store, tmp_path, pipeline(job("a", allow_failure=True), job("b", depends_on=["a"])),
                           {"a": FakeOutcome(exit_code=3)})
    assert run.status == RunStatus.SUCCEEDED
    assert run.jobs["a"].status == JobStatus.FAILED and run.jobs["a"].exit_code == 3
    assert run.jobs["b"].status == JobStatus.SUCCEEDED


async def test_retries_follow_the_failure_class_and_back_off_on_the_clock(store: Store, tmp_path: Path) -> None:
    run, fake, clock = await play(store, tmp_path, pipeline(
        job("flaky", retry={"max": 2, "backoff": 3}),
        job("not-for-failures", retry={"max": 3, "when": ["timeout"], "backoff": 0}),
        job("infra", retry={"max": 1, "when": ["infrastructure"], "backoff": 0}),
    ), {"flaky": [FakeOutcome(exit_code=7), FakeOutcome(exit_code=7), FakeOutcome(exit_code=0)],
        "not-for-failures": FakeOutcome(exit_code=1),
        "infra": [FakeOutcome(infrastructure_error="the host went away"), FakeOutcome()]})
    assert statuses(run) == {"flaky": "succeeded", "not-for-failures": "failed", "infra": "succeeded"}
    assert [run.jobs[n].attempts for n in ("flaky", "not-for-failures", "infra")] == [3, 1, 2]
    assert fake.started.count("flaky") == 3
    assert clock.now() == pytest.approx(3 + 6)   # backoff 3 s, then 6 s
    rows = store.query("SELECT attempt, status, failure_class, exit_code FROM attempts WHERE run_id = ? AND job = ? "
                       "ORDER BY attempt", (run.run_id, "flaky"))
    assert [(r["attempt"], r["status"], r["failure_class"], r["exit_code"]) for r in rows] == [
        (1, "failed", "failure", 7), (2, "failed", "failure", 7), (3, "succeeded", None, 0)]


async def test_a_job_timeout_kills_the_job_and_is_retried_as_a_timeout(store: Store, tmp_path: Path) -> None:
    run, fake, clock = await play(store, tmp_path, pipeline(
        job("hangs", timeout=5, retry={"max": 1, "when": ["timeout"], "backoff": 0}),
        job("quick", timeout=5), job("after", depends_on=["hangs"])),
        {"hangs": FakeOutcome(hang=True), "quick": FakeOutcome(duration=4.5)})
    assert run.jobs["hangs"].status == JobStatus.TIMED_OUT and run.jobs["hangs"].attempts == 2
    assert run.jobs["hangs"].reason == "timed out after 5s"
    assert run.jobs["quick"].status == JobStatus.SUCCEEDED   # 4.5 s is within its 5 s
    assert run.jobs["after"].status == JobStatus.SKIPPED
    assert fake.killed == ["hangs", "hangs"]
    assert clock.now() == pytest.approx(10)
    assert run.status == RunStatus.FAILED


async def test_the_pipeline_timeout_stops_running_jobs_and_skips_waiting_ones(store: Store, tmp_path: Path) -> None:
    run, fake, clock = await play(store, tmp_path, pipeline(job("a"), job("b", depends_on=["a"]), timeout=1),
                                  {"a": FakeOutcome(duration=30)})
    assert run.status == RunStatus.FAILED
    assert statuses(run) == {"a": "timed_out", "b": "skipped"}
    assert "pipeline timed out" in (run.reason or "")
    assert fake.killed == ["a"] and clock.now() == pytest.approx(1)


async def test_fail_fast_cancels_everything_else(store: Store, tmp_path: Path) -> None:
    run, fake, _ = await play(store, tmp_path, pipeline(
        job("bad"), job("long"), job("later", depends_on=["long"]), fail_fast=True),
        {"bad": FakeOutcome(exit_code=1, duration=1), "long": FakeOutcome(duration=30)})
    assert run.status == RunStatus.FAILED
    assert statuses(run) == {"bad": "failed", "long": "cancelled", "later": "cancelled"}
    assert "fail_fast" in (run.reason or "") and fake.killed == ["long"]


async def test_without_fail_fast_a_failure_does_not_stop_the_others(store: Store, tmp_path: Path) -> None:
    run, fake, _ = await play(store, tmp_path, pipeline(job("bad"), job("long"), job("later", depends_on=["long"])),
                              {"bad": FakeOutcome(exit_code=1, duration=1), "long": FakeOutcome(duration=30)})
    assert statuses(run) == {"bad": "failed", "long": "succeeded", "later": "succeeded"}
    assert fake.killed == []


async def test_a_matrix_that_fails_fast_cancels_only_its_own_combinations(store: Store, tmp_path: Path) -> None:
    # GitHub Actions' strategy.fail-fast: py=1 fails at 1s; py=2 (running) and py=3 (queued behind
    # max_parallel 2) are cancelled; the other job and its dependent go on; the run fails.
    run, fake, clock = await play(store, tmp_path, pipeline(
        job("t", matrix={"py": [1, 2, 3]}, fail_fast=True, max_parallel=2), job("other"),
        job("after-other", depends_on=["other"]), job("after-t", depends_on=["t"])),
        {"t[py=1]": FakeOutcome(exit_code=1, duration=1), "t[py=2]": FakeOutcome(duration=30),
         "other": FakeOutcome(duration=5)})
    assert run.status == RunStatus.FAILED
    assert statuses(run) == {"t[py=1]": "failed", "t[py=2]": "cancelled", "t[py=3]": "cancelled",
                             "other": "succeeded", "after-other": "succeeded", "after-t": "skipped"}
    assert run.jobs["t[py=2]"].reason == "fail-fast: t[py=1] of the same matrix failed"
    assert fake.killed == ["t[py=2]"] and "t[py=3]" not in fake.started
    assert clock.now() == pytest.approx(5)   # other's 5s, not py=2's 30s
    assert run.reason == "failed jobs: t[py=1]"


async def test_a_matrix_without_fail_fast_runs_every_combination_at_most_max_parallel_at_once(
        store: Store, tmp_path: Path) -> None:
    run, fake, clock = await play(store, tmp_path, pipeline(
        job("t", matrix={"py": [1, 2, 3, 4, 5]}, max_parallel=2)),
        {"t[py=1]": FakeOutcome(exit_code=1, duration=1)}, workers=8)
    assert statuses(run)["t[py=1]"] == "failed"
    assert [statuses(run)[f"t[py={i}]"] for i in range(2, 6)] == ["succeeded"] * 4
    assert fake.most_running == 2 and fake.killed == []


async def test_fail_fast_spares_a_combination_allowed_to_fail_and_groups_jobs_by_matrix_group(
        store: Store, tmp_path: Path) -> None:
    # The GitHub import expands some matrices one job per combination: matrix_group makes them one matrix.
    run, fake, _ = await play(store, tmp_path, pipeline(
        job("t.1", matrix_group="t", fail_fast=True, allow_failure=True),
        job("t.2", matrix_group="t", fail_fast=True), job("t.3", matrix_group="t", fail_fast=True),
        job("u", fail_fast=True)),
        {"t.1": FakeOutcome(exit_code=1, duration=1), "t.2": FakeOutcome(exit_code=1, duration=2),
         "t.3": FakeOutcome(duration=10), "u": FakeOutcome(duration=10)})
    assert statuses(run) == {"t.1": "failed", "t.2": "failed", "t.3": "cancelled", "u": "succeeded"}
    assert run.jobs["t.3"].reason == "fail-fast: t.2 of the same matrix failed"


async def test_cancel_stops_the_running_job_and_the_waiting_ones(store: Store, tmp_path: Path) -> None:
    clock = VirtualClock()
    fake = FakeExecutor({"long": FakeOutcome(duration=60)}, clock=clock)
    runner = make_runner(store, tmp_path, pipeline(job("long"), job("next", depends_on=["long"])), fake, clock)

    async def cancel_later() -> None:
        await clock.sleep(2)
        runner.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_later)
        run = await drive(runner, clock)
    assert run.status == RunStatus.CANCELLED
    assert statuses(run) == {"long": "cancelled", "next": "cancelled"}
    assert fake.killed == ["long"] and clock.now() == pytest.approx(2)
    assert runs.get_run(store, run.run_id)["status"] == "cancelled"   # type: ignore[index]


async def test_a_cancel_request_in_the_store_is_seen_within_the_poll(store: Store, tmp_path: Path) -> None:
    clock = VirtualClock()
    fake = FakeExecutor({"long": FakeOutcome(duration=60)}, clock=clock)
    runner = make_runner(store, tmp_path, pipeline(job("long")), fake, clock)

    async def request_later() -> None:
        await clock.sleep(2.2)
        runs.request_cancel(store, runner.run_id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(request_later)
        run = await drive(runner, clock)
    assert run.status == RunStatus.CANCELLED
    assert run.reason == "cancelled on request (cancel_run)"
    assert 2.2 < clock.now() <= 2.2 + 0.5


async def test_conditions_decide_from_branch_event_and_variables(store: Store, tmp_path: Path) -> None:
    spec = pipeline(job("main-only", **{"if": "branch == 'main'"}), job("on-push", **{"if": "event == 'push'"}),
                    job("any"))
    run, fake, _ = await play(store, tmp_path, spec, context={"branch": "feature", "event": "push"})
    assert statuses(run) == {"main-only": "skipped", "on-push": "succeeded", "any": "succeeded"}
    assert "condition" in (run.jobs["main-only"].reason or "")
    assert run.status == RunStatus.SUCCEEDED and "main-only" not in fake.started


async def test_workers_bound_the_jobs_running_at_once(store: Store, tmp_path: Path) -> None:
    run, fake, clock = await play(store, tmp_path, pipeline(*(job(f"j{i}") for i in range(6))),
                                  {f"j{i}": FakeOutcome(duration=1) for i in range(6)}, workers=2)
    assert run.status == RunStatus.SUCCEEDED
    assert fake.most_running == 2 and clock.now() == pytest.approx(3)
    assert sum(1 for j in run.jobs.values() if (j.queue_wait or 0) > 0) == 4


async def test_a_job_starts_when_its_own_dependencies_finish(store: Store, tmp_path: Path) -> None:
    run, _, _ = await play(store, tmp_path, pipeline(job("slow"), job("fast"), job("fast-next", depends_on=["fast"])),
                           {"slow": FakeOutcome(duration=10), "fast": FakeOutcome(duration=1)})
    assert run.jobs["fast-next"].started_at == pytest.approx(run.jobs["fast"].finished_at)   # type: ignore[arg-type]
    assert run.jobs["fast-next"].finished_at < run.jobs["slow"].finished_at   # type: ignore[operator]


async def test_the_runner_hands_over_interpolated_commands_and_records_the_executor(
        store: Store, tmp_path: Path) -> None:
    spec = pipeline({"name": "m", "commands": ["echo ${GREETING} ${matrix.py}"], "matrix": {"py": ["3.12"]},
                     "variables": {"GREETING": "hi"}, "timeout": 9})
    run, fake, _ = await play(store, tmp_path, spec, {"m[py=3.12]": FakeOutcome(output=["hello"])})
    (command,) = fake.commands
    # Values are never pasted into commands: they are referenced, and exported in the environment.
    assert command.commands == ("echo ${GREETING} ${CICD_MATRIX_py}",) and command.timeout == 9
    assert command.argv is None and command.env["GREETING"] == "hi" and command.env["CICD_MATRIX_py"] == "3.12"
    assert command.env["CICD_JOB"] == "m[py=3.12]" and command.cwd == command.workspace
    assert fake.prepared == ["m[py=3.12]"]
    row = store.query_one("SELECT executor, recovery_json FROM jobs WHERE run_id = ?", (run.run_id,))
    assert row is not None and row["executor"] == "fake" and row["recovery_json"] is None   # cleared at the end
    assert "hello" in Path(run.jobs["m[py=3.12]"].log_path or "").read_text()


@pytest.fixture
def registered_fake() -> Iterator[FakeExecutor]:
    fake = FakeExecutor()
    EXECUTORS.register("fake", lambda: fake)
    yield fake
    EXECUTORS.unregister("fake")


async def test_recovery_asks_the_recorded_executor_to_kill_what_was_left(
        store: Store, registered_fake: FakeExecutor) -> None:
    fake = registered_fake
    runs.insert_run(store, "dead", pipeline="t", status="queued", created_at=1.0, variables={}, context={},
                    spec_path=None, spec_json="{}", max_workers=1)
    runs.start_run(store, "dead", pipeline="t", status="running", started_at=2.0, owner=(2**22 + 7, "", None),
                   jobs=[runs.NewJob("j", "s", "j", {}, [], "running", False, "/nowhere.log", "fake")])
    store.execute("UPDATE runs SET owner_host = NULL")
    runs.update_job(store, "dead", "j", recovery_json='{"job": "j"}')
    assert recover_interrupted(store) == ["dead"]
    assert fake.recovered == [{"job": "j"}]
    assert runs.get_run(store, "dead")["status"] == "interrupted"   # type: ignore[index]
    assert runs.run_jobs(store, "dead")[0]["status"] == "cancelled"


def test_recovery_of_a_job_on_an_executor_this_process_lacks_still_marks_the_run(store: Store) -> None:
    runs.insert_run(store, "dead", pipeline="t", status="running", created_at=1.0, variables={}, context={},
                    spec_path=None, spec_json="{}", max_workers=1)
    runs.start_run(store, "dead", pipeline="t", status="running", started_at=2.0, owner=(2**22 + 7, "", None),
                   jobs=[runs.NewJob("j", "s", "j", {}, [], "running", False, "/nowhere.log", "plugin")])
    store.execute("UPDATE runs SET owner_host = NULL")
    runs.update_job(store, "dead", "j", recovery_json="{}")
    assert recover_interrupted(store) == ["dead"]
    assert runs.run_jobs(store, "dead")[0]["status"] == "cancelled"


def test_an_unknown_executor_is_refused_at_load_with_the_known_kinds() -> None:
    text = "name: t\nsource: null\nstages:\n  - name: s\n    jobs:\n      - name: a\n        commands: [x]\n" \
           "        runs_on: somewhere-else\n"
    with pytest.raises(SpecError) as err:
        load_pipeline(text)
    message = str(err.value)
    assert ":8:" in message and "runs_on" in message and "local" in message
    with pytest.raises(InputError, match="known: docker, kubernetes, local, sandbox, ssh"):
        make_executor("somewhere-else")


def test_the_spec_and_the_registry_know_the_same_executors() -> None:
    assert set(EXECUTORS) == set(EXECUTOR_KINDS)


def test_an_unknown_default_executor_refuses_the_run_before_it_is_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_EXECUTOR", "nowhere")
    manager = PipelineManager(tmp_path / "ws")
    with pytest.raises(InputError,
                       match="unknown executor kind 'nowhere' \\(known: docker, kubernetes, local, sandbox, ssh\\)"):
        manager.run_pipeline(pipeline(job("a")))
    assert manager.list_runs() == []


def test_a_manager_runs_every_job_on_the_executor_it_was_given(tmp_path: Path) -> None:
    fake = FakeExecutor({"b": FakeOutcome(exit_code=2)})
    run = PipelineManager(tmp_path / "ws", executor=fake).run_pipeline(pipeline(job("a"), job("b", depends_on=["a"])))
    assert statuses(run) == {"a": "succeeded", "b": "failed"} and fake.started == ["a", "b"]
