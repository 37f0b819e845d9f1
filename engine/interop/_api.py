"""Export to other CI systems by format name."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import InputError
from engine.interop.github_export import export_github_actions
from engine.interop.gitlab import export_gitlab_ci
from engine.spec.model import PipelinePlan, PipelineSpec

__all__ = ["EXPORTERS", "export_pipeline"]

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
