"""The transports `serve` offers.

A leaf: the command line builds its parser from it without loading the MCP SDK or pydantic.
"""

from __future__ import annotations

__all__ = ["TRANSPORTS"]

TRANSPORTS = ("stdio", "sse", "http")
