"""An MCP client nobody at Warden wrote: the Python `mcp` SDK, driven by a small script.

usage: mcp_client.py URL TOKEN STEPS_JSON
  STEPS_JSON is a list of steps: {"list": true} or {"call": NAME, "args": {...}}.
Prints one JSON object per step: {"tools": [...]} or {"is_error": bool, "text": "..."}; a failed
connection or step prints {"error": "..."} and exits 1.
"""
import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def run(url, token, steps):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="auto") as client:
            for step in steps:
                if "list" in step:
                    tools = (await client.list_tools()).tools
                    print(json.dumps({"tools": sorted(t.name for t in tools)}), flush=True)
                else:
                    result = await client.call_tool(step["call"], step.get("args", {}))
                    text = " ".join(getattr(c, "text", "") for c in result.content)
                    print(json.dumps({"is_error": bool(result.is_error), "text": text}), flush=True)


def main():
    url, token, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    try:
        asyncio.run(run(url, token, steps))
    except BaseException as e:  # noqa: BLE001 - report whatever the SDK raised, as data
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
