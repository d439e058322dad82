// An MCP server over stdio offering the tools that the conformance suite's tool-call scenarios call
// (the conformance reference server's `test_*` tools, which server-everything lacks), answering as the
// scenarios describe. Plain JSON-RPC lines, no dependencies. Used by tests/it/conformance.rs.
'use strict';
const readline = require('readline');
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
const WAV = Buffer.from('RIFF$\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0data\0\0\0\0', 'latin1').toString('base64');
const empty = { type: 'object', properties: {} };
const tools = {
  test_simple_text: () => ({ content: [{ type: 'text', text: 'This is a simple text response for testing.' }] }),
  test_image_content: () => ({ content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] }),
  test_audio_content: () => ({ content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] }),
  test_embedded_resource: () => ({ content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }] }),
  test_multiple_content_types: () => ({ content: [
    { type: 'text', text: 'Multiple content types test:' },
    { type: 'image', data: PNG, mimeType: 'image/png' },
    { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: '{"test":"data","value":123}' } },
  ] }),
  test_error_handling: () => ({ isError: true, content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }] }),
  test_tool_with_progress: (params) => {
    const token = params._meta && params._meta.progressToken;
    if (token !== undefined) for (const p of [0, 50, 100]) send({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: p, total: 100 } });
    return { content: [{ type: 'text', text: 'Progress test completed' }] };
  },
  test_tool_with_logging: () => {
    for (const m of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) send({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: m } });
    return { content: [{ type: 'text', text: 'Logging test completed' }] };
  },
};
function send(msg) { process.stdout.write(JSON.stringify(msg) + '\n'); }
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const msg = JSON.parse(line);
  if (msg.id === undefined || msg.method === undefined) return;
  const reply = (result) => send({ jsonrpc: '2.0', id: msg.id, result });
  switch (msg.method) {
    case 'initialize': return reply({ protocolVersion: msg.params.protocolVersion, capabilities: { tools: {}, logging: {} }, serverInfo: { name: 'conformance-tools', version: '0' } });
    case 'ping': return reply({});
    case 'logging/setLevel': return reply({});
    case 'tools/list': return reply({ tools: Object.keys(tools).map((name) => ({ name, description: `Conformance tool ${name}`, inputSchema: empty })) });
    case 'tools/call': {
      const tool = tools[msg.params.name];
      if (!tool) return send({ jsonrpc: '2.0', id: msg.id, error: { code: -32602, message: `Unknown tool: ${msg.params.name}` } });
      return reply(tool(msg.params));
    }
    default: return send({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'Method not found' } });
  }
});
