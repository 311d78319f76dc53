#!/usr/bin/env bash
# A local dynkv cluster on 127.0.0.1.
#
#   scripts/cluster.sh start [K]    start nodes n1..nK (default 3), node i on port 7070+i
#                                   (its cluster port, for internode traffic, 7170+i)
#   scripts/cluster.sh stop         stop every node (SIGTERM)
#   scripts/cluster.sh kill I       SIGKILL node nI
#   scripts/cluster.sh restart I    start node nI again on its data
#   scripts/cluster.sh status       which nodes run, and n1's view of the cluster
#   scripts/cluster.sh join I       start a new node nI and stage its join through n1
#                                   (then: dynkv admin plan / dynkv admin commit)
#   scripts/cluster.sh leave I      stage nI's leave (then plan / commit; stop it once it left)
#
# Data and logs live in $DYNKV_CLUSTER_DIR (default ./.cluster)/nI, and the
# cluster secret every node shares in $DYNKV_CLUSTER_DIR/secret (made on first
# start, mode 600, reused afterwards; membership commands take it with
# --secret-file). Public ports are $DYNKV_BASE_PORT+i (default 7070+i),
# cluster ports $DYNKV_CLUSTER_BASE_PORT+i (default $DYNKV_BASE_PORT+100+i,
# i.e. 7170+i), Riak PBC ports $DYNKV_PB_BASE_PORT+i (default
# $DYNKV_BASE_PORT+200+i, i.e. 7270+i; DYNKV_PB_BASE_PORT=off: none). The binary is $DYNKV_BIN, else the release build, else the
# debug build. $DYNKV_NODE_WRAPPER, if set, is a command the node runs
# under (e.g. "valgrind --tool=callgrind"); $DYNKV_START_WAIT_S (default
# 10) is how long a node may take to answer /health.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${DYNKV_CLUSTER_DIR:-./.cluster}"
TARGET="${CARGO_TARGET_DIR:-target}"
BASE_PORT="${DYNKV_BASE_PORT:-7070}"
CLUSTER_BASE_PORT="${DYNKV_CLUSTER_BASE_PORT:-$((BASE_PORT + 100))}"
PB_BASE_PORT="${DYNKV_PB_BASE_PORT:-$((BASE_PORT + 200))}"
SECRET="$DIR/secret"

bin() {
  if [ -n "${DYNKV_BIN:-}" ]; then echo "$DYNKV_BIN"; return; fi
  for b in "$TARGET/release/dynkv" "$TARGET/debug/dynkv"; do
    if [ -x "$b" ]; then echo "$b"; return; fi
  done
  echo "no dynkv binary: run 'cargo build --release -p dynkv' first (or set DYNKV_BIN)" >&2
  exit 1
}

size() { cat "$DIR/size" 2>/dev/null || echo 0; }
# Node i's public port (client API, admin, metrics) and cluster port (internode).
port() { echo $((BASE_PORT + $1)); }
# Node i's Riak PBC listener (empty when PBC is off).
pbaddr() { if [ "$PB_BASE_PORT" = off ]; then echo ""; else echo "127.0.0.1:$((PB_BASE_PORT + $1))"; fi; }
cport() { echo $((CLUSTER_BASE_PORT + $1)); }
# Member entries name cluster addresses.
members() {
  local k=$1 out="" i
  for i in $(seq 1 "$k"); do out="${out:+$out,}n$i@127.0.0.1:$(cport "$i")"; done
  echo "$out"
}

# The cluster secret: generated once (64 hex digits, readable by this user
# only), then reused by every node started from $DIR and by the admin calls.
ensure_secret() {
  [ -s "$SECRET" ] && return
  mkdir -p "$DIR"
  local s
  s=$("$(bin)" admin secret 2>/dev/null) || s=$(openssl rand -hex 32 2>/dev/null) || s=""
  [[ "$s" =~ ^[0-9a-f]{64,}$ ]] || {
    echo "cannot make a cluster secret ('dynkv admin secret' and 'openssl rand -hex 32' failed)" >&2
    exit 1
  }
  (umask 077 && printf '%s\n' "$s" >"$SECRET.tmp.$$") && mv "$SECRET.tmp.$$" "$SECRET"
  echo "new cluster secret in $SECRET"
}
running() {
  local p st
  p=$(cat "$DIR/n$1/pid" 2>/dev/null) || return 1
  st=$(ps -o stat= -p "$p" 2>/dev/null) || return 1
  [[ -n "$st" && "$st" != Z* ]]
}

# Worker threads per node: the machine's cores shared among the K nodes
# (at least one), unless DYNKV__NODE__WORKER_THREADS says otherwise.
threads_per_node() {
  local t=$(($(nproc) / ($1 > 0 ? $1 : 1)))
  echo $((t > 0 ? t : 1))
}

start_node() {
  local i=$1 k members; k=$(size)
  members="${2:-$(members "$k")}"
  mkdir -p "$DIR/n$i"
  if running "$i"; then echo "n$i already running"; return; fi
  ensure_secret
  local wrapper=()
  read -ra wrapper <<<"${DYNKV_NODE_WRAPPER:-}"
  DYNKV__NODE__ID="n$i" \
  DYNKV__NODE__LISTEN="127.0.0.1:$(port "$i")" \
  DYNKV__NODE__CLUSTER_LISTEN="127.0.0.1:$(cport "$i")" \
  DYNKV__RIAK__PB_LISTEN="$(pbaddr "$i")" \
  DYNKV__NODE__DATA_DIR="$DIR/n$i/data" \
  DYNKV__CLUSTER__MEMBERS="$members" \
  DYNKV__CLUSTER__SECRET_FILE="$SECRET" \
  DYNKV__NODE__WORKER_THREADS="${DYNKV__NODE__WORKER_THREADS:-$(threads_per_node "$k")}" \
  RUST_LOG="${RUST_LOG:-info}" \
    nohup "${wrapper[@]}" "$(bin)" serve --config config/local-cluster.toml >>"$DIR/n$i/node.log" 2>&1 &
  echo $! >"$DIR/n$i/pid"
  # With DYNKV__NODE__TLS_CERT set the public port speaks only TLS; this
  # liveness probe does not check the certificate (-k), clients must.
  local scheme=http tls=()
  if [ -n "${DYNKV__NODE__TLS_CERT:-}" ]; then scheme=https tls=(-k); fi
  for _ in $(seq 1 $((${DYNKV_START_WAIT_S:-10} * 10))); do
    if curl -sf "${tls[@]}" "$scheme://127.0.0.1:$(port "$i")/health" >/dev/null; then
      echo "n$i up on $scheme://127.0.0.1:$(port "$i"), cluster port $(cport "$i") (pid $(cat "$DIR/n$i/pid"), log $DIR/n$i/node.log)"
      return
    fi
    sleep 0.1
  done
  echo "n$i did not start; see $DIR/n$i/node.log" >&2
  exit 1
}

cmd="${1:-status}"
case "$cmd" in
  start)
    k="${2:-3}"
    mkdir -p "$DIR"
    echo "$k" >"$DIR/size"
    for i in $(seq 1 "$k"); do start_node "$i"; done
    ;;
  stop)
    for i in $(seq 1 "$(size)"); do
      if running "$i"; then kill -TERM "$(cat "$DIR/n$i/pid")"; echo "stopping n$i"; fi
    done
    for i in $(seq 1 "$(size)"); do
      for _ in $(seq 1 100); do running "$i" || break; sleep 0.1; done
    done
    ;;
  kill)
    i="${2:?node number}"
    if running "$i"; then kill -KILL "$(cat "$DIR/n$i/pid")"; echo "killed n$i (SIGKILL)"; else echo "n$i is not running"; fi
    ;;
  restart)
    i="${2:?node number}"
    if running "$i"; then kill -TERM "$(cat "$DIR/n$i/pid")"; for _ in $(seq 1 100); do running "$i" || break; sleep 0.1; done; fi
    start_node "$i"
    ;;
  join)
    i="${2:?node number}"
    mkdir -p "$DIR"
    [ "$i" -gt "$(size)" ] && echo "$i" >"$DIR/size"
    # A new node starts alone (same secret), then asks n1, through n1's
    # cluster address, to stage its join.
    start_node "$i" "n$i@127.0.0.1:$(cport "$i")"
    "$(bin)" admin join "127.0.0.1:$(cport 1)" --node "http://127.0.0.1:$(port "$i")" \
      --secret-file "$SECRET"
    echo "staged; now run: dynkv admin plan --secret-file $SECRET --node http://127.0.0.1:$(port 1)"
    echo "             and: dynkv admin commit --secret-file $SECRET --node http://127.0.0.1:$(port 1)"
    ;;
  leave)
    i="${2:?node number}"
    "$(bin)" admin leave "n$i" --node "http://127.0.0.1:$(port 1)" --secret-file "$SECRET"
    echo "staged; run plan and commit (dynkv admin plan|commit --secret-file $SECRET --node http://127.0.0.1:$(port 1)),"
    echo "then 'scripts/cluster.sh stop-node $i' once n$i has left"
    ;;
  stop-node)
    i="${2:?node number}"
    if running "$i"; then kill -TERM "$(cat "$DIR/n$i/pid")"; echo "stopping n$i"; fi
    ;;
  status)
    k=$(size)
    [ "$k" -gt 0 ] || { echo "no cluster in $DIR"; exit 0; }
    for i in $(seq 1 "$k"); do
      if running "$i"; then echo "n$i running  127.0.0.1:$(port "$i")  cluster 127.0.0.1:$(cport "$i")"; else echo "n$i stopped"; fi
    done
    for i in $(seq 1 "$k"); do
      if running "$i"; then "$(bin)" status --node "http://127.0.0.1:$(port "$i")" || true; break; fi
    done
    ;;
  *)
    sed -n '2,13p' "$0"; exit 2 ;;
esac
