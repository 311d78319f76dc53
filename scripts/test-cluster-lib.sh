# Sourced by the scripts that start a test cluster of their own beside
# others (riak-tests.sh, python-client-tests.sh, ui-test.sh): picks a block
# of ports no one is listening on, and takes the cluster down afterwards.

# True when something listens on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_base_port FIRST OFFSET...: prints the first of FIRST, FIRST+100, ...,
# FIRST+500 whose ports base+OFFSET are all free; fails when none is.
free_base_port() {
  local first=$1 b o free
  shift
  for b in $(seq "$first" 100 $((first + 500))); do
    free=1
    for o in "$@"; do
      if port_busy $((b + o)); then free=0; break; fi
    done
    if [ "$free" = 1 ]; then echo "$b"; return 0; fi
  done
  echo "no free ports for the cluster" >&2
  return 1
}

# stop_test_cluster: stops the cluster in $DYNKV_CLUSTER_DIR, shows the
# last lines of each node's log when $status is not 0 (the run failed), and
# removes the directory.
stop_test_cluster() {
  scripts/cluster.sh stop >/dev/null 2>&1 || true
  if [ "${status:-1}" -ne 0 ]; then
    for i in 1 2 3; do
      echo "--- last lines of n$i's log"
      tail -n 20 "$DYNKV_CLUSTER_DIR/n$i/node.log" 2>/dev/null || true
    done
  fi
  rm -rf "$DYNKV_CLUSTER_DIR"
}
