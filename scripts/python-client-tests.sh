#!/usr/bin/env bash
# Tests the Python client (clients/python): its unit tests, then its
# cluster tests against a fresh 3-node dynkv cluster.
#
#   scripts/python-client-tests.sh
#
# 1. Makes a virtualenv and installs the package into it the way users do
#    (`pip install ./clients/python`; it has no dependencies).
# 2. Runs the unit tests (clients/python/tests: the hash, the ring view,
#    sibling parsing, the retry policy), which need no server.
# 3. Builds the debug dynkv binary if needed and starts n1..n3 with
#    scripts/cluster.sh on ports of their own in a temporary directory,
#    then runs clients/python/cluster_tests against it (placement against
#    the server's, routing to primaries checked in the nodes' metrics,
#    failover when the owner is killed, modify under concurrent writers,
#    a retried write after a cut connection, read-your-writes).
# 4. Restarts the cluster with TLS (a CA and node certificate made for the
#    run) and security on, adds a user with a password and a bearer token,
#    and runs clients/python/cluster_tests/test_secure.py (CA file, Basic
#    and bearer authentication, 401s, an unknown CA refused).
# 5. Prints "python client: N passed, N failed, N skipped", stops the
#    cluster and exits non-zero if any test failed or a phase ran none.
#
# Environment: PYCLIENT_VENV (default /var/tmp/dynkv-pyclient-venv),
# PYCLIENT_PYTHON (default python3, 3.9 or newer), DYNKV_BIN (default: the
# debug build), PYCLIENT_BASE_PORT (node i listens on base+i, its cluster
# port is base+50+i; default: the first free of 19070, 19170, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/dynkv-target}"
VENV="${PYCLIENT_VENV:-/var/tmp/dynkv-pyclient-venv}"
PY="${PYCLIENT_PYTHON:-python3}"
started=$(date +%s)

say() { printf '== %s\n' "$*"; }

# --- 1. the package, installed -------------------------------------------
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || {
  echo "$PY is older than Python 3.9" >&2
  exit 1
}
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    # Debian ships venv separately from the interpreter.
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      rm -rf "$VENV"
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
      "$PY" -m venv "$VENV"
    else
      echo "cannot create a virtualenv with $PY: install python3-venv" >&2
      exit 1
    fi
  fi
fi
say "pip install ./clients/python into $VENV"
"$VENV/bin/pip" install --disable-pip-version-check -q --force-reinstall --no-deps ./clients/python
# The tests import the installed package, not the source tree.
"$VENV/bin/python" -c 'import dynkv, sys; sys.exit("site-packages" not in dynkv.__file__)'

log="$(mktemp -t dynkv-pyclient-XXXXXX.log)"
count() { # LABEL: parse unittest's summary in $log into "passed failed skipped"
  local ran failed errors skipped
  ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} in .*/\1/p' "$log" | tail -n 1)
  failed=$(sed -n 's/^FAILED (.*failures=\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  errors=$(sed -n 's/^FAILED (.*errors=\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  skipped=$(sed -n 's/.*skipped=\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  ran=${ran:-0} failed=$((${failed:-0} + ${errors:-0})) skipped=${skipped:-0}
  echo "$((ran - failed - skipped)) $failed $skipped"
}

# --- 2. unit tests ---------------------------------------------------------
say "unit tests"
rc=0
(cd clients/python && "$VENV/bin/python" -m unittest discover -s tests -t . -v) >"$log" 2>&1 || rc=1
tail -n 4 "$log"
read -r up uf us < <(count)
[ "$rc" -eq 0 ] || cat "$log"

# --- 3. a 3-node cluster ---------------------------------------------------
if [ -z "${DYNKV_BIN:-}" ]; then
  cargo build -q -p dynkv --bin dynkv
  DYNKV_BIN="$CARGO_TARGET_DIR/debug/dynkv"
fi
export DYNKV_BIN

. scripts/test-cluster-lib.sh
base="${PYCLIENT_BASE_PORT:-}"
[ -n "$base" ] || base=$(free_base_port 19070 1 2 3 51 52 53)
export DYNKV_BASE_PORT="$base"
export DYNKV_CLUSTER_BASE_PORT=$((base + 50))
export DYNKV_PB_BASE_PORT=off
DYNKV_CLUSTER_DIR="$(mktemp -d -t dynkv-pyclient-XXXXXX)"
export DYNKV_CLUSTER_DIR

status=1
cleanup() {
  stop_test_cluster
  rm -rf "$log"
}
trap cleanup EXIT

say "cluster n1..n3 on 127.0.0.1:$((base + 1))..$((base + 3))"
scripts/cluster.sh start 3
# Wait (at most 30 s) until every node sees all three members up.
for i in 1 2 3; do
  for _ in $(seq 1 150); do
    if curl -sf "http://127.0.0.1:$((base + i))/admin/cluster" | "$VENV/bin/python" -c \
      'import json, sys; sys.exit(sum(m["up"] for m in json.load(sys.stdin)["members"]) != 3)' 2>/dev/null; then
      break
    fi
    sleep 0.2
  done
done
export DYNKV_TEST_NODES="http://127.0.0.1:$((base + 1)),http://127.0.0.1:$((base + 2)),http://127.0.0.1:$((base + 3))"

say "cluster tests"
crc=0
(cd clients/python && timeout 600 "$VENV/bin/python" -m unittest cluster_tests.test_cluster -v) >"$log" 2>&1 || crc=1
cat "$log"
read -r cp cf cs < <(count)

# --- 4. the same cluster with TLS and security on ---------------------------
# A CA and a node certificate for 127.0.0.1, made in the run's temporary
# directory and never kept; a user with a password source and the /kv
# grants, and a bearer token for it.
say "cluster tests with TLS and security"
tlsdir="$DYNKV_CLUSTER_DIR/tls"
mkdir -p "$tlsdir"
(
  cd "$tlsdir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=dynkv test CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout node.key -out node.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >node.ext
  openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile node.ext -out node.pem 2>/dev/null
)
scripts/cluster.sh stop >/dev/null
export DYNKV__NODE__TLS_CERT="$tlsdir/node.pem" DYNKV__NODE__TLS_KEY="$tlsdir/node.key"
scripts/cluster.sh start 3 >/dev/null
admin() {
  SSL_CERT_FILE="$tlsdir/ca.pem" "$DYNKV_BIN" admin --node "https://127.0.0.1:$((base + 1))" \
    --secret-file "$DYNKV_CLUSTER_DIR/secret" "$@"
}
password="$(openssl rand -hex 12)"
admin security add-user pyclient "password=$password" >/dev/null
admin security add-source pyclient 127.0.0.1/32 password >/dev/null
admin security grant riak_kv.get,riak_kv.put,riak_kv.delete on kv to pyclient >/dev/null
token="$(admin token create --user pyclient 2>/dev/null | grep -o 'dkv_[A-Za-z0-9_-]*' | head -n 1)"
[ -n "$token" ] || { echo "no bearer token was printed" >&2; exit 1; }
admin security enable >/dev/null
# Security is gossiped: wait until every node refuses a request without credentials.
for i in 1 2 3; do
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$tlsdir/ca.pem" "https://127.0.0.1:$((base + i))/kv/probe" || true)
    [ "$code" = 401 ] && break
    sleep 0.1
  done
done
src=0
(cd clients/python &&
  DYNKV_TEST_NODES="https://127.0.0.1:$((base + 1)),https://127.0.0.1:$((base + 2)),https://127.0.0.1:$((base + 3))" \
  DYNKV_TEST_CA="$tlsdir/ca.pem" DYNKV_TEST_USER=pyclient DYNKV_TEST_PASSWORD="$password" DYNKV_TEST_TOKEN="$token" \
    timeout 300 "$VENV/bin/python" -m unittest cluster_tests.test_secure -v) >"$log" 2>&1 || src=1
cat "$log"
read -r sp sf ss < <(count)

# --- 5. the count ------------------------------------------------------------
passed=$((up + cp + sp)) failed=$((uf + cf + sf)) skipped=$((us + cs + ss))
[ "$rc" -eq 0 ] || [ "$uf" -gt 0 ] || failed=$((failed + 1))
[ "$crc" -eq 0 ] || [ "$cf" -gt 0 ] || failed=$((failed + 1))
[ "$src" -eq 0 ] || [ "$sf" -gt 0 ] || failed=$((failed + 1))
echo
say "Python client tests, $(($(date +%s) - started)) s"
echo "python client: $passed passed, $failed failed, $skipped skipped"
if [ "$failed" -eq 0 ] && [ "$up" -gt 0 ] && [ "$cp" -gt 0 ] && [ "$sp" -gt 0 ] && [ "$ss" -eq 0 ]; then
  status=0
fi
exit "$status"
