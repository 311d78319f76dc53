#!/usr/bin/env bash
# Side-by-side performance of dynkv on this machine, in one run, with one
# load generator (`dynkv bench`) and one set of parameters.
#
#   scripts/bench-compare.sh              the comparison: bare axum server, dynkv N=1,
#                                         dynkv 3 nodes R=W=2 / R=W=1 / R=W=2 with fsync,
#                                         the Riak HTTP and PB APIs of one 3-node cluster,
#                                         etcd 3 nodes, Redis (redis-benchmark, reference),
#                                         and p99 at half of the peak rate
#   scripts/bench-compare.sh --scaling    dynkv 3 nodes N=3 R=W=2 against value size,
#                                         stored keys and connections, with node RSS
#   scripts/bench-compare.sh --all        both
#   scripts/bench-compare.sh --quick ...  short runs and small key spaces, results in
#                                         ./bench-results (docs/ is left alone)
#   --profile                             also record a CPU profile (perf, cpu-clock, DWARF call
#                                         chains) of a separate 3-node R=W=2 run (not one in the
#                                         tables); with BENCH_BEFORE also of the earlier build, and
#                                         the internode share of both profiles (see below)
#   --ab N                                with BENCH_BEFORE: only an A/B series, N pairs of short
#                                         3-node R=W=2 runs alternating the earlier and the current
#                                         build (BENCH_AB_DURATION 15s, BENCH_AB_KEYS 20000), whose
#                                         min/median/max go into the document
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
# nodes on +1.., their cluster ports on +41.., their Riak PBC ports on +61.., etcd on +11.. and +21..,
# Redis on +30), BENCH_WORK (/var/tmp/dynkv-bench: data dirs and logs),
# BENCH_RESULTS, BENCH_DOC, BENCH_REDIS_REQUESTS (1000000),
# BENCH_SCALING_VALUE_KEYS (10000: key space of the value-size series),
# BENCH_NO_INSTALL=1 (do not apt-get missing packages), BENCH_ONLY (comma-separated
# run names, e.g. dynkv-1,etcd-3: run only these, keep the other results).
#
# Before and after: BENCH_BEFORE=DIR names a checkout of an earlier build
# (e.g. `git worktree add /var/tmp/dynkv-before 487235d`), built with
# `CARGO_TARGET_DIR=$BENCH_BEFORE_TARGET cargo build --release -p dynkv`
# (BENCH_BEFORE_TARGET: /var/tmp/dynkv-before-target; the script runs that
# build again, a no-op when it is fresh). It adds the run dynkv-3-rw2-before:
# the dynkv-3-rw2 load on 3 nodes started by DIR's own scripts/cluster.sh with
# DIR's binary (so that build's conventions apply: ports, member addresses,
# token or secret), measured by the current `dynkv bench`; and the table
# "Internode protocol: before and after".
#
# Internode share of a profile (--profile, printed and written to
# profile-<run>-internode.json): the share of the nodes' samples
#   (a) in the kernel's TCP transmit path: some kernel frame of the sample's
#       call chain is a socket send entry (sock_sendmsg, sock_write_iter,
#       __sys_sendto, ...), tcp_sendmsg(_locked), tcp_push,
#       __tcp_push_pending_frames, tcp_write_xmit, (__)tcp_transmit_skb,
#       (__)tcp_send_ack, (__)ip_queue_xmit, (__)ip_local_out,
#       ip_output, ip_finish_output(2), (__)dev_queue_xmit,
#       dev_hard_start_xmit or loopback_xmit. On loopback the receiving
#       socket's processing runs inside this path (softirq under
#       __dev_queue_xmit). Every socket counts, the client-facing answers too
#       (the same number per request before and after);
#   (b) in internode code: not in (a) nor in the kernel's receive path, and
#       the innermost frame of the chain that names a known owner names an
#       internode one. Internode owners: hyper::client, hyper_util::client
#       (the earlier HTTP client), dynkv_rpc (transport, net, frames,
#       handshake, dispatch, message encoding, peer health), dynkv_api::rpc
#       (the /rpc route), postcard, prost, snow, ring (snow's AEAD with
#       its ring-accelerated feature; ring serves nothing else here),
#       chacha20(poly1305), poly1305, aead, blake2, x25519/curve25519. Other owners end the
#       search: dynkv_storage, RocksDB, dynkv_quorum, dynkv_api, the
#       anti-entropy, membership and repair crates, hyper::server,
#       hyper_util::server, axum (the HTTP server, reported on its own). The
#       owner of `<A as B>::f` is A, except B when B is prost's or
#       dynkv_rpc::wire's encoding trait. So the store work a request does
#       inside a handler is not internode, while encoding a message, its
#       object included, is.
# The internode share is (a) + (b). The earlier build's HTTP server parsing
# /rpc requests cannot be told from the one parsing client requests, so it
# is in neither: its (b) is a lower bound. Call chains come from DWARF
# unwinding (perf record --call-graph dwarf; the binaries keep no frame
# pointers), read with `perf script --no-inline`.
# Internode traffic alone (printed after the share, and in the document):
# (a) is split by the socket a send is for, from the user-space frames above
# the system call: an internode socket (dynkv_rpc, hyper's client) or an HTTP
# server socket (hyper's server, axum), which before served the clients and
# /rpc alike. The nodes' /metrics are read right before and after the 10 s
# sampled, and f = the /rpc share of the HTTP requests they served
# (dynkv_http_requests_total{op="rpc"} over all ops; 0 after, where no /rpc
# exists). Then
#   (a') internode sockets' transmit path = sends on internode sockets
#        + f x sends on HTTP server sockets,
#   (c)  the HTTP server's work for /rpc = f x the HTTP server's samples,
# both estimates that take a /rpc exchange to cost hyper's server what a
# client exchange costs, and internode traffic = (a') + (b) + (c).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }
COMPARE=1 SCALING=0 QUICK=0 PROFILE=0 DOC_ONLY=0 AB=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --scaling) COMPARE=0 SCALING=1 ;;
    --all) COMPARE=1 SCALING=1 ;;
    --profile) PROFILE=1 ;;
    --ab) AB="${2:-}"; shift; COMPARE=0 ;;
    --ab=*) AB="${1#--ab=}"; COMPARE=0 ;;
    --doc-only) DOC_ONLY=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage; exit 2 ;;
  esac
  shift
done
[[ "$AB" =~ ^[0-9]+$ ]] || { echo "--ab takes a number of pairs" >&2; exit 2; }

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
# The earlier build (BENCH_BEFORE): its checkout, its binary.
BEFORE="${BENCH_BEFORE:-}"
BEFORE_TARGET="${BENCH_BEFORE_TARGET:-/var/tmp/dynkv-before-target}"
BEFORE_BIN="$BEFORE_TARGET/release/dynkv"
AB_DURATION="${BENCH_AB_DURATION:-15s}"
AB_KEYS="${BENCH_AB_KEYS:-20000}"
if [ -n "$BEFORE" ]; then BEFORE="$(cd "$BEFORE" && pwd)"; fi

ONLY="${BENCH_ONLY:-}"
# wanted NAME: whether this run is to be measured (BENCH_ONLY unset, or names it).
# Runs of the earlier build need BENCH_BEFORE.
wanted() {
  if [[ "$1" == *-before ]] && [ -z "$BEFORE" ]; then return 1; fi
  [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]
}

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
# Only what the runs to be measured need (BENCH_ONLY may leave etcd, Redis and wrk out).
need_pkgs=()
if wanted etcd-3; then
  command -v etcd >/dev/null || need_pkgs+=(etcd-server)
  command -v etcdctl >/dev/null || need_pkgs+=(etcd-client)
fi
if wanted redis; then
  command -v redis-server >/dev/null || need_pkgs+=(redis-server)
  command -v redis-benchmark >/dev/null || need_pkgs+=(redis-tools)
fi
if wanted wrk-bare; then command -v wrk >/dev/null || need_pkgs+=(wrk); fi
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
if [ "$AB" -gt 0 ] && [ -z "$BEFORE" ]; then die "--ab needs BENCH_BEFORE (a checkout of the earlier build)"; fi
if [ -z "$BEFORE" ] && [[ ",$ONLY," == *-before,* ]]; then die "BENCH_ONLY names a -before run: set BENCH_BEFORE"; fi

log "building release binaries"
cargo build --release -p dynkv -p dynkv-bare
if [ ! -x "$BIN" ] || [ ! -x "$BARE" ]; then die "release binaries missing in $CARGO_TARGET_DIR/release"; fi
if [ -n "$BEFORE" ]; then
  [ -x "$BEFORE/scripts/cluster.sh" ] || die "BENCH_BEFORE=$BEFORE has no scripts/cluster.sh"
  log "building the earlier build in $BEFORE (target $BEFORE_TARGET)"
  (cd "$BEFORE" && CARGO_TARGET_DIR="$BEFORE_TARGET" cargo build --release -p dynkv)
  [ -x "$BEFORE_BIN" ] || die "no binary $BEFORE_BIN"
fi

fi
mkdir -p "$RESULTS" "$WORK"
WORK="$(cd "$WORK" && pwd)"
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
  if [ -n "$BEFORE" ]; then
    echo "before: $(git -C "$BEFORE" log -1 --format='%h (%cs, "%s")' 2>/dev/null || echo unknown)"
  fi
} >"$WORK/machine.txt"
fi
RESULTS="$(cd "$RESULTS" && pwd)"
# Command logs are gathered in $WORK while the runs go, and moved next to the
# results at the end.
COMMANDS="$WORK/commands.txt"
# The command log of a section keeps the lines of runs not measured again.
for s in compare scaling ab; do
  rm -f "$COMMANDS.$s"
  if [ -f "$RESULTS/commands-$s.txt" ] && [ -n "$ONLY" ]; then cp "$RESULTS/commands-$s.txt" "$COMMANDS.$s"; fi
done

# Writes facts about the run into a result JSON: system, exact command.
# Also when and what was measured (a run measured again with BENCH_ONLY
# keeps its own date and commit).
annotate() { # file system command section
  python3 - "$@" "$WORK/machine.txt" <<'EOF'
import json, sys
f, system, cmd, section, facts = sys.argv[1:]
d = json.load(open(f))
d["system"] = system
d["command"] = cmd
d["section"] = section
m = dict(l.split(": ", 1) for l in open(facts).read().splitlines() if ": " in l)
d["measured"] = {k: m[k] for k in ("date", "commit", "before", "nproc", "cpu", "memory", "kernel", "rustc") if m.get(k)}
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
# start_dynkv K [DYNKV__...=value ...]: a cluster of the current build.
start_dynkv() { start_cluster "$ROOT" "$BIN" "$@"; }
# start_dynkv_before K [DYNKV__...=value ...]: a cluster of the earlier build
# (BENCH_BEFORE), started by that checkout's own scripts/cluster.sh.
start_dynkv_before() { start_cluster "$BEFORE" "$BEFORE_BIN" "$@"; }
# start_cluster CHECKOUT BINARY K [DYNKV__...=value ...]
start_cluster() {
  local tree=$1 bin=$2 k=$3 i; shift 3
  CLUSTER_DIR="$WORK/dynkv"
  rm -rf "$CLUSTER_DIR"
  CLUSTER_DIRS+=("$CLUSTER_DIR")
  env "$@" DYNKV_CLUSTER_DIR="$CLUSTER_DIR" DYNKV_BASE_PORT="$BASE" \
    DYNKV_CLUSTER_BASE_PORT="$((BASE + 40))" DYNKV_PB_BASE_PORT="$((BASE + 60))" DYNKV_BIN="$bin" \
    RUST_LOG="${RUST_LOG:-info}" "$tree/scripts/cluster.sh" start "$k" >&2
  CLUSTER_TARGETS="" CLUSTER_PIDS="" PB_TARGETS=""
  for i in $(seq 1 "$k"); do
    CLUSTER_TARGETS="${CLUSTER_TARGETS:+$CLUSTER_TARGETS,}http://127.0.0.1:$((BASE + i))"
    PB_TARGETS="${PB_TARGETS:+$PB_TARGETS,}127.0.0.1:$((BASE + 60 + i))"
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

# The system name of the earlier build's 3-node R=W=2 runs.
before_label() {
  echo "dynkv 3 nodes N=3 R=W=2, before: $(git -C "$BEFORE" log -1 --format=%h 2>/dev/null || echo earlier build)"
}

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

  if wanted dynkv-3-rw2-before; then
    start_dynkv_before 3
    # shellcheck disable=SC2086
    bench dynkv-3-rw2-before "$(before_label)" compare "$CLUSTER_PIDS" -- \
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

  # The Riak APIs of one cluster: HTTP and protocol buffers, the same
  # load (R=W=2, bucket `bench`, blind writes), one after the other.
  if wanted riak-http-3 || wanted riak-pb-3; then
    start_dynkv 3
    # shellcheck disable=SC2086
    bench riak-http-3 "dynkv 3 nodes N=3 R=W=2, Riak HTTP API" compare "$CLUSTER_PIDS" -- \
      --targets "$CLUSTER_TARGETS" --target-kind riak-http --r 2 --w 2 $args
    # shellcheck disable=SC2086
    bench riak-pb-3 "dynkv 3 nodes N=3 R=W=2, Riak PB API" compare "$CLUSTER_PIDS" -- \
      --targets "$PB_TARGETS" --target-kind riak-pb --r 2 --w 2 $args
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
# the profiler's cost does not touch the figures in the tables. DWARF call
# chains (the binaries keep no frame pointers), so inclusive figures and the
# internode share see whole chains.
# run_profile NAME START_FUNCTION: NAME is dynkv-3-rw2 or dynkv-3-rw2-before.
run_profile() {
  local name=$1 start=$2 args pidlist bp data="$WORK/perf-$1.data" rec
  args=$(common_args "$CONNS" "$VALUE" "$KEYS")
  "$start" 3
  # shellcheck disable=SC2086
  pidlist=$(echo $CLUSTER_PIDS | tr ' ' ',')
  rm -f "$WORK/profile.stderr" "$data"
  # shellcheck disable=SC2086
  "$BIN" bench --targets "$CLUSTER_TARGETS" --r 2 --w 2 $args --label "profile $name" \
    --pids "$pidlist" --json "$RESULTS/profile-$name.json" 2>"$WORK/profile.stderr" >/dev/null &
  bp=$!; PIDS+=("$bp")
  # Wait for the preload, let the warm-up pass, then sample 10 s of load.
  until grep -q '^preload:' "$WORK/profile.stderr" 2>/dev/null || ! kill -0 "$bp" 2>/dev/null; do sleep 0.5; done
  sleep "$(python3 -c "import re; s='$WARMUP'; print(float(re.sub('[a-z]+', '', s)) * (0.001 if s.endswith('ms') else 1) + 1)")"
  log "profiling $name: nodes $pidlist for 10 s"
  rec="perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p <3 node pids> -- sleep 10"
  scrape_metrics >"$WORK/metrics-$name-start.txt"
  perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$pidlist" -o "$data" -- sleep 10 >/dev/null 2>&1 || true
  scrape_metrics >"$WORK/metrics-$name-end.txt"
  if [ -f "$COMMANDS.compare" ]; then
    grep -v "^profile-$name: " "$COMMANDS.compare" >"$COMMANDS.compare.tmp" || true
    mv "$COMMANDS.compare.tmp" "$COMMANDS.compare"
  fi
  echo "profile-$name: $rec (during dynkv bench --r 2 --w 2 $args on the cluster of $name)" >>"$COMMANDS.compare"
  wait "$bp" || true
  stop_dynkv
  {
    echo "# $name: $rec, during dynkv bench --r 2 --w 2 $args"
    echo "# perf report --no-children --sort dso,symbol -g none --no-inline (self samples, all three nodes)"
    perf report -i "$data" --stdio --no-children --sort dso,symbol --percent-limit 0.5 -g none --no-inline 2>/dev/null \
      | grep -v '^$' | sed 's/ *- *- *$//; s/ *$//' | head -90
  } >"$RESULTS/profile-$name.txt" || true
  {
    echo "# $name: $rec, during dynkv bench --r 2 --w 2 $args"
    echo "# perf report --children --sort symbol -g none --no-inline (inclusive share: samples with the symbol anywhere in their chain)"
    perf report -i "$data" --stdio --children --sort symbol --percent-limit 3 -g none --no-inline 2>/dev/null \
      | grep -v '^$' | sed 's/ *- *- *$//; s/ *$//' | head -150
  } >"$RESULTS/profile-$name-inclusive.txt" || true
  perf script -i "$data" -F comm,tid,ip,sym,dso --no-inline >"$WORK/perf-$name.txt" 2>/dev/null || true
  internode_share "$WORK/perf-$name.txt" "$RESULTS/profile-$name.json" "$RESULTS/profile-$name-internode.json" "$name" \
    "$WORK/metrics-$name-start.txt" "$WORK/metrics-$name-end.txt"
}

# The cluster's /metrics, every node's one after the other.
scrape_metrics() {
  local t
  for t in ${CLUSTER_TARGETS//,/ }; do curl -s --max-time 5 "$t/metrics" || true; done
}

# internode_share PERF_SCRIPT_TEXT BENCH_JSON OUT_JSON NAME [METRICS_START METRICS_END]:
# the internode share of one profile, as the header describes; printed and
# written to OUT_JSON.
internode_share() {
  python3 - "$@" <<'PYEOF'
import collections, json, os, re, sys

src, bench_json, out, name = sys.argv[1:5]
metrics_files = sys.argv[5:7]
KERNEL = "[kernel.kallsyms]"
# (a) The kernel's TCP transmit path: any of these in a sample's kernel chain.
SEND = {
    "sock_sendmsg", "__sock_sendmsg", "sock_write_iter", "____sys_sendmsg", "___sys_sendmsg",
    "__sys_sendmsg", "__sys_sendto",
    "tcp_sendmsg", "tcp_sendmsg_locked", "tcp_push", "__tcp_push_pending_frames",
    "tcp_write_xmit", "__tcp_transmit_skb", "tcp_transmit_skb", "tcp_send_ack", "__tcp_send_ack",
    "ip_queue_xmit", "__ip_queue_xmit", "ip_local_out", "__ip_local_out", "ip_output",
    "ip_finish_output", "__ip_finish_output", "ip_finish_output2",
    "dev_queue_xmit", "__dev_queue_xmit", "dev_hard_start_xmit", "loopback_xmit",
}
# The kernel's receive path (socket reads), reported on its own.
RECV = {
    "sock_recvmsg", "sock_read_iter", "____sys_recvmsg", "___sys_recvmsg", "__sys_recvmsg",
    "__sys_recvfrom", "tcp_recvmsg", "tcp_recvmsg_locked",
}
# (b) Owners of internode code, by group; the innermost frame naming an
# owner (internode or one of OTHER) decides.
INTERNODE = [
    ("HTTP client (hyper)", ("hyper::client::", "hyper_util::client::")),
    ("/rpc route", ("dynkv_api::rpc::",)),
    ("crypto (Noise)", ("snow::", "ring::", "ring_core_", "chacha20poly1305::", "chacha20::",
                        "poly1305::", "aead::", "blake2::", "x25519_dalek::", "curve25519_dalek::")),
    ("codec", ("postcard::", "prost::", "dynkv_rpc::wire::", "dynkv_rpc::messages::",
               "dynkv_rpc::message::")),
    ("transport (dynkv_rpc)", ("dynkv_rpc::",)),
]
CODEC_TRAITS = ("prost::", "dynkv_rpc::wire::")
HTTP_SERVER = ("hyper::server::", "hyper_util::server::", "axum::")
OTHER = ("dynkv_storage::", "rocksdb::", "rocksdb_", "dynkv_quorum::", "dynkv_api::",
         "dynkv_antientropy::", "dynkv_membership::", "dynkv_repair::")

def owner(sym):
    """`<A as B>::f` belongs to A (to B when B is an encoding trait); other symbols to their path."""
    if not sym.startswith("<"):
        return sym
    depth = 0
    for i, ch in enumerate(sym):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
            if depth == 0:
                return sym[1:i].lstrip("&").removeprefix("mut ").removeprefix("dyn ")
        elif depth == 1 and sym.startswith(" as ", i):
            if sym[i + 4:].startswith(CODEC_TRAITS):
                return sym[i + 4:]
            return sym[1:i].lstrip("&").removeprefix("mut ").removeprefix("dyn ")
    return sym

INTERNODE_SOCKET = ("dynkv_rpc::", "hyper::client::", "hyper_util::client::", "dynkv_api::rpc::")

def socket_side(frames):
    """Whose socket a send or receive is for: the first user-space frame naming an owner."""
    for s, d in frames:
        if d == KERNEL:
            continue
        o = owner(s)
        if o.startswith(INTERNODE_SOCKET):
            return "internode"
        if o.startswith(HTTP_SERVER):
            return "http server"
    return "other"

def classify(frames):
    """frames: innermost first, (symbol, dso). Returns (category, the deciding frame)."""
    kernel = {s for s, d in frames if d == KERNEL}
    if kernel & SEND:
        return "send", socket_side(frames)
    if kernel & RECV:
        return "recv", socket_side(frames)
    for s, d in frames:
        if "librocksdb" in d:
            return None, None
        o = owner(s)
        for group, prefixes in INTERNODE:
            if o.startswith(prefixes):
                return group, s
        if o.startswith(HTTP_SERVER):
            return "http server", s
        if o.startswith(OTHER):
            return None, None
    return None, None

def samples(path):
    frames = []
    for line in open(path, errors="replace"):
        if not line.strip() or not line[0].isspace():
            if frames:
                yield frames
            frames = []
            continue
        m = re.match(r"\s*[0-9a-f]+ (.*) \((.*)\)$", line.rstrip("\n"))
        if m:
            frames.append((re.sub(r"\+0x[0-9a-f]+$", "", m.group(1)), m.group(2)))
    if frames:
        yield frames

def http_requests(path):
    """dynkv_http_requests_total summed over the nodes, by op."""
    ops = collections.Counter()
    if not path or not os.path.exists(path):
        return None
    for line in open(path, errors="replace"):
        m = re.match(r'dynkv_http_requests_total\{([^}]*)\} ([0-9.e+]+)$', line.strip())
        if m:
            op = re.search(r'op="([^"]*)"', m.group(1))
            ops[op.group(1) if op else "?"] += float(m.group(2))
    return ops

total = 0
cats = collections.Counter()
sides = collections.Counter()
deciding = collections.Counter()
for fr in samples(src):
    total += 1
    c, s = classify(fr)
    if c:
        cats[c] += 1
    if c in ("send", "recv"):
        sides[(c, s)] += 1
    elif c and s and c != "http server":
        deciding[s[:160]] += 1
if total == 0:
    print(f"internode share of {name}: no samples in {src}")
    sys.exit(0)
groups = {g: cats[g] / total for g, _ in INTERNODE if cats[g]}
res = {
    "run": name,
    "samples": total,
    "send": cats["send"] / total,
    "code": sum(groups.values()),
    "code_groups": groups,
    "recv": cats["recv"] / total,
    "http_server": cats["http server"] / total,
    "top_code_frames": [[s, n / total] for s, n in deciding.most_common(12)],
}
res["share"] = res["send"] + res["code"]
res["send_by_socket"] = {k: sides[("send", k)] / total for k in ("internode", "http server", "other")}
res["recv_by_socket"] = {k: sides[("recv", k)] / total for k in ("internode", "http server", "other")}
# Internode traffic alone: f = the /rpc share of the HTTP requests served while sampled.
starts, ends = (http_requests(p) for p in (metrics_files + [None, None])[:2])
if starts is not None and ends is not None:
    served = {op: ends[op] - starts.get(op, 0) for op in ends}
    served = {op: n for op, n in served.items() if n > 0}
    all_http = sum(served.values())
    f = served.get("rpc", 0) / all_http if all_http else 0.0
    sb = res["send_by_socket"]
    res["http_requests"] = served
    res["rpc_fraction"] = f
    res["send_internode"] = sb["internode"] + f * sb["http server"]
    res["send_clients"] = (1 - f) * sb["http server"] + sb["other"]
    res["http_server_rpc"] = f * res["http_server"]
    res["traffic"] = res["send_internode"] + res["code"] + res["http_server_rpc"]
if os.path.exists(bench_json):
    b = json.load(open(bench_json))
    per = (b.get("cpu") or {}).get("server_cpu_us_per_op")
    res["profile_run"] = {"ops_per_s": b["total"]["ops_per_s"], "server_cpu_us_per_op": per}
json.dump(res, open(out, "w"), indent=2)
open(out, "a").write("\n")
pct = lambda x: f"{100 * x:5.1f} %"
per = (res.get("profile_run") or {}).get("server_cpu_us_per_op")
us = lambda x: f"  ({x * per:5.1f} µs per request)" if per else ""
print(f"internode share of {name} ({total} samples; profile run "
      f"{res.get('profile_run', {}).get('ops_per_s', 0):.0f} ops/s, {per or '?'} server CPU µs/op):")
print(f"  (a) kernel TCP transmit path  {pct(res['send'])}{us(res['send'])}")
print(f"  (b) internode code            {pct(res['code'])}{us(res['code'])}")
for g, v in groups.items():
    print(f"        {g:26s}{pct(v)}")
print(f"  internode share (a)+(b)       {pct(res['share'])}{us(res['share'])}")
print(f"  (not counted) kernel receive path {pct(res['recv'])}, HTTP server {pct(res['http_server'])}")
if "traffic" in res:
    print(f"  internode traffic alone (f = {res['rpc_fraction']:.2f} of HTTP requests were /rpc):")
    print(f"    (a') internode sockets' sends {pct(res['send_internode'])}{us(res['send_internode'])}"
          f"  (client-facing sends {pct(res['send_clients'])})")
    print(f"    (c) HTTP server for /rpc      {pct(res['http_server_rpc'])}{us(res['http_server_rpc'])}")
    print(f"    (a')+(b)+(c)                  {pct(res['traffic'])}{us(res['traffic'])}")
PYEOF
}

# A/B: N pairs of short 3-node R=W=2 runs, the earlier and the current build
# alternating (after-before, before-after, ...), so drift on a shared machine
# hits both alike. Results in $RESULTS/ab/.
run_ab() {
  local i args first second ONLY=""
  args=$(common_args "$CONNS" "$VALUE" "$AB_KEYS" | sed "s/--duration [^ ]*/--duration $AB_DURATION/")
  rm -rf "$RESULTS/ab"; mkdir -p "$RESULTS/ab" "$WORK/ab"
  for i in $(seq 1 "$AB"); do
    if [ $((i % 2)) = 1 ]; then first=after second=before; else first=before second=after; fi
    for which in $first $second; do
      if [ "$which" = before ]; then start_dynkv_before 3; else start_dynkv 3; fi
      # shellcheck disable=SC2086
      bench "ab/$i-$which" "$([ "$which" = before ] && before_label || echo "dynkv 3 nodes N=3 R=W=2") (A/B pair $i)" ab "$CLUSTER_PIDS" -- \
        --targets "$CLUSTER_TARGETS" --r 2 --w 2 $args
      stop_dynkv
    done
  done
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
  if [ "$AB" -gt 0 ]; then run_ab; fi
  if [ "$PROFILE" = 1 ]; then
    run_profile dynkv-3-rw2 start_dynkv
    if [ -n "$BEFORE" ]; then run_profile dynkv-3-rw2-before start_dynkv_before; fi
  fi
  if [ "$SCALING" = 1 ]; then run_scaling; fi
  cleanup
fi

# --- the document ----------------------------------------------------------------
log "writing $DOC"
if [ "$DOC_ONLY" = 0 ]; then
for s in compare scaling ab; do
  if [ -f "$COMMANDS.$s" ]; then
    # A BENCH_ONLY run keeps the facts of the run the section's other rows
    # come from; its own rows carry their date and commit in their JSON.
    if [ -z "$ONLY" ] || [ "$s" = ab ] || [ ! -f "$RESULTS/machine-$s.txt" ]; then
      cp "$WORK/machine.txt" "$RESULTS/machine-$s.txt"
    fi
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
    others = "".join(f", {name} {lines[k]}" for k, name in (("etcd", "etcd"), ("redis", "Redis")) if lines.get(k))
    return (f"Measured {lines.get('date')} on {lines.get('nproc')} cores ({lines.get('cpu')}), "
            f"{lines.get('memory')} memory, {lines.get('kernel')}; dynkv commit {lines.get('commit')}, "
            f"{lines.get('rustc')}{others}.")

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

def facts(kind):
    p = os.path.join(results, f"machine-{kind}.txt")
    if not os.path.exists(p):
        return {}
    return dict(l.split(": ", 1) for l in open(p).read().splitlines() if ": " in l)

def remeasured(names, kind):
    """Rows whose own measurement date differs from the section's run."""
    base = facts(kind).get("date")
    out = []
    for n in names:
        d = load(n)
        m = (d or {}).get("measured") or {}
        if d and m.get("date") and m.get("date") != base:
            out.append(f"{d['system']} ({m['date']}, commit {m.get('commit', '?')})")
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
    rows = ["bare", "dynkv-1", "dynkv-3-rw2", "dynkv-3-rw1", "dynkv-3-rw2-sync", "riak-http-3",
            "riak-pb-3", "etcd-3"]
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
    later = remeasured(rows + ["dynkv-1-half", "dynkv-3-rw2-half"], "compare")
    if later:
        out.append("Measured again later on their own (`BENCH_ONLY`), so compare them with the other rows "
                   "with care: " + "; ".join(later) + ".")
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
    base_date = facts("compare").get("date")
    def when(d):
        return ((d or {}).get("measured") or {}).get("date") or base_date
    def apart(*ds):
        """Rows measured on different occasions (BENCH_ONLY): no target is judged across them."""
        return len({when(d) for d in ds if d}) > 1
    def judge(c, *ds):
        return "– (rows from different runs)" if apart(*ds) else ok(c)
    out.append("Targets:")
    out.append("")
    out.append("| target | measured | result |")
    out.append("|---|---|---|")
    if one and bare:
        r = one["total"]["ops_per_s"] / bare["total"]["ops_per_s"]
        out.append(f"| dynkv 1 node ≥ 0.5× bare ops/s | {r:.2f}× | {judge(r >= 0.5, one, bare)} |")
    if three and bare:
        r = three["total"]["ops_per_s"] / bare["total"]["ops_per_s"]
        out.append(f"| dynkv 3 nodes N=3 R=W=2 ≥ 0.2× bare ops/s | {r:.2f}× | {judge(r >= 0.2, three, bare)} |")
    if three and etcd:
        r = three["total"]["ops_per_s"] / etcd["total"]["ops_per_s"]
        out.append(f"| dynkv 3 nodes N=3 R=W=2 ≥ 2× etcd 3 nodes ops/s | {r:.2f}× | {judge(r >= 2, three, etcd)} |")
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

def internode_section():
    """The earlier build against the current one: the full-length pair, the
    profiles' internode shares, and the A/B series."""
    out = []
    before, after = load("dynkv-3-rw2-before"), load("dynkv-3-rw2")
    shares = {n: json.load(open(os.path.join(results, f"profile-{n}-internode.json")))
              for n in ("dynkv-3-rw2-before", "dynkv-3-rw2")
              if os.path.exists(os.path.join(results, f"profile-{n}-internode.json"))}
    abdir = os.path.join(results, "ab")
    ab = {}
    if os.path.isdir(abdir):
        for f in sorted(os.listdir(abdir)):
            m = re.match(r"(\d+)-(before|after)\.json$", f)
            if m:
                ab.setdefault(int(m.group(1)), {})[m.group(2)] = json.load(open(os.path.join(abdir, f)))
    if not (before or shares or ab):
        return None
    mfacts = facts("compare")
    def cpu(d):
        return (d.get("cpu") or {}).get("server_cpu_us_per_op")
    if before and after:
        mb, ma = before.get("measured") or {}, after.get("measured") or {}
        f = {**mfacts, **ma}
        when = sorted({x.get("date") or mfacts.get("date") or "?" for x in (mb, ma)})
        out.append(f"Measured {' and '.join(when)} on {f.get('nproc')} cores ({f.get('cpu')}), "
                   f"{f.get('memory')} memory, {f.get('kernel')}; after: dynkv commit "
                   f"{f.get('commit', '?')}, {f.get('rustc')}.")
        out.append("")
        out.append(f"*Before* is the build of commit {mb.get('before') or mfacts.get('before', '?')}, "
                   "its cluster started by that checkout's own `scripts/cluster.sh` with its own binary "
                   "(`BENCH_BEFORE`); *after* is this tree's. Both were measured by the current "
                   "`dynkv bench` with the load of the comparison above (3 nodes, N=3, R=W=2), one "
                   "right after the other; their commands are with the comparison's.")
        out.append("")
        out.append("| build | ops/s | p50 ms | p99 ms | p999 ms | errors | server CPU µs/op | cores: servers / generator / other |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for d in (before, after):
            t = d["total"]; l = t["latency_us"]
            out.append(f"| {d['system']} | {t['ops_per_s']:.0f} | {ms(l['p50'])} | {ms(l['p99'])} "
                       f"| {ms(l['p999'])} | {t['errors']} | {cpu_cells(d)} |")
        tb, ta = before["total"], after["total"]
        cb, ca = cpu(before), cpu(after)
        out.append(f"| after / before | {ratio(ta['ops_per_s'], tb['ops_per_s'])} "
                   f"| {ratio(ta['latency_us']['p50'], tb['latency_us']['p50'])} "
                   f"| {ratio(ta['latency_us']['p99'], tb['latency_us']['p99'])} "
                   f"| {ratio(ta['latency_us']['p999'], tb['latency_us']['p999'])} | | {ratio(ca, cb)} | |")
        out.append("")
    if shares:
        b, a = shares.get("dynkv-3-rw2-before"), shares.get("dynkv-3-rw2")
        cols = [x for x in (b, a) if x]
        names = ["before" if x is b else "after" for x in cols]
        out.append("**Internode share of the profiles** (`--profile`: `perf record -e cpu-clock -F 499 "
                   "--call-graph dwarf,16384` of the three nodes, 10 s of the same load in a separate run; "
                   "how the shares are computed: the header of `scripts/bench-compare.sh`). Share of "
                   "all the nodes' samples; µs per request = share × that profile run's server CPU µs/op:")
        out.append("")
        out.append("| | " + " | ".join(names) + (" | after / before |" if len(cols) == 2 else " |"))
        out.append("|---|" + "---:|" * len(cols) + ("---:|" if len(cols) == 2 else ""))
        def per_req(x, key):
            per = (x.get("profile_run") or {}).get("server_cpu_us_per_op")
            return x[key] * per if per else None
        def row(label, key, sub=None):
            vals = [(x["code_groups"].get(sub, 0.0) if sub else x[key]) for x in cols]
            cells = [f"{100 * v:.1f} %" for v in vals]
            r = f"| {label} | " + " | ".join(cells)
            if len(cols) == 2:
                r += f" | {ratio(vals[1], vals[0])}"
            out.append(r + " |")
        row("(a) kernel TCP transmit path (every socket)", "send")
        row("(b) internode code", "code")
        order = ["HTTP client (hyper)", "/rpc route", "transport (dynkv_rpc)", "codec", "crypto (Noise)"]
        seen = {g for x in cols for g in x["code_groups"]}
        for g in [g for g in order if g in seen] + sorted(seen - set(order)):
            row(f"&nbsp;&nbsp;of which {g}", None, g)
        row("**internode share (a) + (b)**", "share")
        prs = [per_req(x, "share") for x in cols]
        if all(v is not None for v in prs):
            r = "| internode µs per request (share × server CPU µs/op) | " + " | ".join(f"{v:.0f}" for v in prs)
            if len(cols) == 2:
                r += f" | {ratio(prs[1], prs[0])}"
            out.append(r + " |")
        runs = [x.get("profile_run") for x in cols]
        if all(runs):
            out.append("| profile run: ops/s, server CPU µs/op | " + " | ".join(
                f"{r['ops_per_s']:.0f}, {r['server_cpu_us_per_op']:.0f}" for r in runs) + (" | |" if len(cols) == 2 else " |"))
        row("not counted: kernel receive path", "recv")
        row("not counted: HTTP server (hyper server, axum)", "http_server")
        traffic = all("traffic" in x for x in cols)
        if traffic:
            out.append("| *internode traffic alone (below the table)* |" + " |" * len(cols) + (" |" if len(cols) == 2 else ""))
            row("(a') transmit path of internode sockets", "send_internode")
            row("&nbsp;&nbsp;client-facing sends, in (a) but not in (a')", "send_clients")
            row("(b) internode code, as above", "code")
            row("(c) HTTP server work for `/rpc` (estimate: f × HTTP server)", "http_server_rpc")
            row("**internode traffic (a') + (b) + (c)**", "traffic")
            prs = [per_req(x, "traffic") for x in cols]
            if all(v is not None for v in prs):
                r = "| internode traffic µs per request | " + " | ".join(f"{v:.0f}" for v in prs)
                if len(cols) == 2:
                    r += f" | {ratio(prs[1], prs[0])}"
                out.append(r + " |")
            out.append("| f: `/rpc` share of the HTTP requests served while sampled | " + " | ".join(
                f"{x['rpc_fraction']:.2f}" for x in cols) + (" | |" if len(cols) == 2 else " |"))
        out.append("")
        if traffic:
            out.append("*(a)* counts every socket's sends, the answers to clients included; *(a')* only "
                       "those of internode sockets: the sends whose user-space chain is internode code, and "
                       "for the HTTP server's sockets, which before carried client requests and `/rpc` alike, "
                       "the share f of them. *(c)* is the earlier build's HTTP server work for `/rpc` (parsing "
                       "requests, writing answers), which no call chain tells from its work for clients: "
                       "f × its HTTP server samples. Both take a `/rpc` exchange to cost hyper's server "
                       "what a client exchange does; f comes from `dynkv_http_requests_total{op}` read "
                       "from every node right before and after the 10 s sampled.")
            out.append("")
        if b and a:
            r = a["share"] / b["share"]
            out.append(f"Target *the internode share is at least halved*: (a) + (b) {100 * b['share']:.1f} % → "
                       f"{100 * a['share']:.1f} % ({r:.2f}×): {'**met**' if r <= 0.5 else '**not met**'}"
                       + (f"; internode traffic alone (a') + (b) + (c) {100 * b['traffic']:.1f} % → "
                          f"{100 * a['traffic']:.1f} % ({a['traffic'] / b['traffic']:.2f}×): "
                          f"{'**met**' if a['traffic'] / b['traffic'] <= 0.5 else '**not met**'}"
                          if traffic else "") + ".")
            out.append("")
        out.append(f"Profiles: [`{rel}/profile-dynkv-3-rw2.txt`]({rel}/profile-dynkv-3-rw2.txt) "
                   "(self), `profile-dynkv-3-rw2-inclusive.txt`, and the same for `dynkv-3-rw2-before`; "
                   "shares with the functions that decided them: `profile-*-internode.json`.")
        out.append("")
    if ab:
        import statistics
        pairs = sorted(ab)
        first = next(iter(ab[pairs[0]].values()))
        p = first["params"]
        mfacts = facts("ab") or mfacts
        out.append(f"**A/B series** ({mfacts.get('date', '?')}, commit {mfacts.get('commit', '?')} against "
                   f"{mfacts.get('before', '?')}): {len(pairs)} pairs of runs, the builds alternating "
                   "(after, before, before, after, ...), each on a fresh cluster: "
                   f"{p['connections']} connections, {p['keys']} keys, {p['value_size']} B values, "
                   f"{p['warmup_s']:g} s warm-up, {p['duration_s']:g} s measured. min / median / max:")
        out.append("")
        out.append("| build | runs | server CPU µs/op | ops/s | p99 ms | cores: other (max) |")
        out.append("|---|---:|---|---|---|---:|")
        def mmm(xs, f):
            xs = sorted(xs)
            return f"{f(xs[0])} / {f(statistics.median(xs))} / {f(xs[-1])}"
        for which in ("before", "after"):
            ds = [ab[i][which] for i in pairs if which in ab[i]]
            if not ds:
                continue
            cpus = [cpu(d) for d in ds if cpu(d) is not None]
            out.append(f"| {which} | {len(ds)} | {mmm(cpus, lambda v: f'{v:.0f}') if cpus else '?'} "
                       f"| {mmm([d['total']['ops_per_s'] for d in ds], lambda v: f'{v:.0f}')} "
                       f"| {mmm([d['total']['latency_us']['p99'] for d in ds], ms)} "
                       f"| {max((d.get('cpu') or {}).get('other') or 0 for d in ds):.2f} |")
        both = [i for i in pairs if len(ab[i]) == 2 and cpu(ab[i]['before']) and cpu(ab[i]['after'])]
        if both:
            rc = [cpu(ab[i]["after"]) / cpu(ab[i]["before"]) for i in both]
            ro = [ab[i]["after"]["total"]["ops_per_s"] / ab[i]["before"]["total"]["ops_per_s"] for i in both]
            out.append(f"| after / before, per pair | {len(both)} | {mmm(rc, lambda v: f'{v:.2f}×')} "
                       f"| {mmm(ro, lambda v: f'{v:.2f}×')} | | |")
        out.append("")
        out.append("Every run of the series: [`" + rel + "/ab/`](" + rel + "/ab/); exact commands:")
        out.append("")
        out.extend(commands("ab"))
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
body = internode_section()
if body is not None:
    if "<!-- BEGIN GENERATED INTERNODE -->" not in text:
        text = text.rstrip("\n") + "\n\n## Internode protocol: before and after\n"
    text = splice(text, "INTERNODE", body)
if do_scaling:
    if "<!-- BEGIN GENERATED SCALING -->" not in text:
        text = text.rstrip("\n") + "\n\n## Scaling\n"
    text = splice(text, "SCALING", scaling_section())
os.makedirs(os.path.dirname(os.path.abspath(doc)), exist_ok=True)
open(doc, "w").write(text if text.endswith("\n") else text + "\n")
print(f"wrote {doc}")
PYEOF
