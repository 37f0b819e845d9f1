"""A ToolSpec becomes an SDK Tool that a plain MCPServer takes through its public `tools=` argument.

`build_tool` builds the `Tool` as `Tool.from_function` would, with the input model as the flat
argument model; this checks that contract against the installed SDK, so an upgrade that changes
how a prebuilt Tool is validated, called or listed fails here first.
"""

from __future__ import annotations

import mcp
import pytest
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from server.tools._registry import ToolSpec, build_tool
from server.trust import Level


class EchoInput(BaseModel):
    text: str = Field(description="What to echo.", min_length=1)
    times: int = Field(default=1, ge=1, le=3)


class EchoOutput(BaseModel):
    summary: str
    echoed: list[str]


async def echo(args: EchoInput, ctx: Context) -> EchoOutput:
    """Echo a text."""
    assert isinstance(args, EchoInput)   # the validated model itself, not its fields
    return EchoOutput(summary=f"{args.times} echo(es)", echoed=[args.text] * args.times)


SPEC = ToolSpec(name="echo", fn=echo, input_model=EchoInput, title="Echo", description=echo.__doc__ or "",
                annotations=ToolAnnotations(read_only_hint=True), default_level=Level.UNTRUSTED)


@pytest.mark.anyio
async def test_a_prebuilt_tool_is_listed_and_called_with_flat_arguments() -> None:
    server: MCPServer[None] = MCPServer("t", tools=[build_tool(SPEC, Level.VERIFIED)])
    async with mcp.Client(server) as client:
        (listed,) = (await client.list_tools()).tools
        ok = await client.call_tool("echo", {"text": "hi", "times": 2})
        bad = await client.call_tool("echo", {"text": "", "times": 9})
    assert listed.name == "echo" and listed.title == "Echo" and listed.description == "Echo a text."
    assert set(listed.input_schema["properties"]) == {"text", "times"}   # flat: no nested "args"
    assert listed.input_schema["required"] == ["text"]
    assert listed.output_schema is not None and "echoed" in listed.output_schema["properties"]
    assert listed.annotations is not None and listed.annotations.read_only_hint is True
    assert listed.meta == {"cicd/trust_level": "verified"}
    assert not ok.is_error and ok.structured_content == {"summary": "2 echo(es)", "echoed": ["hi", "hi"]}
    assert bad.is_error and "text" in str(bad.content) and "times" in str(bad.content)
