"""Rollbacks: plan from deployment history (pure), execute on the target journaled step by step,
resume after a crash. The operations themselves live in `engine.deploy.operations`.

`import engine.rollback` stays cheap: names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.rollback.executor import RollbackExecution, StepResult
    from engine.rollback.manager import RollbackManager, handle_rollback
    from engine.rollback.plans import RollbackPlan, RollbackStep, RollbackStrategy

__all__ = [
    "RollbackExecution",
    "RollbackManager",
    "RollbackPlan",
    "RollbackStep",
    "RollbackStrategy",
    "StepResult",
    "handle_rollback",
]

_LAZY = {
    "RollbackExecution": "engine.rollback.executor",
    "StepResult": "engine.rollback.executor",
    "RollbackManager": "engine.rollback.manager",
    "handle_rollback": "engine.rollback.manager",
    "RollbackPlan": "engine.rollback.plans",
    "RollbackStep": "engine.rollback.plans",
    "RollbackStrategy": "engine.rollback.plans",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
