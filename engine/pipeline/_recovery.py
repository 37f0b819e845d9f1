"""Start-up recovery of runs whose runner process died, importable without the runner.

A server calls this before it answers its first request, so it imports only the store, the run
state table and process identity; an executor is loaded only when a dead run left a job to kill.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from engine._process import owner_alive
from engine.errors import InputError
from engine.pipeline.states import JobStatus, RunStatus, check_run_move
from engine.store import Store, runs

__all__ = ["recover_interrupted"]

_QUEUED_GRACE = 60.0


def recover_interrupted(store: Store) -> list[str]:
    """Mark runs whose runner died as `interrupted` and kill what they left running.

    A runner is dead when its process on this host is gone, or when its lease ran out
    (wherever it ran). Each job that was running left its executor's name and recovery
    record; that executor kills what the record names — on the runner's own host, at once
    or at that host's next recovery. Returns the run ids it marked.
    """
    from engine.pipeline.executors import Executor, make_executor

    marked: list[str] = []
    executors: dict[str, Executor] = {}

    def recover(kind: str | None, record: dict[str, Any]) -> None:
        kind = kind or "local"
        if kind not in executors:
            try:
                executors[kind] = make_executor(kind)
            except InputError:   # an executor this process does not have (a plugin, a test's fake)
                return
        executors[kind].recover(record)

    here = socket.gethostname()
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
        # What a runner on another machine left (process groups, containers) is that machine's
        # to kill: its records stay for its next start there (the loop below).
        local = not row["owner_host"] or row["owner_host"] == here
        if local:
            why = f"interrupted: the runner process (pid {row['owner_pid']}) is gone"
            for _job, kind, record in runs.job_recovery_records(store, run_id):
                recover(kind, record)
        else:
            why = f"interrupted: the runner on {row['owner_host']} stopped renewing its lease"
        runs.mark_interrupted(store, run_id, status=status.value, job_status=JobStatus.CANCELLED.value, reason=why,
                              now=time.time(), keep_recovery=not local)
        marked.append(run_id)
    for run_id, job, kind, record in runs.orphaned_recovery_records(store, here):
        recover(kind, record)
        runs.clear_recovery_record(store, run_id, job)
    return marked
