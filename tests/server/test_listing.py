"""The tools/list an agent pays for on every session: within 4,000 tokens for a trusted caller
(characters / 4 of the JSON on the wire), with nothing said twice."""

from __future__ import annotations

import re

import mcp
import pytest

from tests.server.conftest import MakeServer

BUDGET_TOKENS = 4000


@pytest.mark.anyio
async def test_the_whole_listing_for_a_trusted_caller_fits_in_4000_tokens(make_server: MakeServer) -> None:
    async with mcp.Client(make_server()) as client:
        listing = await client.list_tools()
    wire = listing.model_dump_json(by_alias=True, exclude_none=True)
    assert len(listing.tools) >= 15
    assert len(wire) / 4 <= BUDGET_TOKENS, f"{len(wire)} characters, {len(wire) // 4} tokens"


@pytest.mark.anyio
async def test_no_sentence_is_said_twice_and_every_tool_says_when_to_use_it(make_server: MakeServer) -> None:
    async with mcp.Client(make_server()) as client:
        tools = (await client.list_tools()).tools
    seen: dict[str, str] = {}
    for tool in tools:
        assert tool.description and len(tool.description) >= 40, tool.name
        for sentence in re.split(r"(?<=[.:;])\s+", tool.description):
            key = sentence.strip().lower()
            if len(key) > 20:
                assert key not in seen, f"{tool.name} repeats {seen.get(key)}: {sentence!r}"
                seen[key] = tool.name
        for name, prop in tool.input_schema["properties"].items():
            text = prop.get("description", "")
            assert len(text) <= 120, (tool.name, name, text)
