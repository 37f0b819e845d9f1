"""Settings read from the environment (the original design's variable names)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "default_workspace", "get_settings", "resolve_settings"]


def default_workspace() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "cicd-mcp"


class Settings(BaseSettings):
    """Engine settings. Every field is read from the environment variable of the same name."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore")

    PIPELINE_WORKSPACE: Path = Field(
        default_factory=default_workspace,
        description="Root of the engine's state: state.db, runs/<run_id>/ (workspaces, logs, artifacts).",
    )
    PIPELINE_STORE_URL: str | None = Field(
        default=None,
        description="postgresql://user:password@host:port/db: state in a shared PostgreSQL database instead of "
                    "<PIPELINE_WORKSPACE>/state.db (see docs/team.md).",
    )
    PIPELINE_LEASE_SECONDS: float = Field(
        default=30.0, gt=0, le=3600,
        description="How long a run's runner may go silent before another process takes the run for dead "
                    "(it renews its lease well within); also how long store writes retry a lost database.",
    )
    PIPELINE_CONFIG_PATH: Path | None = Field(
        default=None,
        description="A pipeline file, or a directory of <name>.yaml pipeline files, looked up by name.",
    )
    PIPELINE_MAX_WORKERS: int = Field(
        default_factory=lambda: max(2, os.cpu_count() or 2), ge=1, le=1024,
        description="How many jobs run at once.",
    )
    PIPELINE_EXECUTOR: str = Field(
        default="sandbox", description="Executor kind for jobs without `runs_on:` (see engine.pipeline.executors); "
        "sandbox falls back to local, with a warning on the run, where bubblewrap cannot run.",
    )
    PIPELINE_SSH_POOLS: Path | None = Field(
        default=None, description="YAML file of the ssh executor's host pools (runs_on: ssh, ssh:<pool>).",
    )
    PIPELINE_KUBERNETES: Path | None = Field(
        default=None, description="YAML file of the kubernetes executor's settings (runs_on: kubernetes).",
    )
    PIPELINE_SECRETS_FILE: Path | None = Field(
        default=None, description="A KEY=VALUE file that secrets are read from when not in the environment."
    )
    ARTIFACT_STORAGE_PATH: Path | None = Field(
        default=None, description="Where artifacts are kept; default <PIPELINE_WORKSPACE>/runs.",
    )
    ARTIFACT_REGISTRY: str | None = Field(
        default=None, description="Docker registry (host[:port][/path]) that docker targets tag and push the images "
        "they build to, for environments without `docker_registry`; unset: images stay on the engine.",
    )
    CI_PROVIDER: str = Field(
        default="local", description="Which CI system the run is attributed to (local, github, gitlab, ...).",
    )
    DEPLOY_TARGET: str = Field(default="local", description="Default deploy target kind.")
    DEPLOY_STRATEGY: str = Field(default="rolling", description="Default deploy strategy.")
    ROLLBACK_AUTO_TRIGGER: bool = Field(default=True, description="Roll back automatically on a failed deploy.")
    ROLLBACK_DEFAULT_STRATEGY: str = Field(default="immediate", description="Default rollback strategy.")

    @property
    def workspace(self) -> Path:
        return self.PIPELINE_WORKSPACE.expanduser().resolve()

    @property
    def artifact_root(self) -> Path:
        root = self.ARTIFACT_STORAGE_PATH or self.workspace / "runs"
        return root.expanduser().resolve()


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (e.g. a workspace_dir argument) on top."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]


def resolve_settings(workspace_dir: str | os.PathLike[str] | None, settings: Settings | None) -> Settings:
    """The settings an engine object uses: `settings` (default: the environment's), with an
    explicit `workspace_dir` taking precedence over the workspace they name."""
    if settings is None:
        return get_settings(PIPELINE_WORKSPACE=workspace_dir)
    if workspace_dir is None:
        return settings
    return settings.model_copy(update={"PIPELINE_WORKSPACE": Path(workspace_dir)})
