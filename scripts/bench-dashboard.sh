#!/usr/bin/env bash
# What does an open dashboard cost clients? A benchmark, not a test: it
# prints figures and writes JSON.
#
#   scripts/bench-dashboard.sh            (about 3 minutes)
#
# Starts a 3-node cluster (N=3, R=W=quorum) and runs the same open-loop
# client load (`dynkv bench`, fixed rate, so a stall shows in the
# percentiles) DASH_PAIRS times with the dashboard closed and DASH_PAIRS
# times with it open, alternating closed/open, open/closed, ... so that
# drift on a shared machine falls on both sides. "Open" is, with
# DASH_CLIENT=poll (the default), exactly the page's requests from a shell
# loop (/admin/overview every 2 s, which asks every member for its summary;
# /admin/pbs for the nine curves every 10 s); with DASH_CLIENT=browser, n1's
# /ui in headless Chromium on this same machine, whose own CPU then
# competes with the nodes (an operator's browser runs elsewhere). Prints one
# line per run (with the nodes' CPU per client request, from /proc) and the
# medians, and writes every run's JSON under $DASH_OUT.
#
# Environment: DASH_CLIENT (poll or browser), DASH_PAIRS (default 3), DASH_RATE (client ops/s, default
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
CLIENT="${DASH_CLIENT:-poll}"
# shellcheck source=scripts/bench-env.sh
. scripts/bench-env.sh
bench_env dashboard "${DASH_BASE_PORT:-17670}" 50
export RUST_LOG=warn
browser=""
profile="$(mktemp -d /tmp/dynkv-dashboard-chromium.XXXXXX)"
close_page() {
  if [ -n "$browser" ]; then kill "$browser" 2>/dev/null || true; wait "$browser" 2>/dev/null || true; browser=""; fi
}
trap 'close_page; scripts/cluster.sh stop >/dev/null 2>&1 || true; rm -rf "$WORK" "$profile"' EXIT
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
  if [ "$CLIENT" = browser ]; then
    "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
      --user-data-dir="$profile" --remote-debugging-port=0 "$(url 1)/ui" >/dev/null 2>&1 &
    browser=$!
    sleep 3
  else
    # The page's requests, without a browser: the overview every 2 s, the
    # nine PBS curves every 10 s.
    (
      k=0
      while :; do
        curl -s -o /dev/null "$(url 1)/admin/overview"
        if [ $((k % 5)) -eq 0 ]; then
          for r in 1 2 3; do for w in 1 2 3; do
            curl -s -o /dev/null "$(url 1)/admin/pbs?n=3&r=$r&w=$w&t_ms=10"
          done; done
        fi
        k=$((k + 1))
        sleep 2
      done
    ) &
    browser=$!
  fi
}

# CPU seconds the three nodes have used so far.
server_cpu() {
  python3 - "$DYNKV_CLUSTER_DIR" <<'PY'
import os, sys
t = 0
for i in (1, 2, 3):
    pid = open(f"{sys.argv[1]}/n{i}/pid").read().strip()
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    t += int(f[11]) + int(f[12])
print(t / os.sysconf("SC_CLK_TCK"))
PY
}

run() { # $1 label (closed|open), $2 index
  local json="$OUT/$1-$2.json" before after cpu0 cpu1
  before=$(served)
  cpu0=$(server_cpu)
  "$DYNKV_BIN" bench --targets "$TARGETS" --connections 16 --rate "$RATE" --duration "$DURATION" --warmup 3s \
    --keys 10000 --key-prefix dash --value-size 1024 --mix get=50,put=50 --label "dashboard-$1" --json "$json" >/dev/null 2>&1
  cpu1=$(server_cpu)
  after=$(served)
  python3 - "$json" "$1" $((after - before)) "$cpu0" "$cpu1" <<'PY'
import json, sys
path, label, asks, cpu0, cpu1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
r = json.load(open(path))
t = r["total"]
lat = {k: v / 1000 for k, v in t["latency_us"].items()}
# Server CPU over the whole run (warm-up included) per request sent in it.
ops = t["ops_per_s"] * (r["elapsed_s"] + r["params"]["warmup_s"])
cpu_us = (cpu1 - cpu0) * 1e6 / ops if ops else 0
r["server_cpu_us_per_op"] = round(cpu_us, 1)
r["overview_summaries_n2"] = asks
json.dump(r, open(path, "w"))
print(f"{label:<7} ops/s {t['ops_per_s']:>8.1f}  p50 {lat['p50']:.3f} ms  p99 {lat['p99']:.3f} ms  p999 {lat['p999']:.3f} ms  errors {t['errors']}  server CPU {cpu_us:.0f} us/op  summaries n2 computed: {asks}")
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
        t = r["total"]
        runs.append((t["ops_per_s"], t["latency_us"]["p50"] / 1000, t["latency_us"]["p99"] / 1000, r["server_cpu_us_per_op"]))
    rows[side] = [statistics.median(x) for x in zip(*runs)]
c, o = rows["closed"], rows["open"]
print(f"median closed: ops/s {c[0]:.1f} p50 {c[1]:.3f} ms p99 {c[2]:.3f} ms server CPU {c[3]:.0f} us/op")
print(f"median open:   ops/s {o[0]:.1f} p50 {o[1]:.3f} ms p99 {o[2]:.3f} ms server CPU {o[3]:.0f} us/op")
print(f"open / closed: p50 {o[1] / c[1]:.3f}x, p99 {o[2] / c[2]:.3f}x, server CPU per op {o[3] / c[3]:.3f}x")
PY
