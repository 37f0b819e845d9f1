"""Multi-language builds: each language's standard build, with preflight checks, logs and artifacts.

    result = orchestrate_build_pipeline("path/to/project", "auto", "out/")
    result.status, result.artifacts[0].sha256, result.log_path, result.commands

Languages: python (wheel and sdist), javascript (npm ci, build script, npm pack),
go (go build), rust (cargo build --release, binaries copied out); `auto` detects.
"""

from engine.build._languages import BUILDERS, detect_language
from engine.build._models import BuildArtifact, BuildResult, BuildStatus, BuildStep, CommandRecord, Finding
from engine.build._orchestrate import (
    DEFAULT_TIMEOUT,
    aorchestrate_build_pipeline,
    orchestrate_build_pipeline,
    standard_build_commands,
    validate_build_config,
    validate_build_dependencies,
)

__all__ = [
    "BUILDERS",
    "DEFAULT_TIMEOUT",
    "BuildArtifact",
    "BuildResult",
    "BuildStatus",
    "BuildStep",
    "CommandRecord",
    "Finding",
    "aorchestrate_build_pipeline",
    "detect_language",
    "orchestrate_build_pipeline",
    "standard_build_commands",
    "validate_build_config",
    "validate_build_dependencies",
]
