"""Drives `mnemosyne serve mcp` with the Python MCP SDK (the `mcp` package, 2.x).

Usage: python mcp_client.py MNEMOSYNE_BINARY DB_PATH
Run by tests/serve_mcp.rs; prints "python mcp client: ok" when every check passed.
"""

import asyncio
import os
import sys

from mcp import ClientSession, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client

TOOLS = [
    "context",
    "diagnostics",
    "doc_edit",
    "doc_list",
    "doc_read",
    "doc_undo",
    "doc_write",
    "forget",
    "get",
    "link",
    "list",
    "recall",
    "remember",
    "update",
    "work_claim",
    "work_complete",
    "work_fail",
    "work_get",
    "work_heartbeat",
    "work_list",
    "work_review",
    "work_submit",
]


async def main(binary: str, db: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMOSYNE_")}
    params = StdioServerParameters(command=binary, args=["--db", db, "serve", "mcp"], env=env)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.server_info.name == "mnemosyne", init

            tools = await session.list_tools()
            names = sorted(tool.name for tool in tools.tools)
            assert names == TOOLS, names
            for tool in tools.tools:
                assert tool.description, tool.name
                assert tool.input_schema.get("type") == "object", tool

            stored = await session.call_tool(
                "remember",
                {"content": "python clients speak MCP over stdio too", "tags": ["python"]},
            )
            assert not stored.is_error, stored
            memory_id = stored.structured_content["id"]
            await session.call_tool("remember", {"content": "an unrelated note about tea"})

            recall = await session.call_tool("recall", {"query": "python stdio"})
            assert not recall.is_error, recall
            hits = recall.structured_content["hits"]
            assert hits and hits[0]["memory"]["id"] == memory_id, hits

            # Errors: each is answered, and the session goes on.
            oversized = await session.call_tool("remember", {"content": "x" * (70 * 1024)})
            assert oversized.is_error, oversized
            assert oversized.structured_content["error"]["code"] == "invalid_input", oversized
            wrong_type = await session.call_tool("recall", {"query": 5})
            assert wrong_type.is_error, wrong_type
            try:
                unknown = await session.call_tool("no_such_tool", {})
                assert unknown.is_error, unknown
            except MCPError as error:
                assert "not found" in str(error), error

            got = await session.call_tool("get", {"id": memory_id})
            assert not got.is_error and got.structured_content["tags"] == ["python"], got
    print("python mcp client: ok")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
