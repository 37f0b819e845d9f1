"""The scheduler with real processes: retries, timeouts, skips, parallelism, artifacts, secrets, cancel."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.errors import SpecError
from engine.events import Event
from engine.pipeline.manager import PipelineManager
from engine.pipeline.states import JobStatus, RunStatus


def pipeline(*jobs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": extra.pop("name", "t"), "source": None, "stages": [{"name": "s", "jobs": list(jobs)}], **extra}


def job(name: str, *commands: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "commands": list(commands), "depends_on": extra.pop("depends_on", []), **extra}


@pytest.fixture
def manager(tmp_path: Path) -> PipelineManager:
    return PipelineManager(tmp_path / "ws", max_workers=4)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_retry_reruns_the_failing_command(manager: PipelineManager, tmp_path: Path) -> None:
    mark = tmp_path / "first-attempt-done"
    cmd = f"if [ ! -e {mark} ]; then touch {mark}; echo first-try; exit 7; fi; echo second-try"
    run = manager.run_pipeline(pipeline(job("flaky", cmd, retry={"max": 2, "backoff": 0})))
    res = run.jobs["flaky"]
    assert run.status == RunStatus.SUCCEEDED
    assert res.status == JobStatus.SUCCEEDED and res.attempts == 2
    log = manager.read_log(run.run_id, "flaky").text
    assert "first-try" in log and "second-try" in log
    rows = manager.store.query("SELECT attempt, status, failure_class, exit_code FROM attempts WHERE run_id = ? "
                               "ORDER BY attempt", (run.run_id,))
    assert [(r["attempt"], r["status"], r["failure_class"], r["exit_code"]) for r in rows] == [
        (1, "failed", "failure", 7), (2, "succeeded", None, 0)]


def test_retry_only_for_the_listed_failure_classes(manager: PipelineManager) -> None:
    run = manager.run_pipeline(pipeline(job("a", "exit 1", retry={"max": 3, "when": ["timeout"], "backoff": 0})))
    assert run.jobs["a"].status == JobStatus.FAILED
    assert run.jobs["a"].attempts == 1


def test_timeout_kills_the_whole_process_group(manager: PipelineManager, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    cmd = f"bash -c 'sleep 60 & echo $! > {pidfile}; wait'"
    # Host pids are read from the pid file: the local executor (a sandbox has its own pid namespace,
    # its equivalent is in test_executors.py).
    run = manager.run_pipeline(pipeline(job("slow", cmd, timeout=1, runs_on="local")))
    res = run.jobs["slow"]
    assert res.status == JobStatus.TIMED_OUT
    assert "timed out after 1s" in (res.reason or "")
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild), "the grandchild sleep outlived its job"


def test_background_process_left_by_a_job_is_stopped(manager: PipelineManager, tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    run = manager.run_pipeline(pipeline(job("bg", f"sleep 60 > /dev/null 2>&1 & echo $! > {pidfile}", runs_on="local")))
    assert run.jobs["bg"].status == JobStatus.SUCCEEDED
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_failure_skips_dependents_and_independent_branches_go_on(manager: PipelineManager) -> None:
    run = manager.run_pipeline(pipeline(
        job("a", "exit 1"), job("b", "true", depends_on=["a"]), job("c", "true", depends_on=["b"]),
        job("d", "true"), job("cleanup", "true", depends_on=["a"], **{"if": "always()"}),
        job("on-failure", "true", depends_on=["a"], **{"if": "failure()"}),
    ))
    assert run.status == RunStatus.FAILED
    status = {n: j.status for n, j in run.jobs.items()}
    assert status == {"a": "failed", "b": "skipped", "c": "skipped", "d": "succeeded", "cleanup": "succeeded",
                      "on-failure": "succeeded"}
    assert run.jobs["b"].reason == "dependency a did not succeed"
    assert run.jobs["c"].reason == "dependency b did not succeed"


def test_allow_failure_lets_dependents_run(manager: PipelineManager) -> None:
    run = manager.run_pipeline(pipeline(job("a", "exit 3", allow_failure=True), job("b", "true", depends_on=["a"])))
    assert run.status == RunStatus.SUCCEEDED
    assert run.jobs["a"].status == JobStatus.FAILED and run.jobs["a"].exit_code == 3
    assert run.jobs["b"].status == JobStatus.SUCCEEDED


def test_fail_fast_stops_everything(manager: PipelineManager) -> None:
    run = manager.run_pipeline(pipeline(job("bad", "exit 1"), job("long", "sleep 30"),
                                        job("later", "true", depends_on=["long"]), fail_fast=True))
    assert run.status == RunStatus.FAILED
    assert run.jobs["long"].status == JobStatus.CANCELLED
    assert run.jobs["later"].status == JobStatus.CANCELLED
    assert "fail_fast" in (run.reason or "")


def _overlap(a: Any, b: Any) -> bool:
    return a.started_at < b.finished_at and b.started_at < a.finished_at


def test_independent_jobs_run_in_parallel(manager: PipelineManager) -> None:
    run = manager.run_pipeline(pipeline(*(job(f"j{i}", "sleep 0.4") for i in range(3))), max_workers=3)
    jobs = list(run.jobs.values())
    assert all(_overlap(a, b) for i, a in enumerate(jobs) for b in jobs[i + 1:])


def test_worker_limit_serialises_jobs(manager: PipelineManager) -> None:
    run = manager.run_pipeline(pipeline(*(job(f"j{i}", "sleep 0.2") for i in range(3))), max_workers=1)
    jobs = sorted(run.jobs.values(), key=lambda j: j.started_at or 0)
    assert not any(_overlap(a, b) for i, a in enumerate(jobs) for b in jobs[i + 1:])
    assert sum(1 for j in jobs if (j.queue_wait or 0) > 0.1) == 2  # two of them waited for the worker


def test_a_job_starts_when_its_own_dependencies_finish(manager: PipelineManager) -> None:
    # `fast-next` depends only on `fast`; it must not wait for `slow` in the same stage.
    run = manager.run_pipeline({"name": "t", "source": None, "stages": [
        {"name": "one", "jobs": [job("fast", "true"), job("slow", "sleep 1")]},
        {"name": "two", "jobs": [{"name": "fast-next", "commands": ["true"], "depends_on": ["fast"]}]},
    ]})
    assert run.jobs["fast-next"].finished_at < run.jobs["slow"].finished_at  # type: ignore[operator]


def test_artifacts_are_collected_and_handed_on(manager: PipelineManager) -> None:
    run = manager.run_pipeline(pipeline(
        job("make", "mkdir -p out && echo payload-123 > out/data.txt", artifacts={"paths": ["out/*.txt"]}),
        job("use", "cat out/data.txt", "test \"$(cat out/data.txt)\" = payload-123", depends_on=["make"]),
    ))
    assert run.status == RunStatus.SUCCEEDED
    art = run.jobs["make"].artifacts[0]
    assert art.path == "out/data.txt" and art.size == len("payload-123\n")
    import hashlib

    assert art.sha256 == hashlib.sha256(b"payload-123\n").hexdigest()
    assert Path(art.stored_path).read_text() == "payload-123\n"
    assert "payload-123" in manager.read_log(run.run_id, "use").text
    stored = manager.get_run(run.run_id)
    assert stored.jobs["make"].artifacts == [art]


def test_secrets_are_masked_in_logs_results_and_errors(manager: PipelineManager, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    secret = "s3cr3t-Value-9876"
    monkeypatch.setenv("API_TOKEN", secret)
    run = manager.run_pipeline(pipeline(
        job("leak", "echo token=$API_TOKEN", "echo ${API_TOKEN} >&2", "printf '%s' \"$API_TOKEN\" | rev | rev",
            "exit 1"), secrets=["API_TOKEN"]), {"NOTE": secret})
    text = Path(run.jobs["leak"].log_path or "").read_text()
    assert secret not in text
    assert "token=***" in text
    assert secret not in repr(run)
    for row in manager.store.query("SELECT * FROM runs"):
        assert secret not in " ".join(str(v) for v in tuple(row.values()))
    for path in (tmp_path / "ws").rglob("*"):
        if path.is_file() and path.suffix in (".log", ".json"):
            assert secret not in path.read_text(errors="replace")


def test_missing_secret_is_refused_before_anything_runs(manager: PipelineManager, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(SpecError, match="secret NOPE_NOT_SET has no value"):
        manager.run_pipeline(pipeline(job("a", f"touch {marker}"), secrets=["NOPE_NOT_SET"]))
    assert not marker.exists()
    assert manager.list_runs() == []


def test_matrix_values_and_variables_are_interpolated(manager: PipelineManager) -> None:
    run = manager.run_pipeline(pipeline(job("m", "echo py=${py} greet=${GREETING}", matrix={"py": ["3.11", "3.12"]}),
                                        variables={"GREETING": "hi"}), {"GREETING": "override"})
    assert set(run.jobs) == {"m[py=3.11]", "m[py=3.12]"}
    assert "py=3.12 greet=override" in manager.read_log(run.run_id, "m[py=3.12]").text


def test_conditions_see_the_branch(manager: PipelineManager) -> None:
    spec = pipeline(job("main-only", "true", **{"if": "branch == 'main'"}), job("any", "true"))
    run = manager.run_pipeline(spec, branch="feature")
    assert run.jobs["main-only"].status == JobStatus.SKIPPED
    assert "condition" in (run.jobs["main-only"].reason or "")
    assert run.status == RunStatus.SUCCEEDED
    assert manager.run_pipeline(spec, branch="main").jobs["main-only"].status == JobStatus.SUCCEEDED


def test_events_report_progress(manager: PipelineManager) -> None:
    events: list[Event] = []
    manager.run_pipeline(pipeline(job("a", "true"), job("b", "exit 1", depends_on=["a"])), on_event=events.append)
    kinds = [(e.kind, e.job) for e in events]
    assert kinds[0] == ("run_started", None) and kinds[-1] == ("run_finished", None)
    assert kinds.index(("job_started", "a")) < kinds.index(("job_finished", "a")) < kinds.index(("job_started", "b"))
    assert events[-1].done == 2 and events[-1].total == 2


def test_pipeline_timeout(manager: PipelineManager) -> None:
    run = manager.run_pipeline(pipeline(job("a", "sleep 30"), job("b", "true", depends_on=["a"]), timeout=1))
    assert run.status == RunStatus.FAILED
    assert run.jobs["a"].status == JobStatus.TIMED_OUT
    assert run.jobs["b"].status == JobStatus.SKIPPED
    assert "pipeline timed out" in (run.reason or "")


@pytest.mark.anyio
async def test_cancel_run_kills_the_job(manager: PipelineManager, tmp_path: Path) -> None:
    pidfile = tmp_path / "p.pid"
    started = anyio.Event()

    def on_event(e: Event) -> None:
        if e.kind == "job_started":
            started.set()

    result: dict[str, Any] = {}

    async def go() -> None:
        result["run"] = await manager.arun_pipeline(
            pipeline(job("long", f"echo $$ > {pidfile}; sleep 60", runs_on="local")), on_event=on_event,
            run_id="cancel-me")

    async with anyio.create_task_group() as tg:
        tg.start_soon(go)
        await started.wait()
        while not pidfile.exists() or not pidfile.read_text().strip():
            await anyio.sleep(0.02)
        assert manager.cancel_run("cancel-me") is True
    run = result["run"]
    assert run.status == RunStatus.CANCELLED
    assert run.jobs["long"].status == JobStatus.CANCELLED
    assert not alive(int(pidfile.read_text()))
    assert manager.get_run("cancel-me").status == RunStatus.CANCELLED
    assert manager.cancel_run("cancel-me") is False


@pytest.mark.anyio
async def test_cancelling_the_caller_cancels_the_run(manager: PipelineManager, tmp_path: Path) -> None:
    pidfile = tmp_path / "p.pid"
    with anyio.move_on_after(1.0):
        await manager.arun_pipeline(pipeline(job("long", f"echo $$ > {pidfile}; sleep 60", runs_on="local")),
                                     run_id="caller-gone")
    run = manager.get_run("caller-gone")
    assert run.status == RunStatus.CANCELLED
    assert run.jobs["long"].status == JobStatus.CANCELLED
    deadline = time.monotonic() + 5
    while alive(int(pidfile.read_text())) and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    assert not alive(int(pidfile.read_text()))


def test_metrics_are_recorded(manager: PipelineManager) -> None:
    hog = "python3 -c 'x = bytearray(50_000_000); import time; time.sleep(0.3)'"
    run = manager.run_pipeline(pipeline(job("a", hog)))
    rows = {r["name"]: (r["value"], r["unit"]) for r in manager.store.query(
        "SELECT name, value, unit FROM metrics WHERE run_id = ?", (run.run_id,))}
    assert rows["job.duration"][1] == "s" and rows["job.duration"][0] >= 0.3
    assert rows["job.peak_rss"][1] == "MB" and 45 < rows["job.peak_rss"][0] < 200
    assert rows["job.attempts"] == (1.0, "count")
    assert rows["run.duration"][1] == "s"
    assert rows["stage.duration"][1] == "s"
    assert run.jobs["a"].cpu_seconds is not None and run.jobs["a"].cpu_seconds > 0


def test_logs_tail_and_grep_are_bounded(manager: PipelineManager) -> None:
    run = manager.run_pipeline(pipeline(job("chatty", "for i in $(seq 1 5000); do echo line-$i; done")))
    tail = manager.read_log(run.run_id, "chatty", tail=3)
    assert tail.text.splitlines()[-1].endswith("line-5000")
    assert tail.lines_returned == 3 and tail.truncated and "last 3 lines" in tail.note
    grep = manager.read_log(run.run_id, "chatty", grep=r"line-4\d\d\d$", max_lines=10)
    assert grep.lines_returned == 10 and grep.truncated and "1000 matching lines" in grep.note
    assert grep.text.splitlines()[-1].endswith("line-4999")


@pytest.mark.anyio
async def test_logs_are_streamed_while_the_job_runs(manager: PipelineManager, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    seen: dict[str, str] = {}
    log = manager.workspace / "runs" / "streamed" / "logs" / "writer.log"

    async def watch() -> None:
        with anyio.fail_after(10):
            while not (log.exists() and "before-gate" in log.read_text()):
                await anyio.sleep(0.02)
        seen["text"] = log.read_text()
        gate.touch()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await manager.arun_pipeline(pipeline(job("writer", "echo before-gate",
                                                 f"while [ ! -e {gate} ]; do sleep 0.02; done", "echo after-gate")),
                                    run_id="streamed")
    assert "before-gate" in seen["text"] and "after-gate" not in seen["text"]
    assert "after-gate" in log.read_text()


def test_unknown_pipeline_name_says_what_exists(manager: PipelineManager) -> None:
    manager.create_pipeline(pipeline(job("a", "true"), name="known-one"))
    from engine.errors import NotFoundError

    with pytest.raises(NotFoundError, match="known-one"):
        manager.run_pipeline("no-such-pipeline")


def test_registered_pipeline_runs_by_name(manager: PipelineManager) -> None:
    manager.create_pipeline(pipeline(job("a", "echo by-name"), name="named"))
    run = manager.run_pipeline("named")
    assert run.status == RunStatus.SUCCEEDED
    assert [r.run_id for r in manager.list_runs("named")] == [run.run_id]


def test_job_workspace_gets_the_source_tree(tmp_path: Path) -> None:
    src = tmp_path / "project"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.txt").write_text("source-file")
    (src / ".git").mkdir()
    (src / "pipeline.yaml").write_text(
        "name: src\nstages:\n  - name: s\n    jobs:\n      - name: a\n"
        "        commands: ['cat pkg/mod.txt', 'test ! -e .git', 'echo changed > pkg/mod.txt']\n")
    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(src / "pipeline.yaml")
    assert run.status == RunStatus.SUCCEEDED, manager.read_log(run.run_id, "a").text
    assert (src / "pkg" / "mod.txt").read_text() == "source-file"  # the job changed its own copy only
    assert os.path.isfile(manager.workspace / "runs" / run.run_id / "jobs" / "a" / "workspace" / "pkg" / "mod.txt")


def test_matrix_jobs_collect_artifacts_and_job_variables_see_matrix_values(manager: PipelineManager) -> None:
    run = manager.run_pipeline(pipeline(
        job("t", "mkdir -p out && echo $PYVER > out/report-${py}.txt", matrix={"py": ["3.11", "3.12"]},
            variables={"PYVER": "python-${matrix.py}"}, artifacts=["out/*.txt"]),
        job("sum", "cat out/report-3.11.txt out/report-3.12.txt", depends_on=["t"]),
    ))
    assert run.status == RunStatus.SUCCEEDED
    assert [a.path for a in run.jobs["t[py=3.12]"].artifacts] == ["out/report-3.12.txt"]
    text = manager.read_log(run.run_id, "sum").text
    assert "python-3.11" in text and "python-3.12" in text


def test_language_job_without_commands_runs_the_standard_build(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3]
    src = root / "tests" / "fixtures" / "projects" / "python"
    spec = {"name": "lang", "source": str(src), "stages": [{"name": "build", "jobs": [
        {"name": "package", "language": "python", "artifacts": ["dist/*"]}]}]}
    manager = PipelineManager(tmp_path / "ws")
    run = manager.run_pipeline(spec)
    assert run.status == RunStatus.SUCCEEDED, manager.read_log(run.run_id, "package").text
    names = sorted(Path(a.path).name for a in run.jobs["package"].artifacts)
    assert any(n.endswith(".whl") for n in names), names


def test_state_directory_inside_the_source_is_not_copied_into_jobs(tmp_path: Path) -> None:
    (tmp_path / "app.txt").write_text("app")
    (tmp_path / "pipeline.yaml").write_text(
        "name: nested\nstages:\n  - name: s\n    jobs:\n      - {name: a, commands: ['cat app.txt', 'test ! -e ws']}\n")
    manager = PipelineManager(tmp_path / "ws")  # the engine's state lives inside the source tree
    first = manager.run_pipeline(tmp_path / "pipeline.yaml")
    second = manager.run_pipeline(tmp_path / "pipeline.yaml")
    assert first.status == second.status == RunStatus.SUCCEEDED, manager.read_log(second.run_id, "a").text


def test_peak_memory_of_a_short_allocation_between_coarse_samples_is_measured(manager: PipelineManager) -> None:
    # 50 MB held for 0.2 s, from 0.4 s after the start: missed by samples at 0.05, 0.25 and 0.75 s.
    hog = "python3 -c 'import time; time.sleep(0.4); x = bytearray(50_000_000); time.sleep(0.2)'"
    run = manager.run_pipeline(pipeline(job("a", hog)))
    assert run.jobs["a"].peak_rss_mb is not None and 45 < run.jobs["a"].peak_rss_mb < 200
