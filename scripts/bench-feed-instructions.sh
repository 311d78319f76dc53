#!/usr/bin/env bash
# What does the change log cost writes, in instructions? A benchmark, not a
# test: it prints a table and writes JSON, and fails only if no run worked.
#
#   scripts/bench-feed-instructions.sh        (about 3 minutes)
#
# scripts/bench-feed.sh measures CPU time, which moves by more than the
# effect on a shared 2-core machine. This one counts instructions, which
# do not: the same binary and load give the same count to within about
# 1 %, whatever else the machine does. A fresh 3-node cluster (N=3,
# R=W=2) per run, every node under valgrind's callgrind with counting off
# until the cluster is up, feed.enabled = true or false (IR_ROUNDS rounds,
# default 2, alternating). Then `dynkv bench` writes IR_KEYS keys once
# (default 500) and makes IR_OPS more writes (default 5000) over 8
# connections (1 KiB values, contexts as a read-modify-write client sends
# them), and counting stops. Per setting it prints the instructions of
# the three nodes per client write, and of that the part inside RocksDB's
# write (`rocksdb_write`) and inside the change log's own code
# (`log_changes`). Every run goes to $IR_OUT (default
# docs/results/feed-instructions.json).
#
# Environment: IR_ROUNDS, IR_KEYS, IR_OPS, IR_OUT, IR_BASE_PORT (default
# 18600: node i on base+i, its cluster port on base+40+i), DYNKV_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/dynkv-target}"
ROUNDS="${IR_ROUNDS:-2}"
KEYS="${IR_KEYS:-500}"
OPS="${IR_OPS:-5000}"
OUT="${IR_OUT:-docs/results/feed-instructions.json}"
command -v callgrind_control >/dev/null || {
  echo "valgrind is needed (apt-get install -y valgrind)" >&2
  exit 1
}
# shellcheck source=scripts/bench-env.sh
. scripts/bench-env.sh
bench_env bench-feed-ir "${IR_BASE_PORT:-18600}"
export DYNKV_START_WAIT_S=120
export DYNKV__NODE__WORKER_THREADS=1
export RUST_LOG=warn
trap 'scripts/cluster.sh stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
url() { echo "http://127.0.0.1:$((DYNKV_BASE_PORT + $1))"; }

# Instructions of one function, inclusive, summed over the nodes' profiles.
inclusive() {
  local pattern=$1
  shift
  for f in "$@"; do
    callgrind_annotate --inclusive=yes --tree=none --auto=no --threshold=100 "$f" 2>/dev/null |
      grep -E "$pattern" | head -1 || true
  done | awk '{ gsub(",", "", $1); s += $1 } END { print s + 0 }'
}

rows="$WORK/rows.jsonl"
: >"$rows"
for round in $(seq 1 "$ROUNDS"); do
  order="true false"
  [ $((round % 2)) = 0 ] && order="false true"
  for enabled in $order; do
    run="$WORK/r$round-$enabled"
    mkdir -p "$run"
    rm -rf "$DYNKV_CLUSTER_DIR"
    echo "== round $round, feed.enabled = $enabled (nodes under callgrind)"
    DYNKV__FEED__ENABLED=$enabled \
      DYNKV_NODE_WRAPPER="valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$run/cg.%p.out" \
      scripts/cluster.sh start 3 >/dev/null
    pids=$(cat "$DYNKV_CLUSTER_DIR"/n{1,2,3}/pid)
    for p in $pids; do callgrind_control -i on "$p" >/dev/null 2>&1; done
    "$DYNKV_BIN" bench --targets "$(url 1),$(url 2),$(url 3)" --r 2 --w 2 \
      --connections 8 --value-size 1024 --keys "$KEYS" --mix get=0,put=100 \
      --preload --ops "$OPS" --duration 10m --json "$run/bench.json" 2>&1 |
      grep -E '^put' || true
    for p in $pids; do callgrind_control -i off "$p" >/dev/null 2>&1; done
    scripts/cluster.sh stop >/dev/null
    # callgrind writes its profile as the node exits.
    for p in $pids; do
      for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    done
    total=$(cat "$run"/cg.*.out | awk '/^totals:/ { s += $2 } END { print s + 0 }')
    rocks=$(inclusive '[?]+:rocksdb_write ' "$run"/cg.*.out)
    log=$(inclusive 'Store>::log_changes \[' "$run"/cg.*.out)
    python3 - "$run/bench.json" "$enabled" "$round" "$total" "$rocks" "$log" >>"$rows" <<'PY'
import json, sys
bench, enabled, rnd, total, rocks, log = sys.argv[1:]
r = json.load(open(bench))
writes = r["total"]["ops"] + r["preload"]["keys"]
failed = r["total"]["errors"] + r["preload"]["failed_keys"]
print(json.dumps({
    "feed_enabled": enabled == "true", "round": int(rnd), "client_writes": writes,
    "failed": failed, "instructions": int(float(total)),
    "rocksdb_write": int(float(rocks)), "log_changes": int(float(log)),
}))
PY
    tail -1 "$rows"
  done
done

mkdir -p "$(dirname "$OUT")"
python3 - "$OUT" "$rows" <<'PY'
import json, statistics, sys
out, rows_path = sys.argv[1:]
rows = [json.loads(l) for l in open(rows_path) if l.strip()]
ok = [r for r in rows if r["instructions"] > 0 and r["failed"] == 0]
if not ok:
    sys.exit("no run worked")
per = {}
for r in ok:
    w = r["client_writes"]
    per.setdefault(r["feed_enabled"], []).append({
        k: r[k] / w for k in ("instructions", "rocksdb_write", "log_changes")})
print()
print("| feed.enabled | runs | instructions / client write (3 nodes) | in rocksdb_write | in log_changes |")
print("|---|---:|---:|---:|---:|")
med = {}
for enabled in (True, False):
    xs = per.get(enabled, [])
    if not xs:
        continue
    m = {k: statistics.median(x[k] for x in xs) for k in xs[0]}
    med[enabled] = m
    print(f"| {str(enabled).lower()} | {len(xs)} | {m['instructions']:,.0f} | "
          f"{m['rocksdb_write']:,.0f} | {m['log_changes']:,.0f} |")
summary = {}
if True in med and False in med:
    on, off = med[True], med[False]
    summary = {
        "added_per_write": on["instructions"] - off["instructions"],
        "ratio": on["instructions"] / off["instructions"],
        "added_in_rocksdb_write": on["rocksdb_write"] - off["rocksdb_write"],
    }
    print(f"\nthe change log adds {summary['added_per_write']:,.0f} instructions per "
          f"client write ({(summary['ratio'] - 1) * 100:.1f} %), "
          f"{summary['added_in_rocksdb_write']:,.0f} of them inside RocksDB's write")
json.dump({"runs": rows, "median_per_client_write": {str(k).lower(): v for k, v in med.items()},
           "summary": summary}, open(out, "w"), indent=2)
print(f"wrote {out}")
PY
