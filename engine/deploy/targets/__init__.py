"""Deploy targets: where a service runs. The contract is in `engine.deploy.targets.base`."""

from engine.deploy.targets.base import (
    TARGETS,
    Address,
    Instance,
    Release,
    Target,
    TargetConfig,
    TargetContext,
)

__all__ = ["TARGETS", "Address", "Instance", "Release", "Target", "TargetConfig", "TargetContext"]
