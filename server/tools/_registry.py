"""ToolSpec, and how a spec becomes an MCP tool.

A spec names the engine module it needs (`requires`); the tool is registered only when
that module exists, so a tool never stands in for work the engine cannot do yet. Adding
one later is one `ToolSpec(...)` entry in its module's `SPECS`.

`build_tool` makes the SDK's `Tool` for a spec; the server is given them through the
SDK's public constructor argument (`MCPServer(tools=[...])`, see `server.app`).
"""

from __future__ import annotations

import importlib.util
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.resolve import build_resolver_plans, find_resolved_parameters
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.context_injection import find_context_parameter
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp_types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, ValidationError

from server.state import AppState
from server.trust import Level

__all__ = ["ToolSpec", "available", "build_tool", "input_schema", "output_schema"]


@dataclass(frozen=True)
class ToolSpec:
    """Everything the server, the gate and the manifests need to know about one tool."""

    name: str
    fn: Callable[..., Any]           # async (args: InputModel, ctx: Context, confirmed: Confirmed) -> OutputModel
    input_model: type[BaseModel]
    title: str
    description: str
    annotations: ToolAnnotations
    default_level: Level
    requires: tuple[str, ...] = ()   # engine modules that must exist for the tool to be registered
    # Where a call lands (for confirmation): the environments it would change, from the arguments as the
    # SDK parses them; may read the store and files. Raising means "cannot tell": the gate refuses.
    environment: Callable[[dict[str, Any], AppState], str | frozenset[str] | None] | None = None
    # A call that reaches another tool (the compat tool): (tool name, its arguments) or None.
    delegate: Callable[[dict[str, Any]], tuple[str, dict[str, Any]] | None] | None = None

    @property
    def read_only(self) -> bool:
        return bool(self.annotations.read_only_hint)

    @property
    def destructive(self) -> bool:
        # The MCP default for a tool that is not read-only is destructive.
        return not self.read_only and self.annotations.destructive_hint is not False


def available(spec: ToolSpec) -> bool:
    """True when every engine module the tool needs exists.

    Looked up as files, not imported: `find_spec("a.b.c")` would import `a.b` (and an engine
    package's `__init__` may pull in its whole area), which the cold start cannot afford.
    """
    return all(_module_exists(module) for module in spec.requires)


def _module_exists(dotted: str) -> bool:
    top, _, rest = dotted.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return False
    parts = rest.split(".") if rest else []
    for root in spec.submodule_search_locations:
        base = Path(root).joinpath(*parts)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return False


def _flat_arguments(model: type[BaseModel], param: str) -> type[ArgModelBase]:
    """An argument model whose wire fields are `model`'s own (flat, not nested under `param`),
    handing the tool function one validated `model` instance."""

    class Flat(model, ArgModelBase):  # type: ignore[valid-type,misc]
        model_config = ConfigDict(title=model.__name__)

        def model_dump_one_level(self) -> dict[str, Any]:
            # A Flat is a `model` already (validators and all): hand it over as is.
            return {param: self}

    Flat.__name__ = f"{model.__name__}Arguments"
    return Flat


_DROP = ("title", "default")
# Checked by the server with a message that names the rule; in the listing they only cost context.
_SERVER_CHECKED = ("pattern", "maxLength", "minLength", "maxItems")


def _compact(node: Any, *, keep_descriptions: bool) -> Any:
    """A schema without what costs an agent's context and tells it nothing: pydantic's `title` on
    every property, `default: null`, the `anyOf [X, null]` of every optional field."""
    if isinstance(node, list):
        return [_compact(v, keep_descriptions=keep_descriptions) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP and not isinstance(value, dict | list) and (key == "title" or value is None):
            continue
        if key == "description" and not keep_descriptions and isinstance(value, str):
            continue
        if key in _SERVER_CHECKED and not isinstance(value, dict | list):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: _compact(v, keep_descriptions=keep_descriptions) for k, v in value.items()}
            continue
        out[key] = _compact(value, keep_descriptions=keep_descriptions)
    options = out.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        (kept,) = [o for o in options if o != {"type": "null"}]
        del out["anyOf"]
        out = {**kept, **out}
    return out


def _loose_output(schema: dict[str, Any]) -> dict[str, Any]:
    """The output schema an agent reads: the field names, `summary` first (a text it can read
    without parsing the rest); their structure is in the results themselves. Results are still
    validated against the full model on the server."""
    props: dict[str, Any] = {name: {} for name in schema.get("properties") or {}}
    if "summary" in props:
        props["summary"] = {"type": "string"}
    return {"type": "object", "properties": props, "required": ["summary"] if "summary" in props else []}


# On every tool, so said once (in the server's instructions and docs/agents.md), not fifteen times.
_MAX_CHARS_LISTED = {"type": "integer"}


def input_schema(spec: ToolSpec) -> dict[str, Any]:
    flat = _flat_arguments(spec.input_model, "args")
    schema: dict[str, Any] = _compact(flat.model_json_schema(by_alias=True), keep_descriptions=True)
    props = schema.get("properties") or {}
    if "max_chars" in props:
        # Its range is checked on the server, with a message that names it.
        props["max_chars"] = _MAX_CHARS_LISTED
    return schema


def output_schema(spec: ToolSpec) -> dict[str, Any]:
    model = typing.get_type_hints(spec.fn)["return"]
    return _loose_output(model.model_json_schema(by_alias=True))


class _Tool(Tool):
    """The SDK's Tool, whose argument errors read as one line per field (server.tools._validation)."""

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        try:
            return await super().run(arguments, context, convert_result)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(cause, ValidationError):
                raise
            from server.tools._validation import argument_errors

            # The cause stays the ValidationError: the SDK logs its field names, never the values.
            message = argument_errors(cause, self.fn_metadata.arg_model)
            raise ToolError(f"Error executing tool {self.name}: {message}") from cause


def build_tool(spec: ToolSpec, level: Level, prebuilt: dict[str, Any] | None = None) -> Tool:
    """The MCP tool of `spec`, with its input model as the tool's flat argument schema;
    `level` (the policy's) is shown to clients in the tool's `_meta`.

    Built as `Tool.from_function` builds it, except that the argument model is the input model
    itself (clients send its fields at the top level, the function gets `args: InputModel`),
    which also spares the schema of the nested form that would be thrown away: JSON-schema
    generation is most of the server's start-up cost beyond the SDK's own.
    """
    fn = spec.fn
    hints = typing.get_type_hints(fn)

    async def bounded(**kwargs: Any) -> Any:
        # Every result within the call's budget (server.tools._budget); compat calls `spec.fn`
        # directly and is bounded by its own wrapper.
        from server.tools._budget import max_chars, shape

        out = fn(**kwargs)
        if inspect.isawaitable(out):
            out = await out
        if not isinstance(out, BaseModel) or isinstance(out, InputRequiredResult | CallToolResult):
            return out
        args = kwargs.get("args")
        return shape(out, max_chars(getattr(args, "max_chars", None)))

    flat = _flat_arguments(spec.input_model, "args")
    resolved = find_resolved_parameters(fn)
    return _Tool(
        fn=bounded,
        name=spec.name,
        title=spec.title,
        description=inspect.cleandoc(spec.description),
        parameters=prebuilt["inputSchema"] if prebuilt else input_schema(spec),
        fn_metadata=FuncMetadata(arg_model=flat, output_model=hints["return"],
                                 output_schema=prebuilt["outputSchema"] if prebuilt else output_schema(spec)),
        is_async=True,
        context_kwarg=find_context_parameter(fn),
        resolved_params=dict(resolved),
        resolver_plans=build_resolver_plans(resolved, {"args"}),
        annotations=spec.annotations.model_copy(update={"title": None}),
        meta={"cicd/trust_level": str(level)},
    )
