#!/usr/bin/env bash
# Sets up every peer the tests need, then runs every test in the workspace.
#
# Peers: a Python virtualenv with PyJWT (a JWT library nobody here wrote, used to verify Warden's
# tokens from the published JWKS). It lives beside cargo's target directory so it is reused.
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

cargo test --workspace --all-targets "$@"
