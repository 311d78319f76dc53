#!/usr/bin/env bash
# Runs the Riak Python client's own test suites (riak 2.7.0 from PyPI:
# riak.tests.test_kv, riak.tests.test_client and riak.tests.test_2i, over HTTP, then
# riak.tests.test_security over HTTPS) against a fresh 3-node dynkv cluster, through dynkv's Riak-compatible API (docs/RIAK.md).
#
#   scripts/riak-tests.sh
#
# 1. Makes a Python 3.11 virtualenv with riak==2.7.0 (reused while it still
#    has exactly that version). The package is never edited: the runner
#    imports tests/riak/riak_compat.py first, which restores what
#    Python >= 3.10 removed and the 2016 client still uses.
# 2. Builds the debug dynkv binary if needed and starts n1..n3 with
#    scripts/cluster.sh in a temporary directory.
# 3. Runs test_kv against n1, test_client against n2 (so requests are
#    also forwarded between nodes), test_btypes and test_2i (secondary
#    indexes) against n3 and test_datatypes against n2, skipping only
#    tests/riak/skips.py.
#    Then restarts the cluster with TLS (the openssl engine, the client's
#    cipher list) and security on, and runs test_security against n3 as
#    riak-test (added to /etc/hosts when it does not resolve).
# 4. Prints "test_kv: ...", "test_client: ...", "test_2i: ...", "test_security: ..." and a total line
#    "riak: N passed, N failed, N skipped", stops the cluster, and exits
#    non-zero if any test failed.
#
# Environment: RIAK_VENV (default /var/tmp/dynkv-riak-venv), RIAK_PYTHON
# (default: the first Python 3.11 or 3.10 found), DYNKV_BIN (default: the
# debug build, as `cargo build --workspace --bins` makes it),
# RIAK_BASE_PORT (node i listens on base+i, its cluster port is base+50+i;
# default: the first free of 18070, 18170, ...), RIAK_RUN_TIMEOUT (seconds
# per suite, default 900).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/dynkv-target}"
VENV="${RIAK_VENV:-/var/tmp/dynkv-riak-venv}"
PY="${RIAK_PYTHON:-}"
RIAK_VERSION=2.7.0
started=$(date +%s)

say() { printf '== %s\n' "$*"; }

# --- 1. the client, in its own virtualenv --------------------------------
has_client() {
  "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('riak') != '$RIAK_VERSION')" 2>/dev/null
}
# riak 2.7.0 needs Python 3.10 or 3.11 (3.12 dropped distutils, which it imports).
python_ok() {
  command -v "$1" >/dev/null 2>&1 &&
    "$1" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 11))' 2>/dev/null
}
if ! has_client; then
  if [ -z "$PY" ]; then
    for c in python3.11 /usr/bin/python3.11 python3.10 python3; do
      if python_ok "$c"; then PY="$c"; break; fi
    done
  fi
  if [ -z "$PY" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3.11 python3.11-venv
    PY=python3.11
  fi
  [ -n "$PY" ] || { echo "no Python 3.10 or 3.11 found (set RIAK_PYTHON)" >&2; exit 1; }
  say "virtualenv $VENV ($PY) with riak==$RIAK_VERSION"
  rm -rf "$VENV"
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    # Debian ships venv separately from the interpreter.
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      rm -rf "$VENV"
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3.11-venv
      "$PY" -m venv "$VENV"
    else
      echo "cannot create a virtualenv with $PY: install python3.11-venv" >&2
      exit 1
    fi
  fi
  "$VENV/bin/pip" install --disable-pip-version-check -q "riak==$RIAK_VERSION"
  has_client
fi

# --- 2. a 3-node cluster -----------------------------------------------------
if [ -z "${DYNKV_BIN:-}" ]; then
  cargo build -q --workspace --bins
  DYNKV_BIN="$CARGO_TARGET_DIR/debug/dynkv"
fi
export DYNKV_BIN

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
base="${RIAK_BASE_PORT:-}"
if [ -z "$base" ]; then
  for b in 18070 18170 18270 18370 18470 18570; do
    free=1
    for p in $((b + 1)) $((b + 2)) $((b + 3)) $((b + 51)) $((b + 52)) $((b + 53)); do
      if port_busy "$p"; then free=0; break; fi
    done
    if [ "$free" = 1 ]; then
      base=$b
      break
    fi
  done
  [ -n "$base" ] || { echo "no free ports for the cluster" >&2; exit 1; }
fi
export DYNKV_BASE_PORT="$base"
# Cluster (internode) ports base+51..base+53, inside this base's block of 100.
export DYNKV_CLUSTER_BASE_PORT=$((base + 50))
DYNKV_CLUSTER_DIR="$(mktemp -d -t dynkv-riak-XXXXXX)"
export DYNKV_CLUSTER_DIR

status=1
cleanup() {
  scripts/cluster.sh stop >/dev/null 2>&1 || true
  if [ "$status" -ne 0 ]; then
    for i in 1 2 3; do
      echo "--- last lines of n$i's log"
      tail -n 20 "$DYNKV_CLUSTER_DIR/n$i/node.log" 2>/dev/null || true
    done
  fi
  rm -rf "$DYNKV_CLUSTER_DIR"
}
trap cleanup EXIT

say "cluster n1..n3 on 127.0.0.1:$((base + 1))..$((base + 3)) (cluster ports $((base + 51))..$((base + 53)))"
scripts/cluster.sh start 3
# Wait until every node sees its two peers up.
for i in 1 2 3; do
  for _ in $(seq 1 150); do
    if curl -sf "http://127.0.0.1:$((base + i))/stats" | "$VENV/bin/python" -c \
      'import json, sys; sys.exit(len(json.load(sys.stdin)["connected_nodes"]) != 2)' 2>/dev/null; then
      break
    fi
    sleep 0.2
  done
done

# --- 3. the suites -----------------------------------------------------------
# The bucket types the suites use, made as an operator makes them with
# riak-admin (through n3, so the others learn them by gossip).
say "bucket types"
btype() {
  "$DYNKV_BIN" admin bucket-type "$@" --node "http://127.0.0.1:$((base + 3))" \
    --secret-file "$DYNKV_CLUSTER_DIR/secret"
}
for spec in \
  'no_siblings {"props":{"allow_mult":false}}' \
  'counters {"props":{"datatype":"counter"}}' \
  'sets {"props":{"datatype":"set"}}' \
  'maps {"props":{"datatype":"map"}}' \
  'hlls {"props":{"datatype":"hll","hll_precision":14}}' \
  'gsets {"props":{"datatype":"gset"}}' \
  'write_once {"props":{"write_once":true}}'; do
  name=${spec%% *}
  btype create "$name" "${spec#* }"
  btype activate "$name"
done
btype list

export RIAK_TEST_PROTOCOL=http RUN_KV=1 RUN_RESOLVE=1 RUN_CLIENT=1 RIAK_TEST_HOST=127.0.0.1
export RUN_BTYPES=1 RUN_DATATYPES=1 RUN_INDEXES=1
log="$DYNKV_CLUSTER_DIR/riak-tests.log"
rc=0
say "riak.tests.test_kv against n1"
RIAK_TEST_HTTP_PORT=$((base + 1)) "$VENV/bin/python" tests/riak/run.py test_kv riak.tests.test_kv 2>&1 | tee -a "$log" || rc=1
say "riak.tests.test_client against n2"
RIAK_TEST_HTTP_PORT=$((base + 2)) "$VENV/bin/python" tests/riak/run.py test_client riak.tests.test_client 2>&1 | tee -a "$log" || rc=1
say "riak.tests.test_btypes against n3"
RIAK_TEST_HTTP_PORT=$((base + 3)) "$VENV/bin/python" tests/riak/run.py test_btypes riak.tests.test_btypes 2>&1 | tee -a "$log" || rc=1
say "riak.tests.test_datatypes against n2"
RIAK_TEST_HTTP_PORT=$((base + 2)) "$VENV/bin/python" tests/riak/run.py test_datatypes riak.tests.test_datatypes 2>&1 | tee -a "$log" || rc=1
say "riak.tests.test_2i against n3"
RIAK_TEST_HTTP_PORT=$((base + 3)) "$VENV/bin/python" tests/riak/run.py test_2i riak.tests.test_2i 2>&1 | tee -a "$log" || rc=1

# --- 4. the security suite over HTTPS --------------------------------------
# riak.tests.test_security with RUN_SECURITY=1 needs: the host name
# riak-test resolving to a node, a node speaking TLS 1.2 with the client's
# pinned cipher list (DHE-RSA and RSA AES-CBC suites: the openssl engine),
# the user riakpass/Test1234 with a password source, and a CA, a second
# "bad" CA and a client certificate for riakuser. The cluster restarts with
# TLS and security enabled; the certificates are made here, in the run's
# temporary directory, and never kept.
say "riak.tests.test_security over HTTPS"
if ! getent hosts riak-test >/dev/null; then
  if [ -w /etc/hosts ]; then
    echo "127.0.0.1 riak-test" >>/etc/hosts
  else
    echo "riak-test does not resolve and /etc/hosts is not writable: add '127.0.0.1 riak-test' to it" >&2
    exit 1
  fi
fi
tlsdir="$DYNKV_CLUSTER_DIR/tls"
mkdir -p "$tlsdir"
(
  cd "$tlsdir"
  mkca() { # NAME: a self-signed CA
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" \
      -keyout "$1.key" -out "$1.pem" 2>/dev/null
  }
  mkcert() { # NAME CN SAN: a certificate signed by the test CA
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf 'subjectAltName=%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  }
  mkca ca
  mkca badca
  mkcert node riak-test "DNS:riak-test,DNS:localhost,IP:127.0.0.1"
  mkcert riakuser riakuser "DNS:riakuser"
)
scripts/cluster.sh stop >/dev/null
export DYNKV__NODE__TLS_CERT="$tlsdir/node.pem" DYNKV__NODE__TLS_KEY="$tlsdir/node.key"
export DYNKV__NODE__TLS_ENGINE=openssl
export DYNKV__NODE__TLS_CIPHERS="DHE-RSA-AES128-SHA256:DHE-RSA-AES128-SHA:DHE-RSA-AES256-SHA256:DHE-RSA-AES256-SHA:AES128-SHA256:AES128-SHA:AES256-SHA256:AES256-SHA"
scripts/cluster.sh start 3 >/dev/null
sec() {
  SSL_CERT_FILE="$tlsdir/ca.pem" "$DYNKV_BIN" admin --node "https://127.0.0.1:$((base + 1))" \
    --secret-file "$DYNKV_CLUSTER_DIR/secret" security "$@" >/dev/null
}
sec add-user riakpass password=Test1234
sec add-source riakpass 127.0.0.1/32 password
sec grant riak_kv.get,riak_kv.put,riak_kv.delete,riak_kv.list_keys,riak_kv.index,riak_kv.list_buckets,riak_core.get_bucket,riak_core.set_bucket on any to riakpass
sec enable
# Security is gossiped: wait until n3 refuses a request without credentials.
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$tlsdir/ca.pem" "https://riak-test:$((base + 3))/buckets?buckets=true" || true)
  [ "$code" = 401 ] && break
  sleep 0.1
done
RUN_SECURITY=1 RIAK_TEST_HOST=riak-test RIAK_TEST_HTTP_PORT=$((base + 3)) \
  RIAK_TEST_SECURITY_CACERT="$tlsdir/ca.pem" RIAK_TEST_SECURITY_BAD_CERT="$tlsdir/badca.pem" \
  RIAK_TEST_SECURITY_CERT="$tlsdir/riakuser.pem" RIAK_TEST_SECURITY_KEY="$tlsdir/riakuser.key" \
  RIAK_TEST_SECURITY_REVOKED="$tlsdir/none.crl" \
  "$VENV/bin/python" tests/riak/run.py test_security riak.tests.test_security 2>&1 | tee -a "$log" || rc=1

# --- 5. the count ------------------------------------------------------------
read -r passed failed skipped < <(
  sed -n 's/^test_[a-z0-9]*: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1 \2 \3/p' "$log" |
    awk '{p += $1; f += $2; s += $3; n++} END {print p + 0, (n == 6 ? f : f + 1) + 0, s + 0}'
)
echo
say "Riak client suites against dynkv, $(($(date +%s) - started)) s"
grep -E '^test_[a-z0-9]+: [0-9]+ passed' "$log"
echo "riak: $passed passed, $failed failed, $skipped skipped"
if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then
  status=0
fi
exit "$status"
