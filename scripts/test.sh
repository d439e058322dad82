#!/usr/bin/env bash
# Sets up every peer the tests need, then runs every test in the workspace.
#
# Peers: a Python virtualenv with PyJWT (a JWT library nobody here wrote, used to verify Warden's
# tokens from the published JWKS), the official `mcp` SDK (an MCP client for warden-gateway's
# tests) and `duckdb` (a second SQL engine that reads the audit lake's Parquet files, for
# warden-query's cross-check and benchmark), and Node packages (the reference MCP server `server-everything`, an upstream for
# warden-mcp's and warden-gateway's tests, and `inspector-cli`, a scriptable MCP client; Node 22 with
# the MCP conformance suite, run against warden's gateway; the Claude Code CLI, run in a project made by
# `warden init`). They live beside cargo's target directory so they are reused.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
peers="$target_dir/test-peers"
venv="$peers/venv"
requirements="scripts/test-requirements.txt"

mkdir -p "$peers"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$peers/requirements.installed"; then
  echo "test.sh: installing Python test peers into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$peers/requirements.installed"
fi
export WARDEN_TEST_PYTHON="$venv/bin/python"

# Installs npm packages ($2, space separated) into the folder $1 unless that exact set is there already.
npm_peers() {
  if [ "$(cat "$1/packages.installed" 2>/dev/null)" != "$2" ]; then
    echo "test.sh: installing $2 into $1"
    rm -rf "$1"
    mkdir -p "$1"
    npm install --no-audit --no-fund --silent --prefix "$1" $2
    echo "$2" >"$1/packages.installed"
  fi
}

node_peers="$peers/node"
node_packages="@modelcontextprotocol/server-everything@2026.8.31 @modelcontextprotocol/inspector-cli@1.0.3"
npm_peers "$node_peers" "$node_packages"
export WARDEN_TEST_NODE_PEERS="$node_peers"

# The MCP conformance suite needs Node 22, installed from npm beside its own copy of the suite.
node22_peers="$peers/node22"
node22_packages="node@22.23.3 @modelcontextprotocol/conformance@0.1.16"
npm_peers "$node22_peers" "$node22_packages"
export WARDEN_TEST_NODE22_PEERS="$node22_peers"

# The real Claude Code CLI (its native binary comes with the package), driven through a project made by
# `warden init` against a scripted stand-in for the Messages API on loopback; no account or network.
claude_peers="$peers/claude"
claude_packages="@anthropic-ai/claude-code@2.1.332"
npm_peers "$claude_peers" "$claude_packages"
export WARDEN_TEST_CLAUDE_PEERS="$claude_peers"

# With no arguments, every test of the workspace; with arguments (e.g. `-p warden-mcp`), just those.
if [ "$#" -eq 0 ]; then
  cargo test --workspace --all-targets
else
  cargo test --all-targets "$@"
fi
