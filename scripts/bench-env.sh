# Sourced by the benchmark scripts that start a cluster of their own with
# scripts/cluster.sh (bench-feed.sh, bench-feed-instructions.sh,
# bench-dashboard.sh).

# bench_env NAME BASE_PORT [CLUSTER_OFFSET]: builds the release binary
# unless $DYNKV_BIN names one, makes a scratch directory $WORK
# (/tmp/dynkv-NAME.*), and exports what scripts/cluster.sh reads: the
# cluster's directory, node i's public port BASE_PORT+i and cluster port
# BASE_PORT+CLUSTER_OFFSET+i (default 40), no Riak PBC port.
bench_env() {
  if [ -z "${DYNKV_BIN:-}" ]; then
    cargo build --release -p dynkv >/dev/null
    export DYNKV_BIN="$CARGO_TARGET_DIR/release/dynkv"
  fi
  WORK="$(mktemp -d "/tmp/dynkv-$1.XXXXXX")"
  export DYNKV_CLUSTER_DIR="$WORK/cluster"
  export DYNKV_BASE_PORT="$2"
  export DYNKV_CLUSTER_BASE_PORT=$((DYNKV_BASE_PORT + ${3:-40}))
  export DYNKV_PB_BASE_PORT=off
}
