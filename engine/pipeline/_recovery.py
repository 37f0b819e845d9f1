"""Start-up recovery of runs whose runner process died, importable without the runner.

A server calls this before it answers its first request, so it imports only the store, the run
state table and process identity; an executor is loaded only when a dead run left a job to kill.
"""

from __future__ import annotations

import time

from engine._process import owner_alive
from engine.errors import InputError
from engine.pipeline.states import JobStatus, RunStatus, check_run_move
from engine.store import Store, runs

__all__ = ["recover_interrupted"]

_QUEUED_GRACE = 60.0


def recover_interrupted(store: Store) -> list[str]:
    """Mark runs whose runner process died as `interrupted` and kill what they left running.

    Each job that was running left its executor's name and recovery record; that executor
    kills what the record names. Returns the run ids it marked.
    """
    from engine.pipeline.executors import Executor, make_executor

    marked: list[str] = []
    executors: dict[str, Executor] = {}
    now = time.time()
    for row in runs.unfinished_runs(store):
        if owner_alive(row):
            continue
        if row["owner_pid"] is None and now - float(row["created_at"] or 0) < _QUEUED_GRACE:
            # Recorded a moment ago by a runner that has not started it yet (its owner is written
            # when it starts): not orphaned, only young.
            continue
        run_id = row["run_id"]
        status = check_run_move(run_id, RunStatus(row["status"]), RunStatus.INTERRUPTED)
        why = f"interrupted: the runner process (pid {row['owner_pid']}) is gone"
        for _job, kind, record in runs.job_recovery_records(store, run_id):
            kind = kind or "local"
            if kind not in executors:
                try:
                    executors[kind] = make_executor(kind)
                except InputError:   # an executor this process does not have (a plugin, a test's fake)
                    continue
            executors[kind].recover(record)
        runs.mark_interrupted(store, run_id, status=status.value, job_status=JobStatus.CANCELLED.value, reason=why,
                              now=time.time())
        marked.append(run_id)
    return marked
