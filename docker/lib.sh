# Shell helpers shared by the docker cluster scripts (scripts/partition.sh,
# scripts/kill.sh, scripts/demo-*.sh, scripts/e2e-docker.sh). Sourced, not run.
#
# Node nI runs in container dynkv-nI (docker-compose.yml) and answers on the
# host at https://127.0.0.1:(8080+I) (TLS, security on: see curl_setup). Inside the cluster network it serves its
# public API on port 7070 and the internode protocol on its cluster port 7170
# (encrypted, authenticated with the cluster secret, never published on the
# host). JSON is read with python3, which every machine with docker-compose
# v1 has (docker-compose is written in it).
# shellcheck shell=bash

DYNKV_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE_FILE="$DYNKV_ROOT/docker-compose.yml"
export COMPOSE_FILE
# Ports inside the containers, and where the cluster secret is mounted.
# shellcheck disable=SC2034 # used by the scripts that source this file
NODE_PORT=7070 CLUSTER_PORT=7170 SECRET_IN_CONTAINER=/secrets/cluster.secret

# All node ids of the compose cluster (containers that exist, running or not).
cluster_nodes() {
  docker ps -a --format '{{.Names}}' --filter 'name=^dynkv-n[0-9]+$' |
    sed 's/^dynkv-//' | sort -V
}
container() { echo "dynkv-$1"; }
node_port() { echo $((8080 + ${1#n})); }
node_url() { echo "https://127.0.0.1:$(node_port "$1")"; }

# The nodes speak only TLS, with certificates from the cluster's own CA,
# and security is on (docker-compose.yml's `secret` and `security`
# services). Every curl these scripts run from the host reads its CA file
# and the demo user's credentials from $CURL_HOME/.curlrc, which
# curl_setup writes; `curl -q` ignores it (a request without credentials).
DEMO_USER="${DYNKV_DEMO_USER:-demo}" DEMO_PASSWORD="${DYNKV_DEMO_PASSWORD:-demo-password}"
CURL_HOME="${DYNKV_DOCKER_DIR:-${TMPDIR:-/tmp}/dynkv-docker-$(id -u)}"
DOCKER_CA="$CURL_HOME/ca.pem"
export CURL_HOME DOCKER_CA

# curl_setup: copies the cluster's CA out of n1 and writes the .curlrc.
curl_setup() {
  mkdir -p "$CURL_HOME"
  docker cp "$(container n1):/secrets/ca.pem" "$DOCKER_CA.tmp" >/dev/null 2>&1 || return 1
  mv "$DOCKER_CA.tmp" "$DOCKER_CA"
  printf 'cacert = "%s"\nuser = "%s:%s"\n' "$DOCKER_CA" "$DEMO_USER" "$DEMO_PASSWORD" >"$CURL_HOME/.curlrc"
}
if docker inspect "$(container n1)" >/dev/null 2>&1; then curl_setup || true; fi

# Is node nI's container running?
node_running() {
  [ "$(docker inspect -f '{{.State.Running}}' "$(container "$1")" 2>/dev/null)" = true ]
}

# Address of nI on the cluster network (its fixed address, even when stopped).
node_ip() {
  docker inspect -f '{{range .NetworkSettings.Networks}}{{if .IPAMConfig}}{{.IPAMConfig.IPv4Address}}{{else}}{{.IPAddress}}{{end}}{{end}}' \
    "$(container "$1")"
}

# json EXPR: evaluates the Python expression EXPR over the JSON document `d`
# read from stdin. Lists print as space-separated words, booleans as
# true/false, None as nothing.
json() {
  python3 -c '
import json, sys
d = json.load(sys.stdin)
v = eval(sys.argv[1])
if isinstance(v, bool):
    print("true" if v else "false")
elif isinstance(v, (list, tuple)):
    print(" ".join(str(x) for x in v))
elif v is not None:
    print(v)
' "$1"
}

# up_view NODE: the peers NODE believes up, as "n1 n2 ...", or nothing if
# NODE does not answer.
up_view() {
  curl -fsS --max-time 2 "$(node_url "$1")/admin/cluster" 2>/dev/null |
    json '[m["id"] for m in d["members"] if m["up"]]' 2>/dev/null || true
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s until
# it succeeds; fails (returns 1) after SECONDS.
wait_for() {
  local limit=$1 what=$2 start elapsed
  shift 2
  start=$(now_ms)
  while true; do
    if "$@"; then
      elapsed=$(($(now_ms) - start))
      printf '   (%s: after %d.%d s)\n' "$what" $((elapsed / 1000)) $((elapsed % 1000 / 100))
      return 0
    fi
    if [ $(($(now_ms) - start)) -gt $((limit * 1000)) ]; then
      echo "   timed out after ${limit} s waiting for: $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

# Milliseconds since the epoch.
now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((10#$t / 1000)); }

# sees NODE PEER up|down: does NODE's failure detector hold PEER up (down)?
sees() {
  local view
  view=" $(up_view "$1") "
  case "$3" in
    up) [[ "$view" == *" $2 "* ]] ;;
    down) [ "$view" != "  " ] && [[ "$view" != *" $2 "* ]] ;;
  esac
}

# reaches A B: node A believes B up and would send to it (its circuit
# breaker towards B is closed).
reaches() {
  local answer
  answer=$(curl -fsS --max-time 2 "$(node_url "$1")/admin/cluster" 2>/dev/null |
    json "[m['id'] for m in d['members'] if m['id'] == '$2' and m['up'] and m['breaker'] == 'closed']" 2>/dev/null) || return 1
  [[ " $answer " == *" $2 "* ]]
}

# all_see_all: every running node answers and believes every node up.
all_see_all() {
  local n all count
  all=$(cluster_nodes | tr '\n' ' ')
  count=$(wc -w <<<"$all")
  for n in $all; do
    [ "$(up_view "$n" | wc -w)" -eq "$count" ] || return 1
  done
}

# healthy NODE: the node answers /health from the host.
healthy() { curl -fsS --max-time 1 "$(node_url "$1")/health" >/dev/null 2>&1; }

# metric NODE NAME [LABELS]: the value of one Prometheus sample (0 if absent).
metric() {
  local v
  v=$(curl -fsS --max-time 2 "$(node_url "$1")/metrics" 2>/dev/null |
    awk -v name="$2" -v labels="${3:-}" '
      { split($1, a, "{"); n = a[1]; l = (index($1, "{") ? "{" a[2] : "") }
      n == name && (labels == "" || l == labels) { s += $2; found = 1 }
      END { if (found) printf "%d", s }')
  echo "${v:-0}"
}

# Sum of a metric over every running node.
metric_total() {
  local n s=0
  for n in $(cluster_nodes); do
    if node_running "$n"; then s=$((s + $(metric "$n" "$@"))); fi
  done
  echo "$s"
}

# ---------------------------------------------------------------------------
# Narration and checks for the demos.

# step TEXT: a numbered step of a demo's story.
STEP=0
step() { STEP=$((STEP + 1)); printf '\n%d. %s\n' "$STEP" "$*"; }
say() { printf '   %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }
# check DESCRIPTION ACTUAL EXPECTED
check() {
  if [ "$2" = "$3" ]; then
    printf '   ok: %s\n' "$1"
  else
    fail "$1: expected '$3', got '$2'"
  fi
}

# shown WORD...: a command line as one would type it (single quotes where needed).
shown() {
  local w out=""
  for w in "$@"; do
    if [[ "$w" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out="$out $w"; else out="$out '$w'"; fi
  done
  echo "${out# }"
}

# req METHOD NODE PATH [curl arguments...]: sends one request to NODE from
# the host, prints the curl line and the answer. Sets STATUS, BODY, CTX (the
# X-Dynkv-Context answer header) and CTYPE.
# shellcheck disable=SC2034 # STATUS, BODY, CTX, CTYPE are for the caller
req() {
  local method=$1 node=$2 path=$3 url hdr out shown_cmd
  shift 3
  url="$(node_url "$node")$path"
  if [ "$method" = GET ]; then
    shown_cmd=$(shown curl -s "$url" "$@")
  else
    shown_cmd=$(shown curl -s -X"$method" "$url" "$@")
  fi
  printf '   $ %s\n' "$shown_cmd"
  hdr=$(mktemp) out=$(mktemp)
  STATUS=$(curl -sS -X "$method" --max-time 15 -D "$hdr" -o "$out" -w '%{http_code}' "$url" "$@") || STATUS=000
  BODY=$(tr -d '\r' <"$out")
  CTX=$(sed -n 's/^x-dynkv-context: *//Ip' "$hdr" | tr -d '\r')
  CTYPE=$(sed -n 's/^content-type: *//Ip' "$hdr" | tr -d '\r')
  rm -f "$hdr" "$out"
  printf '     -> %s%s\n' "$STATUS" "${CTYPE:+ ($CTYPE)}"
  if [ -n "$BODY" ]; then
    awk 'NR <= 20 { if (length($0) > 400) $0 = substr($0, 1, 400) " ..."; print "        " $0 }
         NR == 21 { print "        ..." }' <<<"$BODY"
  fi
}

# sibling_values: the values of the live siblings of a sibling-JSON document
# on stdin, sorted, comma-separated ("" when there are none).
sibling_values() {
  json '",".join(sorted(s["value"] for s in d.get("siblings", []) if not s["deleted"]))'
}

# local_values NODE KEY: what NODE itself stores for KEY (GET /admin/local).
local_values() {
  curl -fsS --max-time 3 "$(node_url "$1")/admin/local/$2" | sibling_values
}

# holds NODE KEY VALUES: NODE's own replica of KEY has exactly VALUES.
holds() { [ "$(local_values "$1" "$2" 2>/dev/null)" = "$3" ]; }

# preference_list KEY: the key's primary replicas, in ring order.
preference_list() {
  curl -fsS --max-time 3 "$(node_url "${2:-n1}")/admin/ring?key=$1" | json 'd["preference_list"]'
}

# cluster_ready [SECONDS]: every node answers and believes every node up.
cluster_ready() {
  local n
  [ -n "$(cluster_nodes)" ] || fail "no dynkv-nI containers: start the cluster first (docker-compose up -d)"
  curl_setup || fail "cannot copy the cluster's CA out of $(container n1)"
  wait_for "${1:-30}" "security is on (the one-shot security service)" security_on ||
    fail "security did not come on: docker logs dynkv-security"
  for n in $(cluster_nodes); do
    node_running "$n" || fail "$n is not running (scripts/kill.sh --restart $n)"
  done
  wait_for "${1:-30}" "every node answers and sees every other node up" all_see_all ||
    fail "the cluster is not whole: $(for n in $(cluster_nodes); do printf '%s sees [%s] ' "$n" "$(up_view "$n")"; done)"
}

# security_on: n1 refuses a request without credentials (401) and serves
# the demo user.
security_on() {
  [ "$(curl -q -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$DOCKER_CA" "$(node_url n1)/admin/cluster")" = 401 ] &&
    curl -fsS --max-time 2 -o /dev/null "$(node_url n1)/admin/cluster"
}

# require_fresh_key KEY NODE...: the demos tell a story that starts from a
# key nobody wrote; refuse one that any of NODE... stores (tombstones too).
require_fresh_key() {
  local key=$1 n
  shift
  local found
  for n in "$@"; do
    found=$(curl -fsS --max-time 3 "$(node_url "$n")/admin/local/$key" | json 'd["found"]') ||
      fail "$n does not answer GET /admin/local/$key"
    [ "$found" = false ] ||
      fail "$n already stores '$key': run the demo with a key never written (or no argument)"
  done
}
