"""tool_manifests/: one JSON file per registered tool, generated from the server itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.gate import CicdServer
from server.tools._registry import input_schema, output_schema

__all__ = ["check_manifests", "render_manifests", "write_manifests"]


def render_manifests(server: CicdServer) -> dict[str, str]:
    """file name → JSON text for every registered tool."""
    out: dict[str, str] = {}
    for tool in sorted(server.registered_tools(), key=lambda t: t.name):
        spec = server.specs.get(tool.name)
        doc: dict[str, Any] = {
            "name": tool.name,
            "title": tool.title,
            "description": tool.description,
            # From the models, never from the tool: the server's tools are built from these files.
            "inputSchema": input_schema(spec) if spec else tool.parameters,
            "outputSchema": output_schema(spec) if spec else tool.output_schema,
            "annotations": tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
            if tool.annotations else None,
            "trustLevel": (tool.meta or {}).get("cicd/trust_level"),
            "defaultTrustLevel": str(spec.default_level) if spec else None,
            "needsConfirmationOn": "destructive calls to environments listed under confirm.environments"
            if spec is not None and spec.destructive else None,
        }
        out[f"{tool.name}.json"] = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return out


def write_manifests(server: CicdServer, directory: Path) -> list[Path]:
    """Write the manifests, removing those of tools no longer registered."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = render_manifests(server)
    for old in directory.glob("*.json"):
        if old.name not in wanted:
            old.unlink()
    paths = []
    for name, text in wanted.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def check_manifests(server: CicdServer, directory: Path) -> list[str]:
    """What differs between the directory and the registered tools (empty: up to date)."""
    wanted = render_manifests(server)
    problems = []
    have = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.json")} if directory.is_dir() else {}
    for name, text in wanted.items():
        if name not in have:
            problems.append(f"{directory / name} is missing")
        elif have[name] != text:
            problems.append(f"{directory / name} is out of date")
    problems.extend(f"{directory / name} describes a tool that is not registered" for name in have
                    if name not in wanted)
    return problems
