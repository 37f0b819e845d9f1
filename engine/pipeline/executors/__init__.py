"""How a job's script runs. Registry of name -> factory (`runs_on:` picks one; default local)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.pipeline.executors.local import CommandResult, LocalExecutor

__all__ = ["EXECUTORS", "CommandResult", "LocalExecutor"]

EXECUTORS: dict[str, Callable[..., Any]] = {"local": LocalExecutor}
