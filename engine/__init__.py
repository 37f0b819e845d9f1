"""cicd-mcp engine: pipelines, deployments, rollbacks and insights, usable without the server.

Names are imported lazily so that `import engine` stays cheap (docker, paramiko and
kubernetes load only when a target that needs them is first used).
"""

from __future__ import annotations

from engine._lazy import lazy_exports

__all__ = [
    "DeploymentOrchestrator",
    "Environment",
    "EnvironmentType",
    "PipelineManager",
    "PipelineMonitor",
    "PipelineOptimizer",
    "RollbackManager",
    "RollbackStrategy",
    "handle_rollback",
    "manage_deployments",
    "optimize_pipeline_performance",
    "orchestrate_build_pipeline",
    "run_pipeline",
]

_LAZY = {
    "PipelineManager": "engine.pipeline.manager",
    "run_pipeline": "engine.pipeline.manager",
    "DeploymentOrchestrator": "engine.deploy",
    "Environment": "engine.deploy",
    "EnvironmentType": "engine.deploy",
    "manage_deployments": "engine.deploy",
    "RollbackManager": "engine.rollback",
    "RollbackStrategy": "engine.rollback",
    "handle_rollback": "engine.rollback",
    "PipelineOptimizer": "engine.insights",
    "PipelineMonitor": "engine.insights",
    "optimize_pipeline_performance": "engine.insights",
    "orchestrate_build_pipeline": "engine.build",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
