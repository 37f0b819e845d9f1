"""Meet users where they are: GitHub Actions and GitLab CI.

    text, warnings = export_pipeline("pipeline.yaml", "github-actions")   # or "gitlab-ci"
    spec = load_github_workflow(".github/workflows/ci.yml", skip_unsupported=True)
    PipelineManager(...).run_pipeline(pipeline_data(spec))

Exports list what they could not express as warnings (also as comments at the top of
the file); nothing is dropped silently. Imported jobs that cannot run locally fail
with the reason, or are skipped with `skip_unsupported`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.interop._api import EXPORTERS, export_pipeline
    from engine.interop.github_import import (
        WorkflowImport,
        import_github_workflow,
        is_github_workflow,
        load_github_workflow,
        pipeline_data,
    )

__all__ = [
    "EXPORTERS",
    "WorkflowImport",
    "export_pipeline",
    "import_github_workflow",
    "is_github_workflow",
    "load_github_workflow",
    "pipeline_data",
]

# Lazy: a job's runtime (`_gha_runtime`) imports a sibling module in every job and must not
# pay for the exporters and the spec models.
__getattr__, __dir__ = lazy_exports(__name__, {
    "EXPORTERS": "engine.interop._api",
    "export_pipeline": "engine.interop._api",
    **dict.fromkeys(("WorkflowImport", "import_github_workflow", "is_github_workflow", "load_github_workflow",
                     "pipeline_data"), "engine.interop.github_import"),
})
