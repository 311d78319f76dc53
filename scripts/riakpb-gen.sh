#!/usr/bin/env bash
# Regenerates crates/riakpb/src/generated.rs after a change to
# crates/riakpb/proto/*.proto (see crates/riakpb/src/lib.rs for why the
# generated code is committed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cargo run -q --manifest-path "$root/scripts/riakpb-gen/Cargo.toml" -- "$root/crates/riakpb/proto" "$out"
cp "$out/_.rs" "$root/crates/riakpb/src/generated.rs"
echo "wrote crates/riakpb/src/generated.rs"
