// A minimal stdio MCP server for what server-everything cannot show: it records the cancellations it
// receives, sends the client requests of its own, prints a line that is not JSON-RPC, and answers
// `initialize` with the protocol version in $SCRIPTED_VERSION (default 2025-06-18).
"use strict";
const readline = require("readline");

const cancelled = [];
const answers = {};
const send = (message) => process.stdout.write(JSON.stringify(message) + "\n");

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const message = JSON.parse(line);
  if (message.method === "initialize") {
    process.stdout.write("this line is not json-rpc\n");
    send({
      jsonrpc: "2.0",
      id: message.id,
      result: {
        protocolVersion: process.env.SCRIPTED_VERSION || "2025-06-18",
        capabilities: { tools: {} },
        serverInfo: { name: "scripted", version: "1" },
      },
    });
  } else if (message.method === "notifications/initialized") {
    send({ jsonrpc: "2.0", id: "server-1", method: "ping" });
    send({ jsonrpc: "2.0", id: "server-2", method: "sampling/createMessage", params: {} });
  } else if (message.method === "notifications/cancelled") {
    cancelled.push(message.params);
  } else if (message.method === undefined) {
    answers[message.id] = message;
  } else if (message.method === "tools/call" && message.params.name === "hang") {
    // Never answered.
  } else if (message.method === "tools/call" && message.params.name === "report") {
    const text = JSON.stringify({ cancelled, answers });
    send({ jsonrpc: "2.0", id: message.id, result: { content: [{ type: "text", text }] } });
  } else {
    send({ jsonrpc: "2.0", id: message.id, error: { code: -32601, message: "Method not found" } });
  }
});
