#!/usr/bin/env bash
# Side-by-side performance of dynkv on this machine, in one run, with one
# load generator (`dynkv bench`) and one set of parameters.
#
#   scripts/bench-compare.sh              the comparison: bare axum server, dynkv N=1,
#                                         dynkv 3 nodes R=W=2 / R=W=1 / R=W=2 with fsync,
#                                         etcd 3 nodes, Redis (redis-benchmark, reference),
#                                         and p99 at half of the peak rate
#   scripts/bench-compare.sh --scaling    dynkv 3 nodes N=3 R=W=2 against value size,
#                                         stored keys and connections, with node RSS
#   scripts/bench-compare.sh --all        both
#   scripts/bench-compare.sh --quick ...  short runs and small key spaces, results in
#                                         ./bench-results (docs/ is left alone)
#   --profile                             also record a CPU profile (perf, cpu-clock) of a
#                                         separate 3-node R=W=2 run (not one in the tables)
#   --doc-only                            only regenerate the document from the results
#
# Every run starts fresh servers on loopback ports with their own data
# directories, preloads every key, warms up, measures, and stops what it
# started (also on Ctrl-C). JSON per run goes to $BENCH_RESULTS; the tables
# are written into $BENCH_DOC between generated-section markers, so text
# around them is kept.
#
# Parameters (environment): BENCH_CONNECTIONS (64), BENCH_VALUE_SIZE (1024),
# BENCH_KEYS (100000), BENCH_MIX (get=50,put=50,delete=0), BENCH_DURATION (20s),
# BENCH_WARMUP (5s), BENCH_BASE_PORT (17100: the bare server on it, dynkv
# nodes on +1.., their cluster ports on +41.., etcd on +11.. and +21..,
# Redis on +30), BENCH_WORK (/var/tmp/dynkv-bench: data dirs and logs),
# BENCH_RESULTS, BENCH_DOC, BENCH_REDIS_REQUESTS (1000000),
# BENCH_SCALING_VALUE_KEYS (10000: key space of the value-size series),
# BENCH_NO_INSTALL=1 (do not apt-get missing packages), BENCH_ONLY (comma-separated
# run names, e.g. dynkv-1,etcd-3: run only these, keep the other results).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

COMPARE=1 SCALING=0 QUICK=0 PROFILE=0 DOC_ONLY=0
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    --scaling) COMPARE=0 SCALING=1 ;;
    --all) COMPARE=1 SCALING=1 ;;
    --profile) PROFILE=1 ;;
    --doc-only) DOC_ONLY=1 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "unknown option $a" >&2; sed -n '2,32p' "$0"; exit 2 ;;
  esac
done

if [ "$QUICK" = 1 ]; then
  DEF_DURATION=3s DEF_WARMUP=1s DEF_KEYS=5000 DEF_REDIS=100000 DEF_OUT=bench-results
else
  DEF_DURATION=20s DEF_WARMUP=5s DEF_KEYS=100000 DEF_REDIS=1000000 DEF_OUT=docs/results/bench
fi
CONNS="${BENCH_CONNECTIONS:-64}"
VALUE="${BENCH_VALUE_SIZE:-1024}"
KEYS="${BENCH_KEYS:-$DEF_KEYS}"
MIX="${BENCH_MIX:-get=50,put=50,delete=0}"
DURATION="${BENCH_DURATION:-$DEF_DURATION}"
WARMUP="${BENCH_WARMUP:-$DEF_WARMUP}"
BASE="${BENCH_BASE_PORT:-17100}"
WORK="${BENCH_WORK:-/var/tmp/dynkv-bench}"
RESULTS="${BENCH_RESULTS:-$DEF_OUT}"
if [ "$QUICK" = 1 ]; then DEF_DOC="$RESULTS/PERFORMANCE.md"; else DEF_DOC=docs/PERFORMANCE.md; fi
DOC="${BENCH_DOC:-$DEF_DOC}"
REDIS_N="${BENCH_REDIS_REQUESTS:-$DEF_REDIS}"
SCALING_VALUE_KEYS="${BENCH_SCALING_VALUE_KEYS:-$([ "$QUICK" = 1 ] && echo 2000 || echo 10000)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/dynkv-target}"
BIN="$CARGO_TARGET_DIR/release/dynkv"
BARE="$CARGO_TARGET_DIR/release/dynkv-bare"

ONLY="${BENCH_ONLY:-}"
# wanted NAME: whether this run is to be measured (BENCH_ONLY unset, or names it).
wanted() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

log() { printf '\n== %s (%s)\n' "$*" "$(date +%T)" >&2; }
die() { echo "bench-compare: $*" >&2; exit 1; }

# --- what this script launched, stopped on any exit -------------------------
PIDS=()
CLUSTER_DIRS=()
cleanup() {
  local p d
  for d in "${CLUSTER_DIRS[@]+"${CLUSTER_DIRS[@]}"}"; do
    DYNKV_CLUSTER_DIR="$d" DYNKV_BIN="$BIN" scripts/cluster.sh stop >/dev/null 2>&1 || true
  done
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  PIDS=() CLUSTER_DIRS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() {
  local p=$1 i
  kill -TERM "$p" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  local keep=()
  for i in "${PIDS[@]+"${PIDS[@]}"}"; do [ "$i" = "$p" ] || keep+=("$i"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

wait_http() { # url [tries]
  local i
  for i in $(seq 1 "${2:-200}"); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  return 1
}

if [ "$DOC_ONLY" = 0 ]; then
# --- prerequisites ------------------------------------------------------------
need_pkgs=()
command -v etcd >/dev/null || need_pkgs+=(etcd-server)
command -v etcdctl >/dev/null || need_pkgs+=(etcd-client)
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v redis-benchmark >/dev/null || need_pkgs+=(redis-tools)
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v python3 >/dev/null || need_pkgs+=(python3)
if [ "$COMPARE" = 1 ] && [ "${#need_pkgs[@]}" -gt 0 ]; then
  if [ "${BENCH_NO_INSTALL:-0}" = 1 ]; then die "missing: ${need_pkgs[*]}"; fi
  log "installing ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
if [ "$PROFILE" = 1 ] && ! command -v perf >/dev/null; then die "--profile needs perf (Debian: linux-perf)"; fi

log "building release binaries"
cargo build --release -p dynkv -p dynkv-bare
if [ ! -x "$BIN" ] || [ ! -x "$BARE" ]; then die "release binaries missing in $CARGO_TARGET_DIR/release"; fi

fi
mkdir -p "$RESULTS" "$WORK"
# What was measured, and when: taken right after the build.
if [ "$DOC_ONLY" = 0 ]; then
{
  echo "nproc: $(nproc)"
  echo "cpu: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
  echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel: $(uname -sr)"
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  dirty=""
  git diff --quiet HEAD -- 2>/dev/null || dirty=" (with uncommitted changes in the work tree)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
  echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
  echo "etcd: $(etcd --version 2>/dev/null | awk '/etcd Version/ {print $3}')"
  echo "redis: $(redis-server --version 2>/dev/null | awk '{print $3}' | tr -d v=)"
} >"$WORK/machine.txt"
fi
RESULTS="$(cd "$RESULTS" && pwd)"
COMMANDS="$RESULTS/commands.txt"
# The command log of a section keeps the lines of runs not measured again.
for s in compare scaling; do
  rm -f "$COMMANDS.$s"
  if [ -f "$RESULTS/commands-$s.txt" ] && [ -n "$ONLY" ]; then cp "$RESULTS/commands-$s.txt" "$COMMANDS.$s"; fi
done

# Writes facts about the run into a result JSON: system, exact command.
annotate() { # file system command section
  python3 - "$@" <<'EOF'
import json, sys
f, system, cmd, section = sys.argv[1:]
d = json.load(open(f))
d["system"] = system
d["command"] = cmd
d["section"] = section
json.dump(d, open(f, "w"), indent=2)
open(f, "a").write("\n")
EOF
}

# Runs `dynkv bench`, records its command, annotates the JSON. SERVER_PIDS
# (space-separated) are passed as --pids for CPU and memory accounting.
# bench NAME SYSTEM SECTION SERVER_PIDS -- bench args...
bench() {
  if ! wanted "$1"; then return 0; fi
  local name=$1 sys=$2 section=$3 pids
  # shellcheck disable=SC2086
  pids=$(echo $4 | tr ' ' ',')
  shift 5
  set -- "$@" --pids "$pids"
  local out="$RESULTS/$name.json" cmd
  cmd="dynkv bench $* --json $out"
  if [ -f "$COMMANDS.$section" ]; then
    grep -v "^$name: " "$COMMANDS.$section" >"$COMMANDS.$section.tmp" || true
    mv "$COMMANDS.$section.tmp" "$COMMANDS.$section"
  fi
  echo "$name: $cmd" >>"$COMMANDS.$section"
  log "$sys"
  # Progress lines go to the log only; everything else to the terminal too.
  "$BIN" bench "$@" --label "$sys" --json "$out" 2> >(tee "$WORK/$name.stderr" | grep -v '^\[' >&2 || true)
  annotate "$out" "$sys" "$cmd" "$section"
}

common_args() { # connections value keys
  echo "--connections $1 --value-size $2 --keys $3 --mix $MIX --duration $DURATION --warmup $WARMUP --preload"
}

# --- servers -----------------------------------------------------------------
BARE_PID=""
start_bare() {
  "$BARE" --listen "127.0.0.1:$BASE" >"$WORK/bare.log" 2>&1 &
  BARE_PID=$!; PIDS+=("$BARE_PID")
  wait_http "http://127.0.0.1:$BASE/health" || die "bare server did not start"
}

CLUSTER_DIR="" CLUSTER_TARGETS="" CLUSTER_PIDS=""
# start_dynkv K [DYNKV__...=value ...]
start_dynkv() {
  local k=$1 i; shift
  CLUSTER_DIR="$WORK/dynkv"
  rm -rf "$CLUSTER_DIR"
  CLUSTER_DIRS+=("$CLUSTER_DIR")
  env "$@" DYNKV_CLUSTER_DIR="$CLUSTER_DIR" DYNKV_BASE_PORT="$BASE" \
    DYNKV_CLUSTER_BASE_PORT="$((BASE + 40))" DYNKV_BIN="$BIN" \
    RUST_LOG="${RUST_LOG:-info}" scripts/cluster.sh start "$k" >&2
  CLUSTER_TARGETS="" CLUSTER_PIDS=""
  for i in $(seq 1 "$k"); do
    CLUSTER_TARGETS="${CLUSTER_TARGETS:+$CLUSTER_TARGETS,}http://127.0.0.1:$((BASE + i))"
    CLUSTER_PIDS="$CLUSTER_PIDS $(cat "$CLUSTER_DIR/n$i/pid")"
  done
}
stop_dynkv() {
  DYNKV_CLUSTER_DIR="$CLUSTER_DIR" DYNKV_BIN="$BIN" scripts/cluster.sh stop >/dev/null 2>&1 || true
  CLUSTER_DIRS=()
  rm -rf "$CLUSTER_DIR"
}

ETCD_PIDS="" ETCD_TARGETS=""
start_etcd() {
  local i cluster="" cp pp
  rm -rf "$WORK/etcd"
  for i in 1 2 3; do cluster="${cluster:+$cluster,}e$i=http://127.0.0.1:$((BASE + 20 + i))"; done
  ETCD_PIDS="" ETCD_TARGETS=""
  for i in 1 2 3; do
    cp=$((BASE + 10 + i)) pp=$((BASE + 20 + i))
    mkdir -p "$WORK/etcd/e$i"
    etcd --name "e$i" --data-dir "$WORK/etcd/e$i/data" \
      --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
      --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
      --initial-cluster "$cluster" --initial-cluster-token dynkv-bench --initial-cluster-state new \
      --logger zap --log-level warn >"$WORK/etcd/e$i/etcd.log" 2>&1 &
    PIDS+=("$!"); ETCD_PIDS="$ETCD_PIDS $!"
    ETCD_TARGETS="${ETCD_TARGETS:+$ETCD_TARGETS,}http://127.0.0.1:$cp"
  done
  for i in 1 2 3; do
    cp=$((BASE + 10 + i))
    for _ in $(seq 1 200); do
      curl -sf "http://127.0.0.1:$cp/health" 2>/dev/null | grep -q '"true"' && break
      sleep 0.1
    done
    curl -sf "http://127.0.0.1:$cp/health" | grep -q '"true"' || die "etcd e$i not healthy; see $WORK/etcd/e$i/etcd.log"
  done
}
stop_etcd() { local p; for p in $ETCD_PIDS; do stop_pid "$p"; done; rm -rf "$WORK/etcd"; }

peak_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"]["ops_per_s"])' "$1"; }

# --- the comparison ------------------------------------------------------------
run_compare() {
  local args half
  args=$(common_args "$CONNS" "$VALUE" "$KEYS")

  if wanted bare || wanted wrk-bare; then
    start_bare
    # shellcheck disable=SC2086
    bench bare "bare axum server (HTTP ceiling)" compare "$BARE_PID" -- \
      --targets "http://127.0.0.1:$BASE" --target-kind bare $args
    if wanted wrk-bare; then
      log "bare axum server, wrk GET (reference: a C load generator)"
      local wrk_cmd="wrk -t1 -c$CONNS -d$DURATION --latency http://127.0.0.1:$BASE/kv/bench-1"
      echo "wrk-bare: $wrk_cmd" >>"$COMMANDS.compare"
      $wrk_cmd >"$RESULTS/wrk-bare.txt"
      cat "$RESULTS/wrk-bare.txt" >&2
    fi
    stop_pid "$BARE_PID"
  fi

  if wanted dynkv-1; then
    start_dynkv 1 DYNKV__CLUSTER__N_VAL=1
    # shellcheck disable=SC2086
    bench dynkv-1 "dynkv 1 node (N=1)" compare "$CLUSTER_PIDS" -- --targets "$CLUSTER_TARGETS" $args
    stop_dynkv
  fi

  if wanted dynkv-1-half; then
    start_dynkv 1 DYNKV__CLUSTER__N_VAL=1
    half=$(python3 -c "print(round($(peak_of "$RESULTS/dynkv-1.json") / 2))")
    # shellcheck disable=SC2086
    bench dynkv-1-half "dynkv 1 node (N=1), open loop at half its peak ($half ops/s)" compare "$CLUSTER_PIDS" -- \
      --targets "$CLUSTER_TARGETS" $args --rate "$half"
    stop_dynkv
  fi

  if wanted dynkv-3-rw2; then
    start_dynkv 3
    # shellcheck disable=SC2086
    bench dynkv-3-rw2 "dynkv 3 nodes N=3 R=W=2" compare "$CLUSTER_PIDS" -- \
      --targets "$CLUSTER_TARGETS" --r 2 --w 2 $args
    stop_dynkv
  fi

  if wanted dynkv-3-rw2-half; then
    start_dynkv 3
    half=$(python3 -c "print(round($(peak_of "$RESULTS/dynkv-3-rw2.json") / 2))")
    # shellcheck disable=SC2086
    bench dynkv-3-rw2-half "dynkv 3 nodes N=3 R=W=2, open loop at half its peak ($half ops/s)" compare "$CLUSTER_PIDS" -- \
      --targets "$CLUSTER_TARGETS" --r 2 --w 2 $args --rate "$half"
    stop_dynkv
  fi

  if wanted dynkv-3-rw1; then
    start_dynkv 3
    # shellcheck disable=SC2086
    bench dynkv-3-rw1 "dynkv 3 nodes N=3 R=W=1" compare "$CLUSTER_PIDS" -- \
      --targets "$CLUSTER_TARGETS" --r 1 --w 1 $args
    stop_dynkv
  fi

  if wanted dynkv-3-rw2-sync; then
    start_dynkv 3 DYNKV__STORAGE__SYNC_WRITES=true
    # shellcheck disable=SC2086
    bench dynkv-3-rw2-sync "dynkv 3 nodes N=3 R=W=2, sync_writes=true (fsync per write)" compare "$CLUSTER_PIDS" -- \
      --targets "$CLUSTER_TARGETS" --r 2 --w 2 $args
    stop_dynkv
  fi

  if wanted etcd-3; then
    start_etcd
    # shellcheck disable=SC2086
    bench etcd-3 "etcd $(etcd --version | awk '/etcd Version/ {print $3}') 3 nodes (v3 HTTP/JSON gateway)" compare "$ETCD_PIDS" -- \
      --targets "$ETCD_TARGETS" --target-kind etcd $args
    stop_etcd
  fi

  if wanted redis; then
    log "Redis (redis-benchmark; reference only)"
    local rport=$((BASE + 30))
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
      --dir "$WORK" >"$WORK/redis.log" 2>&1 &
    local rpid=$!; PIDS+=("$rpid")
    for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
    local rcmd="redis-benchmark -h 127.0.0.1 -p $rport -c $CONNS -d $VALUE -r $KEYS -n $REDIS_N -t set,get --csv"
    echo "redis: $rcmd" >>"$COMMANDS.compare"
    $rcmd >"$RESULTS/redis.csv"
    cat "$RESULTS/redis.csv" >&2
    stop_pid "$rpid"
  fi
}

# A CPU profile of the 3 nodes under the R=W=2 load, in a run of its own so
# the profiler's cost does not touch the figures in the tables.
run_profile() {
  local args pidlist bp
  args=$(common_args "$CONNS" "$VALUE" "$KEYS")
  start_dynkv 3
  # shellcheck disable=SC2086
  pidlist=$(echo $CLUSTER_PIDS | tr ' ' ',')
  rm -f "$WORK/profile.stderr"
  # shellcheck disable=SC2086
  "$BIN" bench --targets "$CLUSTER_TARGETS" --r 2 --w 2 $args --label profile \
    2>"$WORK/profile.stderr" >/dev/null &
  bp=$!; PIDS+=("$bp")
  # Wait for the preload, let the warm-up pass, then sample 10 s of load.
  until grep -q '^preload:' "$WORK/profile.stderr" 2>/dev/null || ! kill -0 "$bp" 2>/dev/null; do sleep 0.5; done
  sleep "$(python3 -c "import re; s='$WARMUP'; print(float(re.sub('[a-z]+', '', s)) * (0.001 if s.endswith('ms') else 1) + 1)")"
  log "profiling nodes $pidlist for 10 s"
  perf record -e cpu-clock -F 499 -g -p "$pidlist" -o "$WORK/perf.data" -- sleep 10 >/dev/null 2>&1 || true
  echo "profile: perf record -e cpu-clock -F 499 -g -p <3 node pids> -- sleep 10 (during dynkv bench --r 2 --w 2 $args)" \
    >>"$COMMANDS.compare"
  perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,symbol --percent-limit 0.7 -g none 2>/dev/null \
    | grep -v '^$' | sed 's/ *- *- *$//' | head -80 >"$RESULTS/profile-dynkv-3-rw2.txt" || true
  perf report -i "$WORK/perf.data" --stdio --children --sort symbol --percent-limit 4 -g none 2>/dev/null \
    | grep -v '^$' | sed 's/ *- *- *$//' | head -120 >"$RESULTS/profile-dynkv-3-rw2-inclusive.txt" || true
  wait "$bp" || true
  stop_dynkv
}

# --- scaling -------------------------------------------------------------------
run_scaling() {
  local v k c
  scaling_run() { # name connections value keys
    local name=$1
    wanted "$name" || return 0
    start_dynkv 3
    # shellcheck disable=SC2046
    bench "$name" "dynkv 3 nodes N=3 R=W=2, $2 connections, $3 B values, $4 keys" scaling "$CLUSTER_PIDS" -- \
      --targets "$CLUSTER_TARGETS" --r 2 --w 2 $(common_args "$2" "$3" "$4")
    stop_dynkv
  }
  for v in 100 1024 65536; do scaling_run "scale-value-$v" "$CONNS" "$v" "$SCALING_VALUE_KEYS"; done
  local key_counts="10000 100000 1000000"
  if [ "$QUICK" = 1 ]; then key_counts="1000 10000 50000"; fi
  for k in $key_counts; do
    # The 1 KiB point at the value-size series' key count is already measured.
    if [ "$k" = "$SCALING_VALUE_KEYS" ]; then continue; fi
    scaling_run "scale-keys-$k" "$CONNS" 1024 "$k"
  done
  for c in 1 4 16 64 256; do
    # The default connection count at the default key count is in the keys series.
    if [ "$c" = "$CONNS" ] && [[ " $key_counts " == *" $KEYS "* ]]; then continue; fi
    scaling_run "scale-conns-$c" "$c" 1024 "$KEYS"
  done
}

if [ "$DOC_ONLY" = 0 ]; then
  if [ "$COMPARE" = 1 ]; then run_compare; fi
  if [ "$PROFILE" = 1 ]; then run_profile; fi
  if [ "$SCALING" = 1 ]; then run_scaling; fi
  cleanup
fi

# --- the document ----------------------------------------------------------------
log "writing $DOC"
if [ "$DOC_ONLY" = 0 ]; then
for s in compare scaling; do
  if [ -f "$COMMANDS.$s" ]; then
    cp "$WORK/machine.txt" "$RESULTS/machine-$s.txt"
    mv "$COMMANDS.$s" "$RESULTS/commands-$s.txt"
  fi
done
fi

python3 - "$RESULTS" "$DOC" "$COMPARE" "$SCALING" "$ROOT" "$QUICK" <<'PYEOF'
import csv, json, os, re, sys

results, doc, do_compare, do_scaling, root, quick = sys.argv[1:]
do_compare, do_scaling = do_compare == "1", do_scaling == "1"
rel = os.path.relpath(results, os.path.dirname(os.path.abspath(doc)) or ".")

def load(name):
    p = os.path.join(results, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None

def ms(us):
    return f"{us / 1000:.2f}"

def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "–"

def machine(kind):
    p = os.path.join(results, f"machine-{kind}.txt")
    if not os.path.exists(p):
        return ""
    lines = dict(l.split(": ", 1) for l in open(p).read().splitlines() if ": " in l)
    return (f"Measured {lines.get('date')} on {lines.get('nproc')} cores ({lines.get('cpu')}), "
            f"{lines.get('memory')} memory, {lines.get('kernel')}; dynkv commit {lines.get('commit')}, "
            f"{lines.get('rustc')}, etcd {lines.get('etcd')}, Redis {lines.get('redis')}.")

def commands(kind):
    p = os.path.join(results, f"commands-{kind}.txt")
    if not os.path.exists(p):
        return []
    out = ["```sh"]
    for line in open(p).read().splitlines():
        name, cmd = line.split(": ", 1)
        cmd = cmd.replace(results + "/", os.path.relpath(results, root) + "/")
        out.append(f"# {name}\n{cmd}")
    out.append("```")
    return out

def cpu_cells(d):
    c = d.get("cpu") or {}
    def f(x):
        return "?" if x is None else f"{x:.2f}"
    per = c.get("server_cpu_us_per_op")
    servers = sum(x for x in c.get("servers", []) if x is not None) if c.get("servers") else None
    return f"{'?' if per is None else f'{per:.0f}'} | {f(servers)} / {f(c.get('generator'))} / {f(c.get('other'))}"

def rss_cell(d):
    r = (d.get("cpu") or {}).get("servers_rss_kib") or []
    return ", ".join("?" if x is None else f"{x / 1024:.0f}" for x in r)

def compare_section():
    out = []
    bare = load("bare")
    rows = ["bare", "dynkv-1", "dynkv-3-rw2", "dynkv-3-rw1", "dynkv-3-rw2-sync", "etcd-3"]
    out.append(machine("compare"))
    out.append("")
    d0 = bare or load("dynkv-1")
    if d0:
        p = d0["params"]
        out.append(f"Load: `dynkv bench`, {p['connections']} connections (closed loop), "
                   f"mix {p['mix']['get']}/{p['mix']['put']}/{p['mix']['delete']} GET/PUT/DELETE, "
                   f"{p['value_size']} B values, {p['keys']} keys (uniform), every key preloaded, "
                   f"{p['warmup_s']:g} s warm-up then {p['duration_s']:g} s measured. "
                   "Generator and servers share the same cores. dynkv nodes run as "
                   "`scripts/cluster.sh` starts them: each node gets the machine's cores "
                   "divided by the number of nodes as async worker threads "
                   "(`node.worker_threads`: 2 for the single node, 1 each for 3 nodes).")
        out.append("")
    out.append("| system | ops/s | vs bare | p50 ms | vs bare | p99 ms | vs bare | p999 ms | errors "
               "| server CPU µs/op | cores: servers / generator / other |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    b = bare["total"] if bare else None
    for name in rows:
        d = load(name)
        if not d:
            continue
        t = d["total"]
        l = t["latency_us"]
        out.append(
            f"| {d['system']} | {t['ops_per_s']:.0f} | {ratio(t['ops_per_s'], b and b['ops_per_s'])} "
            f"| {ms(l['p50'])} | {ratio(l['p50'], b and b['latency_us']['p50'])} "
            f"| {ms(l['p99'])} | {ratio(l['p99'], b and b['latency_us']['p99'])} "
            f"| {ms(l['p999'])} | {t['errors']} | {cpu_cells(d)} |")
    out.append("")
    # Per-operation detail.
    out.append("Per operation (ops/s, p50 / p99 ms):")
    out.append("")
    out.append("| system | GET ops/s | GET p50 | GET p99 | PUT ops/s | PUT p50 | PUT p99 | answers |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for name in rows + ["dynkv-1-half", "dynkv-3-rw2-half"]:
        d = load(name)
        if not d:
            continue
        g, pt = d["per_op"].get("get"), d["per_op"].get("put")
        def cells(r):
            if not r:
                return "– | – | –"
            return f"{r['ops_per_s']:.0f} | {ms(r['latency_us']['p50'])} | {ms(r['latency_us']['p99'])}"
        st = " ".join(f"{k}:{v}" for k, v in d["total"]["statuses"].items())
        out.append(f"| {d['system']} | {cells(g)} | {cells(pt)} | {st} |")
    out.append("")
    # wrk reference.
    wp = os.path.join(results, "wrk-bare.txt")
    if os.path.exists(wp):
        txt = open(wp).read()
        m = re.search(r"Requests/sec:\s+([\d.]+)", txt)
        p50 = re.search(r"^\s+50%\s+(\S+)", txt, re.M)
        p99 = re.search(r"^\s+99%\s+(\S+)", txt, re.M)
        if m:
            rps = float(m.group(1))
            vs = f" ({rps / b['ops_per_s']:.2f}× what `dynkv bench` reached on the same server)" if b else ""
            out.append(f"Reference for the generator's own cost: `wrk` (C, one thread) sending GETs "
                       f"to the bare server reached {rps:.0f} requests/s{vs}, "
                       f"p50 {p50.group(1) if p50 else '?'}, p99 {p99.group(1) if p99 else '?'}.")
            out.append("")
    # Redis.
    rp = os.path.join(results, "redis.csv")
    if os.path.exists(rp):
        rows_r = list(csv.DictReader(open(rp)))
        if rows_r:
            out.append("Redis 1 node, `redis-benchmark`, same connection count and value size, no persistence. "
                       "**Reference only**: a different protocol (RESP), a different C load generator, "
                       "one operation type per run, no replication:")
            out.append("")
            out.append("| test | ops/s | p50 ms | p99 ms |")
            out.append("|---|---:|---:|---:|")
            for r in rows_r:
                out.append(f"| {r['test']} | {float(r['rps']):.0f} | {r['p50_latency_ms']} | {r['p99_latency_ms']} |")
            out.append("")
    # Targets.
    one, three, etcd = load("dynkv-1"), load("dynkv-3-rw2"), load("etcd-3")
    half3, half1 = load("dynkv-3-rw2-half"), load("dynkv-1-half")
    def ok(c):
        return "**met**" if c else "**not met**"
    out.append("Targets:")
    out.append("")
    out.append("| target | measured | result |")
    out.append("|---|---|---|")
    if one and bare:
        r = one["total"]["ops_per_s"] / bare["total"]["ops_per_s"]
        out.append(f"| dynkv 1 node ≥ 0.5× bare ops/s | {r:.2f}× | {ok(r >= 0.5)} |")
    if three and bare:
        r = three["total"]["ops_per_s"] / bare["total"]["ops_per_s"]
        out.append(f"| dynkv 3 nodes N=3 R=W=2 ≥ 0.2× bare ops/s | {r:.2f}× | {ok(r >= 0.2)} |")
    if three and etcd:
        r = three["total"]["ops_per_s"] / etcd["total"]["ops_per_s"]
        out.append(f"| dynkv 3 nodes N=3 R=W=2 ≥ 2× etcd 3 nodes ops/s | {r:.2f}× | {ok(r >= 2)} |")
    for h, what in ((half3, "3 nodes N=3 R=W=2"), (half1, "1 node")):
        if h:
            p99 = h["total"]["latency_us"]["p99"] / 1000
            out.append(f"| dynkv {what}: p99 ≤ 10 ms at half of peak load ({h['params']['rate']:.0f} ops/s, "
                       f"reached {h['total']['ops_per_s']:.0f}) | {p99:.2f} ms | {ok(p99 <= 10)} |")
    out.append("")
    out.append(f"Raw results: [`{rel}/`]({rel}/) (one JSON per run, `wrk-bare.txt`, `redis.csv`).")
    out.append("")
    out.append("Exact commands (each `dynkv bench` also got `--label`; servers were started by the script):")
    out.append("")
    out.extend(commands("compare"))
    return out

def scaling_section():
    out = [machine("scaling"), ""]
    def find(pred):
        got = []
        for f in sorted(os.listdir(results)):
            if f.endswith(".json") and f.startswith("scale-"):
                d = json.load(open(os.path.join(results, f)))
                if pred(d["params"]):
                    got.append(d)
        return got
    def table(title, col, key, rows, rss=False):
        out.append(f"**{title}**")
        out.append("")
        hdr = f"| {col} | ops/s | p50 ms | p99 ms | errors | server CPU µs/op | cores: servers / generator / other |" + (" node RSS MiB |" if rss else "")
        out.append(hdr)
        out.append("|---:|---:|---:|---:|---:|---:|---|" + ("---|" if rss else ""))
        seen = set()
        for d in sorted(rows, key=lambda d: d["params"][key]):
            v = d["params"][key]
            if v in seen:
                continue
            seen.add(v)
            t = d["total"]
            line = f"| {v} | {t['ops_per_s']:.0f} | {ms(t['latency_us']['p50'])} | {ms(t['latency_us']['p99'])} | {t['errors']} | {cpu_cells(d)} |"
            if rss:
                line += f" {rss_cell(d)} |"
            out.append(line)
        out.append("")
    any_run = find(lambda p: True)
    if not any_run:
        return out
    base = any_run[0]["params"]
    conns = int(os.environ.get("BENCH_CONNECTIONS", "64"))
    vkeys = [d for d in any_run if d["params"]["value_size"] != 1024]
    vk = vkeys[0]["params"]["keys"] if vkeys else None
    out.append(f"dynkv 3 nodes N=3 R=W=2 on loopback, mix {base['mix']['get']}/{base['mix']['put']} GET/PUT, "
               f"uniform keys, every key preloaded, {base['warmup_s']:g} s warm-up then {base['duration_s']:g} s measured; "
               "one fresh cluster per row. RSS is each node's VmRSS right after the run.")
    out.append("")
    if vk:
        table(f"Value size ({conns} connections, {vk} keys)", "value bytes", "value_size",
              find(lambda p: p["keys"] == vk and p["connections"] == conns), rss=True)
    table(f"Stored keys (1 KiB values, {conns} connections)", "keys", "keys",
          find(lambda p: p["value_size"] == 1024 and p["connections"] == conns), rss=True)
    main_keys = max((d["params"]["keys"] for d in any_run if d["params"]["connections"] != conns), default=None)
    if main_keys:
        table(f"Connections (1 KiB values, {main_keys} keys)", "connections", "connections",
              find(lambda p: p["value_size"] == 1024 and p["keys"] == main_keys), rss=False)
    out.append("Exact commands:")
    out.append("")
    out.extend(commands("scaling"))
    return out

def splice(text, tag, body):
    begin, end = f"<!-- BEGIN GENERATED {tag} -->", f"<!-- END GENERATED {tag} -->"
    block = "\n".join([begin, "<!-- written by scripts/bench-compare.sh; edit outside the markers -->", *body, end])
    if begin in text and end in text:
        return text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    return text.rstrip("\n") + "\n\n" + block + "\n"

if os.path.exists(doc):
    text = open(doc).read()
else:
    text = ("# Performance\n\nMeasured with `scripts/bench-compare.sh` (comparison) and "
            "`scripts/bench-compare.sh --scaling`.\n\n## Comparison\n")
if do_compare:
    text = splice(text, "COMPARISON", compare_section())
if do_scaling:
    if "<!-- BEGIN GENERATED SCALING -->" not in text:
        text = text.rstrip("\n") + "\n\n## Scaling\n"
    text = splice(text, "SCALING", scaling_section())
os.makedirs(os.path.dirname(os.path.abspath(doc)), exist_ok=True)
open(doc, "w").write(text if text.endswith("\n") else text + "\n")
print(f"wrote {doc}")
PYEOF
