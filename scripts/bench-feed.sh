#!/usr/bin/env bash
# What does the change log cost writes? A benchmark, not a test: it prints
# a table and writes JSON, and fails only if no run succeeded.
#
#   scripts/bench-feed.sh            (about 6 minutes)
#
# A/B series on the release build: a fresh 3-node cluster (N=3, R=W=2) per
# run, started by scripts/cluster.sh with feed.enabled = true or false
# (FEED_ROUNDS rounds, default 4, in ABBA order), then `dynkv bench` with a
# write-only load (64 connections, 1 KiB values, 20,000 keys, contexts as a
# read-modify-write client sends them), 5 s warm-up, FEED_DURATION (15 s)
# measured, the three node processes' CPU watched. Prints min / median /
# max per setting of ops/s, server CPU µs per request and latencies, and
# writes every run's report to $FEED_OUT (default
# docs/results/feed-cost.json).
#
# Environment: FEED_ROUNDS, FEED_DURATION, FEED_MIX (default
# get=0,put=100), FEED_BASE_PORT (default 18400: node i on base+i, its
# cluster port on base+40+i), DYNKV_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/dynkv-target}"
ROUNDS="${FEED_ROUNDS:-4}"
DURATION="${FEED_DURATION:-15s}"
MIX="${FEED_MIX:-get=0,put=100}"
OUT="${FEED_OUT:-docs/results/feed-cost.json}"
# shellcheck source=scripts/bench-env.sh
. scripts/bench-env.sh
bench_env bench-feed "${FEED_BASE_PORT:-18400}"
export RUST_LOG=warn
trap 'scripts/cluster.sh stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
url() { echo "http://127.0.0.1:$((DYNKV_BASE_PORT + $1))"; }

runs=()
for round in $(seq 1 "$ROUNDS"); do
  # ABBA: the setting that runs first alternates, so that whatever the
  # first run of a pair meets (a warmer or colder machine) falls on both.
  order="true false"
  [ $((round % 2)) = 0 ] && order="false true"
  for enabled in $order; do
    rm -rf "$DYNKV_CLUSTER_DIR"
    DYNKV__FEED__ENABLED=$enabled scripts/cluster.sh start 3 >/dev/null
    pids="$(cat "$DYNKV_CLUSTER_DIR"/n{1,2,3}/pid | paste -sd, -)"
    json="$WORK/feed-$enabled-r$round.json"
    echo "== round $round, feed.enabled = $enabled"
    "$DYNKV_BIN" bench --targets "$(url 1),$(url 2),$(url 3)" --r 2 --w 2 \
      --connections 64 --value-size 1024 --keys 20000 --mix "$MIX" \
      --duration "$DURATION" --warmup 5s --preload --pids "$pids" \
      --label "feed.enabled=$enabled" --json "$json" 2>&1 | grep -E '^(total|put|get)' || true
    if [ "$enabled" = true ]; then
      # The log really was written: bytes on n1 (the trim worker's gauge).
      sleep 11
      curl -s "$(url 1)/metrics" | awk '$1 == "dynkv_feed_log_bytes" { print "   n1 change log: " $2 " bytes" }'
    fi
    scripts/cluster.sh stop >/dev/null
    runs+=("$json")
  done
done

mkdir -p "$(dirname "$OUT")"
python3 - "$OUT" "${runs[@]}" <<'PY'
import json, statistics, sys
out, paths = sys.argv[1], sys.argv[2:]
rows = {}
reports = []
for p in paths:
    r = json.load(open(p))
    reports.append(r)
    t, cpu = r["total"], r.get("cpu") or {}
    lat = t["latency_us"]
    rows.setdefault(r["label"], []).append({
        "ops_per_s": t["ops_per_s"],
        "server_cpu_us_per_op": cpu.get("server_cpu_us_per_op"),
        "p50_ms": lat["p50"] / 1000, "p99_ms": lat["p99"] / 1000,
        "other_cores": cpu.get("other"),
    })
def mmm(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return "-"
    return " / ".join(f"{x:.0f}" if x >= 100 else f"{x:.2f}" for x in (xs[0], statistics.median(xs), xs[-1]))
print("| setting | runs | ops/s | server CPU µs/op | p50 ms | p99 ms | cores: other (max) |")
print("|---|---:|---|---|---|---|---:|")
for label, rs in rows.items():
    other = max((r["other_cores"] or 0) for r in rs)
    print(f"| {label} | {len(rs)} | {mmm(r['ops_per_s'] for r in rs)} | {mmm(r['server_cpu_us_per_op'] for r in rs)} | {mmm(r['p50_ms'] for r in rs)} | {mmm(r['p99_ms'] for r in rs)} | {other:.2f} |")
on = statistics.median(r["ops_per_s"] for r in rows.get("feed.enabled=true", []))
off = statistics.median(r["ops_per_s"] for r in rows.get("feed.enabled=false", []))
print(f"median write throughput with the change log: {on / off:.3f}x of without ({(1 - on / off) * 100:+.1f} % cost)")
json.dump({"summary": rows, "runs": reports}, open(out, "w"), indent=1)
PY
