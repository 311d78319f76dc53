#!/usr/bin/env bash
# Client-side (token-aware) routing against round-robin nodes, measured with
# `dynkv bench` on one 3-node N=3 cluster at R=W=2 (BENCH_NODES=4: four
# nodes, where a quarter of the nodes are not a key's replica), and the load
# generator before and after it moved onto dynkv-client.
#
#   scripts/bench-routing.sh [PAIRS]
#
# PAIRS rounds (default 3), each running in turn on the same cluster:
#   token        --routing token: each request to a live primary of its key
#   round-robin  --routing round-robin: each request to the next node
#   before       (with BENCH_BEFORE_BIN, a release `dynkv` of an earlier build)
#                that build's generator, clients spread over the nodes
# Runs alternate so that the machine's drift (it is shared and noisy) falls
# on every mode alike; the table gives the median of the rounds and their
# range. Every run preloads nothing (the cluster is preloaded once), warms up
# for BENCH_WARMUP (3s) and measures for BENCH_DURATION (15s) with
# BENCH_CONNECTIONS (64) clients, 1 KiB values, BENCH_KEYS (20000) keys,
# get=50,put=50, r=2, w=2, and --pids of the three nodes, so the servers'
# CPU time per request is in each report. JSON per run and the table go to
# $BENCH_RESULTS (./bench-results/routing). Ports: BENCH_BASE_PORT (17400)
# +1..K public, +41..4K cluster. The binary: $DYNKV_BIN, else the release
# build (`cargo build --release -p dynkv`).
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${1:-3}
BIN=${DYNKV_BIN:-${CARGO_TARGET_DIR:-target}/release/dynkv}
BEFORE_BIN=${BENCH_BEFORE_BIN:-}
BASE=${BENCH_BASE_PORT:-17400}
DURATION=${BENCH_DURATION:-15s}
WARMUP=${BENCH_WARMUP:-3s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
KEYS=${BENCH_KEYS:-20000}
RESULTS=${BENCH_RESULTS:-./bench-results/routing}
NODES=${BENCH_NODES:-3}
[ -x "$BIN" ] || { echo "bench-routing: no binary at $BIN (cargo build --release -p dynkv)" >&2; exit 1; }
WORK=$(mktemp -d /var/tmp/dynkv-bench-routing.XXXXXX)
mkdir -p "$RESULTS"

cluster() {
  DYNKV_CLUSTER_DIR="$WORK/cluster" DYNKV_BASE_PORT="$BASE" \
    DYNKV_CLUSTER_BASE_PORT="$((BASE + 40))" DYNKV_PB_BASE_PORT=off DYNKV_BIN="$BIN" \
    RUST_LOG=warn scripts/cluster.sh "$@"
}
cleanup() { cluster stop >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

cluster start "$NODES" >&2
TARGETS=$(for i in $(seq 1 "$NODES"); do echo "http://127.0.0.1:$((BASE + i))"; done | paste -sd,)
PIDS=$(for i in $(seq 1 "$NODES"); do cat "$WORK/cluster/n$i/pid"; done | paste -sd,)
COMMON=(--targets "$TARGETS" --connections "$CONNECTIONS" --value-size 1024 --keys "$KEYS"
  --mix get=50,put=50 --r 2 --w 2 --pids "$PIDS")

# Every key once, so reads find values in every mode.
"$BIN" bench "${COMMON[@]}" --preload --duration 1s --label preload >/dev/null 2>"$WORK/preload.err"

run() { # mode round binary [args]
  local mode=$1 round=$2 bin=$3; shift 3
  echo "== $mode, round $round" >&2
  "$bin" bench "${COMMON[@]}" --duration "$DURATION" --warmup "$WARMUP" \
    --label "$mode" --json "$RESULTS/$mode-$round.json" "$@" 2>"$WORK/$mode-$round.err" |
    grep -E 'ops/s|p99' >&2 || true
}

for round in $(seq 1 "$PAIRS"); do
  run token "$round" "$BIN" --routing token
  run round-robin "$round" "$BIN" --routing round-robin
  if [ -n "$BEFORE_BIN" ]; then run before "$round" "$BEFORE_BIN"; fi
done

python3 - "$RESULTS" "$PAIRS" <<'EOF' | tee "$RESULTS/table.md"
import json, os, statistics, sys
results, pairs = sys.argv[1], int(sys.argv[2])
rows = []
for mode in ["token", "round-robin", "before"]:
    runs = []
    for r in range(1, pairs + 1):
        p = os.path.join(results, f"{mode}-{r}.json")
        if os.path.exists(p):
            runs.append(json.load(open(p)))
    if not runs:
        continue
    def col(f):
        v = [f(j) for j in runs]
        v = [x for x in v if x is not None]
        if not v:
            return "-"
        return f"{statistics.median(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})"
    rows.append((mode, len(runs),
                 col(lambda j: j["total"]["ops_per_s"]),
                 col(lambda j: j["total"]["latency_us"]["p50"]),
                 col(lambda j: j["total"]["latency_us"]["p99"]),
                 col(lambda j: (j.get("cpu") or {}).get("server_cpu_us_per_op")),
                 col(lambda j: (j.get("cpu") or {}).get("generator_cpu_us_per_op")),
                 col(lambda j: j["total"]["errors"])))
print("| mode | runs | ops/s | p50 µs | p99 µs | server CPU µs/request | generator CPU µs/request | errors |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    print("| " + " | ".join(str(x) for x in r) + " |")
EOF
