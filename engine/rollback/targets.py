"""Where a rollback call lands, found the way `RollbackManager.execute_rollback` finds its plan.

A caller may name a plan or a deployment, and the manager accepts either in either argument:
a plan id first, then a deployment id, then a deployment name. Whoever decides about a rollback
before it runs (the server's trust gate) must resolve the reference the same way, or a plan id
given as a deployment (or the reverse) lands somewhere the decision never looked.
"""

from __future__ import annotations

from engine.deploy.history import DeploymentHistory
from engine.errors import NotFoundError
from engine.rollback._journal import Journal
from engine.store import Store

__all__ = ["rollback_environment"]


def rollback_environment(store: Store, ref: str) -> str:
    """The environment `execute_rollback(ref)` would change.

    Raises:
        NotFoundError: `ref` is neither a plan id, a deployment id nor a deployment name.
    """
    try:
        return Journal(store).get_plan(ref).environment
    except NotFoundError:
        pass
    history = DeploymentHistory(store)
    try:
        return history.get(ref).environment
    except NotFoundError:
        rec = history.latest_by_name(ref)
    if rec is None:
        raise NotFoundError(f"no rollback plan, deployment id or deployment name {ref!r}")
    return rec.environment
