#!/usr/bin/env bash
# Measures the public listener over plain HTTP and over HTTPS with each TLS
# engine: keep-alive requests/s and node CPU per request (wrk on GET /health),
# then new TLS handshakes/s and node CPU per handshake (openssl s_time, one
# client, a full handshake per connection).
# One node at a time on loopback, with a throwaway RSA-2048 certificate.
#
#   scripts/bench-tls.sh [DURATION_S] [CONNECTIONS]
#
# DYNKV_BIN names the binary (default target/release/dynkv). Needs wrk and
# openssl (scripts/install-deps.sh).
set -euo pipefail
DUR=${1:-10}
CONNS=${2:-16}
BIN=${DYNKV_BIN:-target/release/dynkv}
PORT=${DYNKV_BENCH_PORT:-7470}
WORK=$(mktemp -d)
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # name scheme engine
  local name=$1 scheme=$2 engine=$3
  rm -rf "$WORK/data"
  local env=(DYNKV__NODE__LISTEN=127.0.0.1:$PORT DYNKV__NODE__CLUSTER_LISTEN=127.0.0.1:$((PORT + 100))
    DYNKV__NODE__DATA_DIR="$WORK/data" DYNKV__NODE__WORKER_THREADS=1)
  if [ "$scheme" = https ]; then
    env+=(DYNKV__NODE__TLS_CERT="$WORK/cert.pem" DYNKV__NODE__TLS_KEY="$WORK/key.pem" DYNKV__NODE__TLS_ENGINE="$engine")
  fi
  env "${env[@]}" RUST_LOG=warn "$BIN" serve >"$WORK/$name.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -skf "$scheme://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
  local t0 t1
  t0=$(cpu_ticks $PID)
  local out
  out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" "$scheme://127.0.0.1:$PORT/health")
  t1=$(cpu_ticks $PID)
  local reqs rps
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  local us_per_req
  us_per_req=$(awk -v a="$t0" -v b="$t1" -v r="$reqs" -v hz="$TICKS" 'BEGIN {printf "%.1f", (b - a) / hz * 1e6 / r}')
  local hs="-" hs_cpu="-"
  if [ "$scheme" = https ]; then
    # One client, one full handshake per connection, back to back.
    t0=$(cpu_ticks $PID)
    local n
    n=$(openssl s_time -connect 127.0.0.1:$PORT -new -time "$DUR" 2>/dev/null |
      awk '/connections in .* real seconds/ {print $1}')
    t1=$(cpu_ticks $PID)
    hs=$(awk -v n="$n" -v d="$DUR" 'BEGIN {printf "%.0f", n / d}')
    hs_cpu=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$TICKS" 'BEGIN {printf "%.0f", (b - a) / hz * 1e6 / n}')
  fi
  printf '%-8s %9s req/s %6s us CPU/req %6s handshakes/s %6s us CPU/handshake\n' \
    "$name" "$rps" "$us_per_req" "$hs" "$hs_cpu"
  kill -TERM $PID
  wait $PID || true
}

run plain http -
run rustls https rustls
run openssl https openssl
