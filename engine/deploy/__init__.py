"""Deployments: put a version of a service onto a target, prove it healthy, or put the old one back.

`import engine.deploy` stays cheap: names load on first use, and targets import their SDKs
(docker, paramiko, kubernetes) only when an environment uses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.deploy.config import Environment, EnvironmentType
    from engine.deploy.orchestrator import (
        DeploymentOrchestrator,
        DeploymentResult,
        deploy_artifacts,
        manage_deployments,
    )
    from engine.deploy.states import DeploymentStatus

__all__ = [
    "DeploymentOrchestrator",
    "DeploymentResult",
    "DeploymentStatus",
    "Environment",
    "EnvironmentType",
    "deploy_artifacts",
    "manage_deployments",
]

_LAZY = {
    "DeploymentOrchestrator": "engine.deploy.orchestrator",
    "DeploymentResult": "engine.deploy.orchestrator",
    "deploy_artifacts": "engine.deploy.orchestrator",
    "manage_deployments": "engine.deploy.orchestrator",
    "DeploymentStatus": "engine.deploy.states",
    "Environment": "engine.deploy.config",
    "EnvironmentType": "engine.deploy.config",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
