#!/usr/bin/env bash
# What does an open dashboard cost clients? A benchmark, not a test: it
# prints figures and writes JSON.
#
#   scripts/bench-dashboard.sh            (about 3 minutes)
#
# Starts a 3-node cluster (N=3, R=W=quorum) and runs the same open-loop
# client load (`dynkv bench`, fixed rate, so a stall shows in the
# percentiles) DASH_PAIRS times with the dashboard closed and DASH_PAIRS
# times with n1's /ui open in headless Chromium (polling /admin/overview
# every 2 s, which asks every member for its summary, and /admin/pbs every
# 10 s), alternating closed/open, open/closed, ... so that drift on a
# shared machine falls on both sides. Prints one line per run and the
# medians, and writes every run's JSON under $DASH_OUT.
#
# Environment: DASH_PAIRS (default 3), DASH_RATE (client ops/s, default
# 600), DASH_DURATION (default 20s), DASH_BASE_PORT (default 17670: node i
# on base+i, its cluster port on base+50+i), DASH_OUT (default
# ./bench-results/dashboard), DYNKV_BIN (default: the release build),
# CHROMIUM (default chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/dynkv-target}"
PAIRS="${DASH_PAIRS:-3}"
RATE="${DASH_RATE:-600}"
DURATION="${DASH_DURATION:-20s}"
OUT="${DASH_OUT:-bench-results/dashboard}"
CHROMIUM="${CHROMIUM:-chromium}"
if [ -z "${DYNKV_BIN:-}" ]; then
  cargo build --release -p dynkv >/dev/null
  export DYNKV_BIN="$CARGO_TARGET_DIR/release/dynkv"
fi
export DYNKV_CLUSTER_DIR; DYNKV_CLUSTER_DIR="$(mktemp -d /tmp/dynkv-dashboard.XXXXXX)"
export DYNKV_BASE_PORT="${DASH_BASE_PORT:-17670}"
export DYNKV_CLUSTER_BASE_PORT=$((DYNKV_BASE_PORT + 50)) DYNKV_PB_BASE_PORT=off
export RUST_LOG=warn
browser=""
profile="$(mktemp -d /tmp/dynkv-dashboard-chromium.XXXXXX)"
close_page() {
  if [ -n "$browser" ]; then kill "$browser" 2>/dev/null || true; wait "$browser" 2>/dev/null || true; browser=""; fi
}
trap 'close_page; scripts/cluster.sh stop >/dev/null 2>&1 || true; rm -rf "$DYNKV_CLUSTER_DIR" "$profile"' EXIT
mkdir -p "$OUT"

url() { echo "http://127.0.0.1:$((DYNKV_BASE_PORT + $1))"; }
# Summaries n2 has computed (an open page on n1 asks it once per refresh).
served() {
  curl -s "$(url 2)/metrics" | awk '$1 == "dynkv_overview_summaries_total" { s += $2 } END { print s + 0 }'
}
echo "== starting 3 nodes"
scripts/cluster.sh start 3 >/dev/null
TARGETS="$(url 1),$(url 2),$(url 3)"
"$DYNKV_BIN" bench --targets "$TARGETS" --connections 16 --keys 10000 --key-prefix dash --ops 1 --preload >/dev/null 2>&1

open_page() {
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
    --user-data-dir="$profile" --remote-debugging-port=0 "$(url 1)/ui" >/dev/null 2>&1 &
  browser=$!
  sleep 3
}

run() { # $1 label (closed|open), $2 index
  local json="$OUT/$1-$2.json" before after
  before=$(served)
  "$DYNKV_BIN" bench --targets "$TARGETS" --connections 16 --rate "$RATE" --duration "$DURATION" --warmup 3s \
    --keys 10000 --key-prefix dash --value-size 1024 --mix get=50,put=50 --label "dashboard-$1" --json "$json" >/dev/null 2>&1
  after=$(served)
  python3 - "$json" "$1" $((after - before)) <<'PY'
import json, sys
path, label, asks = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = json.load(open(path))
s = r.get("summary", r)
lat = s.get("latency_ms", s)
print(f"{label:<7} ops/s {s['ops_per_sec']:>8.1f}  p50 {lat['p50']:.3f} ms  p99 {lat['p99']:.3f} ms  p999 {lat['p999']:.3f} ms  errors {s['errors']}  summaries n2 computed: {asks}")
PY
}

for i in $(seq 1 "$PAIRS"); do
  if [ $((i % 2)) -eq 1 ]; then order="closed open"; else order="open closed"; fi
  for side in $order; do
    if [ "$side" = open ]; then open_page; fi
    run "$side" "$i"
    close_page
  done
done

python3 - "$OUT" "$PAIRS" <<'PY'
import json, os, statistics, sys
out, pairs = sys.argv[1], int(sys.argv[2])
rows = {}
for side in ("closed", "open"):
    runs = []
    for i in range(1, pairs + 1):
        r = json.load(open(os.path.join(out, f"{side}-{i}.json")))
        s = r.get("summary", r)
        lat = s.get("latency_ms", s)
        runs.append((s["ops_per_sec"], lat["p50"], lat["p99"]))
    rows[side] = [statistics.median(x) for x in zip(*runs)]
c, o = rows["closed"], rows["open"]
print(f"median closed: ops/s {c[0]:.1f} p50 {c[1]:.3f} ms p99 {c[2]:.3f} ms")
print(f"median open:   ops/s {o[0]:.1f} p50 {o[1]:.3f} ms p99 {o[2]:.3f} ms")
print(f"open / closed: p50 {o[1] / c[1]:.3f}x, p99 {o[2] / c[2]:.3f}x")
PY
