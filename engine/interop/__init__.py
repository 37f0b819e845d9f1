"""Meet users where they are: GitHub Actions and GitLab CI.

    text, warnings = export_pipeline("pipeline.yaml", "github-actions")   # or "gitlab-ci"
    spec = load_github_workflow(".github/workflows/ci.yml", skip_unsupported=True)
    PipelineManager(...).run_pipeline(pipeline_data(spec))

Exports list what they could not express as warnings (also as comments at the top of
the file); nothing is dropped silently. Imported jobs that cannot run locally fail
with the reason, or are skipped with `skip_unsupported`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import InputError
from engine.interop.github_export import export_github_actions
from engine.interop.github_import import (
    WorkflowImport,
    import_github_workflow,
    is_github_workflow,
    load_github_workflow,
    pipeline_data,
)
from engine.interop.gitlab import export_gitlab_ci
from engine.spec.model import PipelinePlan, PipelineSpec

__all__ = [
    "EXPORTERS",
    "WorkflowImport",
    "export_pipeline",
    "import_github_workflow",
    "is_github_workflow",
    "load_github_workflow",
    "pipeline_data",
]

Source = PipelineSpec | PipelinePlan | str | os.PathLike[str] | Mapping[str, Any]

EXPORTERS: dict[str, Callable[[Source], tuple[str, list[str]]]] = {
    "github-actions": export_github_actions,
    "gitlab-ci": export_gitlab_ci,
}


def export_pipeline(source: Source, format: str) -> tuple[str, list[str]]:
    """The pipeline written for another CI system: (YAML text, warnings about what could not be expressed).

    Raises:
        InputError: unknown format.
        SpecError: the pipeline is invalid.
        NotFoundError: the pipeline file does not exist.
    """
    exporter = EXPORTERS.get(format)
    if exporter is None:
        raise InputError(f"unknown export format {format!r}; known: " + ", ".join(sorted(EXPORTERS)))
    return exporter(source)
