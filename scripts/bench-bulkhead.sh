#!/usr/bin/env bash
# Does a flood of background repair hurt client latency? A benchmark, not a
# test: it prints figures and writes JSON; it fails only if the stated bound
# is broken.
#
#   scripts/bench-bulkhead.sh            (about 2 minutes)
#
# 1. Starts a 3-node cluster (N=3) from the release build and measures client
#    latency at a fixed rate (open loop, so stalls show in the percentiles):
#    the baseline.
# 2. Stops n3, writes BULK_KEYS keys at W=2 (n3 misses all of them), starts
#    n3 again: anti-entropy now has BULK_KEYS keys to repair.
# 3. Measures the same client load while that repair runs, and reports how
#    many keys anti-entropy repaired during the measurement.
#
# The stated bound: client p99 during the repair flood stays within
# 2 x baseline p99 + 10 ms. Background work is bounded by its own limits
# (antientropy.concurrency, keys_per_batch, batch_pause_ms), so repair slows
# down instead of starving clients.
#
# Environment: BULK_KEYS (default 100000), BULK_RATE (client ops/s, default
# 800), BULK_DURATION (default 20s), BULK_BASE_PORT (default 17570: node i
# on base+i, its cluster port on base+50+i), DYNKV_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/dynkv-target}"
KEYS="${BULK_KEYS:-100000}"
RATE="${BULK_RATE:-800}"
DURATION="${BULK_DURATION:-20s}"
OUT="${BULK_OUT:-docs/results/bulkhead.json}"
if [ -z "${DYNKV_BIN:-}" ]; then
  cargo build --release -p dynkv >/dev/null
  export DYNKV_BIN="$CARGO_TARGET_DIR/release/dynkv"
fi
export DYNKV_CLUSTER_DIR; DYNKV_CLUSTER_DIR="$(mktemp -d /tmp/dynkv-bulkhead.XXXXXX)"
export DYNKV_BASE_PORT="${BULK_BASE_PORT:-17570}"
export DYNKV_CLUSTER_BASE_PORT=$((DYNKV_BASE_PORT + 50))
export RUST_LOG=warn
trap 'scripts/cluster.sh stop >/dev/null 2>&1 || true; rm -rf "$DYNKV_CLUSTER_DIR"' EXIT

url() { echo "http://127.0.0.1:$((DYNKV_BASE_PORT + $1))"; }
metric() { curl -s "$(url "$1")/metrics" | awk -v m="$2" '$1 == m { s += $2 } END { print s + 0 }'; }
echo "== starting 3 nodes"
scripts/cluster.sh start 3 >/dev/null
TARGETS="$(url 1),$(url 2)"
client() { # $1 label, $2 json
  "$DYNKV_BIN" bench --targets "$TARGETS" --connections 16 --rate "$RATE" --duration "$DURATION" \
    --keys 10000 --key-prefix client --value-size 1024 --mix get=50,put=50 --label "$1" --json "$2" 2>&1 | tail -4
}

echo "== baseline: $RATE ops/s of client load, no background work"
"$DYNKV_BIN" bench --targets "$TARGETS" --connections 16 --keys 10000 --key-prefix client --ops 1 --preload >/dev/null 2>&1
client baseline "$DYNKV_CLUSTER_DIR/baseline.json"

echo "== n3 misses $KEYS writes"
scripts/cluster.sh stop-node 3 >/dev/null
sleep 2
"$DYNKV_BIN" bench --targets "$TARGETS" --connections 32 --keys "$KEYS" --key-prefix bulk --w 2 --ops 1 --preload 2>&1 | grep -E "preload:" || true
# A restarted node's counters start at zero: what it reports next is all
# repair since its restart.
scripts/cluster.sh restart 3 >/dev/null
before=0

echo "== the same client load while anti-entropy repairs n3"
client flood "$DYNKV_CLUSTER_DIR/flood.json"
after=$(metric 3 dynkv_aae_keys_repaired_total)
repaired=$((${after%.*} - ${before%.*}))

python3 - "$DYNKV_CLUSTER_DIR/baseline.json" "$DYNKV_CLUSTER_DIR/flood.json" "$repaired" "$KEYS" "$RATE" "$OUT" <<'PY'
import json, sys
base, flood, repaired, keys, rate, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
def summary(path):
    t = json.load(open(path))["total"]
    lat = t["latency_us"]
    return {"ops_per_sec": t["ops_per_s"], "p50_ms": lat["p50"] / 1000, "p99_ms": lat["p99"] / 1000, "p999_ms": lat["p999"] / 1000, "errors": t["errors"]}
b, f = summary(base), summary(flood)
bound = 2 * b["p99_ms"] + 10
result = {"client_rate": rate, "keys_missed": keys, "keys_repaired_during_flood": repaired, "baseline": b, "during_repair": f, "bound_p99_ms": bound, "within_bound": f["p99_ms"] <= bound}
json.dump(result, open(out, "w"), indent=2)
print(f"baseline      p50 {b['p50_ms']:.2f} ms  p99 {b['p99_ms']:.2f} ms  ({b['ops_per_sec']:.0f} ops/s)")
print(f"during repair p50 {f['p50_ms']:.2f} ms  p99 {f['p99_ms']:.2f} ms  ({f['ops_per_sec']:.0f} ops/s), anti-entropy repaired {repaired} of {keys} keys meanwhile")
print(f"bound: p99 <= 2 x {b['p99_ms']:.2f} + 10 = {bound:.2f} ms -> {'within' if result['within_bound'] else 'BROKEN'}")
print(f"wrote {out}")
sys.exit(0 if result["within_bound"] else 1)
PY
