#!/usr/bin/env bash
# The dashboard in a real browser: starts a 3-node cluster and runs
# tests/ui/ui_test.py, which drives Debian's headless Chromium over the
# DevTools protocol (Python standard library only) against n1's /ui:
# three members up, the traffic shown, the ring drawn, the PBS panel's
# curves, phone width, and n3 turning down after `scripts/cluster.sh kill 3`.
#
#   scripts/ui-test.sh
#
# Prints "ok - ..." per check and a closing line "ui: N passed, N failed";
# exits non-zero if a check failed. Screenshots (ui-desktop.png,
# ui-phone.png, ui-node-down.png) are kept in $UI_ARTIFACTS (default
# $CARGO_TARGET_DIR/ui-artifacts), the browser's log beside them.
#
# Environment: DYNKV_BIN (default: the debug build, as
# `cargo build --workspace --bins` makes it), CHROMIUM (default chromium,
# from scripts/install-deps.sh), UI_BASE_PORT (node i listens on base+i,
# its cluster port is base+50+i; default: the first free of 19070,
# 19170, ...), UI_DOWN_WITHIN (seconds a killed node may take to show
# down, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/dynkv-target}"
export UI_ARTIFACTS="${UI_ARTIFACTS:-$CARGO_TARGET_DIR/ui-artifacts}"
export CHROMIUM="${CHROMIUM:-chromium}"

say() { printf '== %s\n' "$*"; }

command -v "$CHROMIUM" >/dev/null || { echo "no $CHROMIUM: run scripts/install-deps.sh" >&2; exit 1; }
if [ -z "${DYNKV_BIN:-}" ]; then
  cargo build -q -p dynkv --bin dynkv
  DYNKV_BIN="$CARGO_TARGET_DIR/debug/dynkv"
fi
export DYNKV_BIN

. scripts/test-cluster-lib.sh
base="${UI_BASE_PORT:-}"
[ -n "$base" ] || base=$(free_base_port 19070 1 2 3 51 52 53)
export DYNKV_BASE_PORT="$base" DYNKV_CLUSTER_BASE_PORT=$((base + 50)) DYNKV_PB_BASE_PORT=off
DYNKV_CLUSTER_DIR="$(mktemp -d -t dynkv-ui-XXXXXX)"
export DYNKV_CLUSTER_DIR
# A killed peer is marked down after two failed pings, 500 ms apart
# (config/local-cluster.toml); the page also shows a member down as soon
# as its summary cannot be fetched.

status=1
trap stop_test_cluster EXIT

say "cluster n1..n3 on 127.0.0.1:$((base + 1))..$((base + 3))"
scripts/cluster.sh start 3
nodes=""
for i in 1 2 3; do
  url="http://127.0.0.1:$((base + i))"
  nodes="${nodes:+$nodes,}$url"
  # Every node sees its two peers up before the browser looks.
  for _ in $(seq 1 150); do
    if curl -sf "$url/admin/cluster" | python3 -c \
      'import json, sys; sys.exit(sum(m["up"] for m in json.load(sys.stdin)["members"]) != 3)' 2>/dev/null; then
      break
    fi
    sleep 0.2
  done
done

say "the dashboard in headless Chromium"
rm -rf "$UI_ARTIFACTS"
UI_NODES="$nodes" UI_KILL="scripts/cluster.sh kill 3" timeout 300 python3 tests/ui/ui_test.py
status=0
