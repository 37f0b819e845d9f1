"""The server's tools: one thin function per tool (input model → engine → output model).

`all_specs()` lists every tool the server knows; `server.app.build_server` registers those
whose engine module exists. To add a tool: write it in a module here with a `SPECS` list and
name the module in `_MODULES`.
"""

from __future__ import annotations

import importlib

from server.tools._registry import ToolSpec, available, register

__all__ = ["ToolSpec", "all_specs", "available", "register"]

_MODULES = (
    "server.tools.runs", "server.tools.health", "server.tools.insights", "server.tools.deploy", "server.tools.rollback",
    "server.tools.compat",
)


def all_specs() -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    for name in _MODULES:
        specs.extend(importlib.import_module(name).SPECS)
    return specs
