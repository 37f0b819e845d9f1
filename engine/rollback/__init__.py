"""Rollbacks: plan from deployment history (pure), execute on the target journaled step by step,
resume after a crash. The operations themselves live in `engine.deploy.operations`.

`import engine.rollback` stays cheap: names load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.rollback' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
