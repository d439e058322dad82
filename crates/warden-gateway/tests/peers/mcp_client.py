"""An MCP client nobody here wrote (the official Python `mcp` SDK) driving Warden's gateway.

Usage: mcp_client.py URL TOKEN MODE [CALL...]
  URL    the gateway endpoint, e.g. http://127.0.0.1:PORT/mcp/everything
  TOKEN  the agent's Warden token, sent as `Authorization: Bearer TOKEN`
  MODE   `auto` (probe 2026-07-28 `server/discover`, fall back to `initialize`) or `legacy`
  CALL   TOOL=JSON_ARGUMENTS, called in order, e.g. 'echo={"message": "hi"}'; TOOL+progress=…
         asks for progress and reports the progress values the SDK delivered

Prints one JSON object: the negotiated protocol version, the server name, the listed tool names, for
each call its `isError` and text (or the error of a protocol-level failure), and the wire: each HTTP
request's method with its JSON-RPC method, and the response status.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main() -> None:
    url, token, mode, *calls = sys.argv[1:]
    wire = []

    async def log_response(response):
        request = response.request
        try:
            rpc = json.loads(request.content or b"{}").get("method")
        except ValueError:
            rpc = None
        wire.append(f"{request.method} {rpc} {response.status_code}")

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, event_hooks={"response": [log_response]}
    )
    out = {"calls": [], "wire": wire}
    async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        out["protocol_version"] = client.protocol_version
        info = client.server_info
        out["server"] = info.name if info is not None else None
        out["tools"] = [tool.name for tool in (await client.list_tools()).tools]
        for call in calls:
            name, _, arguments = call.partition("=")
            progress = None
            if name.endswith("+progress"):
                name, progress = name[: -len("+progress")], []

            async def on_progress(value, total, message, seen=progress):
                seen.append([value, total])

            try:
                result = await client.call_tool(
                    name,
                    json.loads(arguments or "{}"),
                    progress_callback=on_progress if progress is not None else None,
                )
                texts = [block.text for block in result.content if getattr(block, "text", None) is not None]
                entry = {"tool": name, "is_error": result.is_error, "text": "\n".join(texts)}
                if progress is not None:
                    entry["progress"] = progress
                out["calls"].append(entry)
            except Exception as err:  # a JSON-RPC error from the gateway
                out["calls"].append({"tool": name, "error": str(err)})
    print(json.dumps(out))


asyncio.run(main())
