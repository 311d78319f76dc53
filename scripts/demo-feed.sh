#!/usr/bin/env bash
# Demo: watch a key and follow the change feed while writes land on other
# nodes and the node serving the feed is killed (docs/FEED.md).
#
#   scripts/demo-feed.sh              all of it, narrated, in one terminal;
#                                     exits non-zero if the cluster misbehaves
#   scripts/demo-feed.sh follow       terminal 1: a watcher of demo/cart and a
#                                     feed consumer of demo/ (switches node on
#                                     errors, resumes with Last-Event-ID)
#   scripts/demo-feed.sh write        terminal 2: writes through n2 and n3,
#                                     kills n1 in between, restarts it
#
# Runs its own 3-node cluster (scripts/cluster.sh) in $DYNKV_CLUSTER_DIR
# (default ./.cluster-demo-feed) on ports $DYNKV_BASE_PORT+i (default
# 7570+i); `scripts/demo-feed.sh stop` stops it. Needs curl and python3, and
# a built dynkv (cargo build --release -p dynkv).
set -euo pipefail
cd "$(dirname "$0")/.."
export DYNKV_CLUSTER_DIR="${DYNKV_CLUSTER_DIR:-./.cluster-demo-feed}"
export DYNKV_BASE_PORT="${DYNKV_BASE_PORT:-7570}"
export DYNKV_PB_BASE_PORT=off
# The feed shows a change this long after it was written (the default is
# 5 s, sized for a 3 s write timeout); the demo's writes use the default.
export DYNKV__FEED__SETTLE="${DYNKV__FEED__SETTLE:-5s}"
CLUSTER=scripts/cluster.sh
url() { echo "http://127.0.0.1:$((DYNKV_BASE_PORT + $1))"; }
say() { printf '   %s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }
EVENTS="$DYNKV_CLUSTER_DIR/feed-events.jsonl"
WATCHED="$DYNKV_CLUSTER_DIR/watch-answers.txt"

up() {
  if ! curl -sf "$(url 1)/health" >/dev/null 2>&1; then
    "$CLUSTER" start 3 >/dev/null
  fi
  for i in 1 2 3; do
    for _ in $(seq 1 100); do
      curl -sf "$(url "$i")/health" >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  # Every node sees the others (a write at w=all goes through).
  for _ in $(seq 1 100); do
    case "$(curl -s -o /dev/null -w '%{http_code}' -XPUT "$(url 1)/kv/warmup?w=all" -d w)" in 200 | 204) return ;; esac
    sleep 0.2
  done
  fail "the cluster does not take writes"
}

# A feed consumer: server-sent events of demo/, one node at a time; on an
# error it moves to the next node and resumes with Last-Event-ID. Each
# change is printed and appended to $EVENTS.
follow_feed() {
  local node=1 last=""
  : >"$EVENTS"
  while true; do
    local hdr=()
    [ -n "$last" ] && hdr=(-H "last-event-id: $last")
    printf '   [feed] following n%s%s\n' "$node" "${last:+ from $last}"
    # One python process parses the stream; it prints the last id on exit.
    last=$(curl -sN --max-time 600 -H 'accept: text/event-stream' "${hdr[@]}" \
      "$(url "$node")/feed?prefix=demo/" 2>/dev/null | python3 -c '
import json, sys
last = sys.argv[1]
events = open(sys.argv[2], "a")
kind = data = ident = None
for line in iter(sys.stdin.readline, ""):
    line = line.rstrip("\n")
    if line.startswith("id: "): ident = line[4:]
    elif line.startswith("event: "): kind = line[7:]
    elif line.startswith("data: "): data = line[6:]
    elif line == "":
        if ident: last = ident
        if kind == "change":
            e = json.loads(data)
            what = "deleted" if e["deleted"] else repr(e["value"])
            print("   [feed]", e["key"], e["dot"], what, file=sys.stderr, flush=True)
            events.write(data + "\n"); events.flush()
        kind = data = ident = None
try:
    print(last)
except BrokenPipeError:
    pass
' "$last" "$EVENTS") || true   # curl ends with an error when the node dies
    node=$((node % 3 + 1))
    sleep 0.5
  done
}

# A watcher of demo/cart through n3: read, then watch with the context.
watch_cart() {
  local ctx
  : >"$WATCHED"
  ctx=$(curl -s -o /dev/null -D - "$(url 3)/kv/demo/cart" | sed -n 's/^x-dynkv-context: *//Ip' | tr -d '\r')
  while true; do
    local out status body
    out=$(curl -s -D - --max-time 40 -H "x-dynkv-context: $ctx" "$(url 3)/kv/demo/cart?watch=true&timeout_ms=30000") || { sleep 1; continue; }
    status=$(printf '%s' "$out" | head -1 | awk '{print $2}')
    body=$(printf '%s' "$out" | sed '1,/^\r$/d')
    ctx=$(printf '%s' "$out" | sed -n 's/^x-dynkv-context: *//Ip' | tr -d '\r')
    case "$status" in
      304) printf '   [watch] demo/cart: no change in 30 s (304)\n' ;;
      *) printf '   [watch] demo/cart: %s %s\n' "$status" "$body"; echo "$status $body" >>"$WATCHED" ;;
    esac
  done
}

write_all() {
  step "Writes through n2 and n3, while the watcher waits on n3 and the feed streams from n1."
  local dots=()
  declare -A ctx=()
  put() { # node key value: a read-modify-write client, with the key's last context
    local head d
    head=$(curl -s -o /dev/null -D - -XPUT "$(url "$1")/kv/$2" -H 'content-type: text/plain' \
      -H "x-dynkv-context: ${ctx[$2]:-}" -d "$3")
    d=$(printf '%s' "$head" | sed -n 's/^x-dynkv-dot: *//Ip' | tr -d '\r')
    [ -n "$d" ] || fail "PUT $2 through n$1 was not acknowledged"
    ctx[$2]=$(printf '%s' "$head" | sed -n 's/^x-dynkv-context: *//Ip' | tr -d '\r')
    say "PUT $2 = $3 through n$1 -> version $d"
    dots+=("$2 $d")
  }
  put 2 demo/cart apples
  put 3 demo/user-1 alice
  sleep 1
  put 3 demo/cart 'apples,pears'
  step "Kill n1, the node serving the feed (SIGKILL)."
  "$CLUSTER" kill 1 >/dev/null
  say "the consumer moves to n2 and resumes after the last event it got"
  put 2 demo/user-2 bob
  put 3 demo/cart 'apples,pears,plums'
  step "Restart n1."
  "$CLUSTER" restart 1 >/dev/null
  put 1 demo/user-3 carol
  printf '%s\n' "${dots[@]}" >"$DYNKV_CLUSTER_DIR/written.txt"
}

check_all() {
  step "Check: every acknowledged write in the feed exactly once."
  local deadline=$((SECONDS + 40))
  while [ $SECONDS -lt $deadline ]; do
    if python3 - "$EVENTS" "$DYNKV_CLUSTER_DIR/written.txt" <<'EOF'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
seen = [(e["key"], e["dot"]) for e in events]
want = [tuple(l.split()) for l in open(sys.argv[2]) if l.strip()]
missing = [w for w in want if w not in seen]
dups = {s for s in seen if seen.count(s) > 1}
if dups:
    print(f"   delivered twice: {sorted(dups)}"); sys.exit(2)
sys.exit(1 if missing else 0)
EOF
    then
      say "all $(wc -l <"$DYNKV_CLUSTER_DIR/written.txt") writes, each once ($(wc -l <"$EVENTS") events)"
      grep -q '200 apples,pears,plums\|200 apples,pears' "$WATCHED" || fail "the watcher did not see demo/cart change"
      say "the watcher on n3 saw demo/cart change: $(tail -1 "$WATCHED")"
      echo; echo "OK"
      return
    elif [ $? = 2 ]; then
      fail "the feed delivered a version twice"
    fi
    sleep 1
  done
  fail "the feed is missing acknowledged writes (see $EVENTS)"
}

case "${1:-all}" in
  follow)
    up
    follow_feed &
    watch_cart
    ;;
  write)
    up
    write_all
    ;;
  stop)
    "$CLUSTER" stop
    ;;
  all)
    echo "== Change feed demo (docs/FEED.md)"
    say "A watcher of demo/cart (GET ?watch=true) and a consumer of the feed of"
    say "demo/ (server-sent events) run alongside; writes go through other nodes,"
    say "and the node serving the feed is killed in between."
    FEED_PID="" WATCH_PID=""
    trap 'for p in $FEED_PID $WATCH_PID; do pkill -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done; "$CLUSTER" stop >/dev/null 2>&1 || true' EXIT
    up
    mkdir -p "$DYNKV_CLUSTER_DIR"
    follow_feed 2>&1 &
    FEED_PID=$!
    watch_cart &
    WATCH_PID=$!
    sleep 2
    write_all
    check_all
    ;;
  *)
    sed -n '2,17p' "$0"
    exit 2
    ;;
esac
