#!/usr/bin/env bash
# The test command: every unit, property and cluster test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/dynkv-target}"
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
