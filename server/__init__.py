"""cicd-mcp's MCP server: the engine's tools behind a trust gate, over stdio, SSE and streamable HTTP.

`build_server(policy, ...)` (server.app) makes the server; `main()` (server.cli) is
`cicd-mcp` and `python -m server`. Names load on first use so that the token and audit commands do not
import the MCP SDK.
"""

from __future__ import annotations

from engine._lazy import lazy_exports

__all__ = ["build_server", "load_policy", "main"]

_LAZY = {"build_server": "server.app", "load_policy": "server.trust", "main": "server.cli"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
