"""cicd-mcp's MCP server: the engine's tools behind a trust gate, over stdio, SSE and streamable HTTP.

`build_server(policy, ...)` (server.app) makes the server; `main()` (server.cli) is
`python -m server`. Names load on first use so that the token and audit commands do not
import the MCP SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["build_server", "load_policy", "main"]

_LAZY = {"build_server": "server.app", "load_policy": "server.trust", "main": "server.cli"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'server' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
