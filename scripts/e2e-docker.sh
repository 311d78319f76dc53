#!/usr/bin/env bash
# End-to-end test of the docker-compose cluster:
#
#   scripts/e2e-docker.sh [--profile release|dev]
#
# builds the image (scripts/build-image.sh: DYNKV_BIN, DYNKV_PROFILE or
# --profile choose the binary), starts the five nodes (docker-compose up -d)
# and waits until they are healthy and see each other, checks the cluster
# secret (made once on its volume, the same on every node, needed by
# membership commands) and that only public ports are published, checks
# that scripts/partition.sh really cuts traffic between containers (public
# and cluster ports) while the host still reaches every node, runs
# scripts/demo-stale-read.sh and
# scripts/demo-siblings.sh, then kills a node with SIGKILL, writes at
# w=quorum, restarts it and reads the write from it. Everything is torn
# down at the end, volumes included, also on failure. Exits non-zero on any
# mismatch; exits 0 with "skipped: ..." when there is no docker daemon.
#
# A dynkv docker cluster already running (from any checkout: container names
# and subnet are fixed) is torn down first, volumes included. About
# one minute with a cached base image, excluding the cargo build.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  echo "skipped: no docker daemon (docker info failed)"
  exit 0
fi
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "skipped: docker-compose is not installed (Debian: apt-get install docker-compose)"
  exit 0
fi

# shellcheck source=docker/lib.sh
. docker/lib.sh

T0=$(now_ms)
LOG_DIR=$(mktemp -d /tmp/dynkv-e2e.XXXXXX)
PROJECT=""
phase() { printf '\n######## %s (%s, +%d s)\n' "$*" "$(date +%T)" $((($(now_ms) - T0) / 1000)); }

teardown() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ]; then
    echo
    echo "e2e FAILED (exit $rc); cluster state and the last node logs:"
    scripts/partition.sh status 2>&1
    docker-compose ps 2>&1
    docker-compose logs --no-color --tail=40 2>&1 | tail -n 200
  fi
  phase "tear down"
  docker-compose down -v --remove-orphans --timeout 5 2>&1 | grep -v '^$'
  local left
  left=$(docker ps -aq --filter 'name=^dynkv-n[0-9]+$')
  if [ -n "$PROJECT" ]; then
    left="$left$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")"
    left="$left$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")"
  fi
  if [ -n "$left" ]; then
    echo "leftover containers, volumes or networks: $left"
    [ $rc -ne 0 ] || rc=1
  else
    echo "no container, volume or network left"
  fi
  rm -rf "$LOG_DIR"
  if [ $rc -eq 0 ]; then
    printf '\ne2e passed in %d s\n' $((($(now_ms) - T0) / 1000))
  fi
  exit $rc
}

phase "build the image"
scripts/build-image.sh "$@"

phase "start the cluster"
# The container names and the subnet are fixed, so any dynkv cluster still
# running (from this checkout or another) is in the way: remove it.
for p in $(docker ps -a --filter 'name=^dynkv-n[0-9]+$' --format '{{.Label "com.docker.compose.project"}}' | sort -u); do
  echo "removing the dynkv cluster of compose project '$p' (containers, network, volumes)"
  docker-compose -p "$p" down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true
done
docker ps -aq --filter 'name=^dynkv-n[0-9]+$' | xargs -r docker rm -f >/dev/null 2>&1 || true
docker-compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true
trap teardown EXIT
docker-compose up -d 2>&1 | grep -v '^$'
PROJECT=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.project"}}' dynkv-n1)
all_healthy() {
  local n
  for n in n1 n2 n3 n4 n5; do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$(container "$n")")" = healthy ] || return 1
  done
}
wait_for 90 "docker reports every node healthy" all_healthy || fail "not every node became healthy"
cluster_ready 30
[ "$(cluster_nodes | paste -sd,)" = n1,n2,n3,n4,n5 ] || fail "expected nodes n1..n5, found $(cluster_nodes | paste -sd,)"

phase "cluster secret and ports"
secret=$(docker exec "$(container n1)" cat "$SECRET_IN_CONTAINER") || fail "no $SECRET_IN_CONTAINER in n1"
[[ "$secret" =~ ^[0-9a-f]{64}$ ]] || fail "the cluster secret is not 64 hex digits"
say "ok: the secret service made $SECRET_IN_CONTAINER (64 hex digits)"
for n in n2 n3 n4 n5; do
  [ "$(docker exec "$(container "$n")" cat "$SECRET_IN_CONTAINER")" = "$secret" ] || fail "$n has another secret than n1"
done
say "ok: every node has the same secret"
for n in n1 n2 n3 n4 n5; do
  if docker port "$(container "$n")" "$CLUSTER_PORT" >/dev/null 2>&1; then
    fail "$n's cluster port $CLUSTER_PORT is published on the host"
  fi
  docker port "$(container "$n")" "$NODE_PORT" >/dev/null 2>&1 || fail "$n's public port $NODE_PORT is not published"
done
say "ok: only the public port $NODE_PORT of each node is published"
code=$(curl -q -s -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$DOCKER_CA" -H 'x-dynkv-token: wrong' "$(node_url n1)/admin/members")
check "a membership command with a wrong token is refused" "$code" 401

phase "TLS and security"
code=$(curl -q -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$(node_port n1)/health" || true)
check "plain HTTP to the public port gets no answer (it speaks only TLS)" "$code" 000
code=$(curl -q -s -o /dev/null -w '%{http_code}' --max-time 3 "$(node_url n1)/health" || true)
check "a client that does not trust the cluster's CA gets no answer" "$code" 000
code=$(curl -q -s -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$DOCKER_CA" "$(node_url n2)/kv/e2e-security")
check "a read without credentials is refused" "$code" 401
code=$(curl -q -s -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$DOCKER_CA" -u "$DEMO_USER:wrong" "$(node_url n3)/kv/e2e-security")
check "a read with a wrong password is refused" "$code" 401
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$(node_url n4)/kv/e2e-security")
check "the demo user reads (nothing there yet)" "$code" 404
docker exec "$(container n1)" dynkv admin members >"$LOG_DIR/members" 2>&1 ||
  { cat "$LOG_DIR/members" >&2; fail "'dynkv admin members' with the cluster secret failed"; }
say "ok: 'dynkv admin members' with the cluster secret works"

phase "partition script"
# reach_public FROM TO, reach_cluster FROM TO: can node FROM open a
# connection to node TO's public port (an HTTP health check) or its cluster
# port (a TCP connect) on the cluster network?
reach_public() {
  docker exec "$(container "$1")" curl -fsS --max-time 1 --cacert /secrets/ca.pem -o /dev/null "https://$2:$NODE_PORT/health" 2>/dev/null
}
reach_cluster() {
  docker exec "$(container "$1")" timeout 1 bash -c "exec 3<>/dev/tcp/$2/$CLUSTER_PORT" 2>/dev/null
}
expect_reach() {
  reach_public "$1" "$2" || fail "$1 cannot reach $2's public port"
  reach_cluster "$1" "$2" || fail "$1 cannot reach $2's cluster port"
  say "ok: $1 reaches $2"
}
expect_cut() {
  if reach_public "$1" "$2"; then fail "$1 still reaches $2's public port"; fi
  if reach_cluster "$1" "$2"; then fail "$1 still reaches $2's cluster port"; fi
  say "ok: $1 cannot reach $2"
}
scripts/partition.sh split n1,n2 n3,n4,n5
expect_reach n1 n2
expect_reach n3 n5
expect_cut n1 n3
expect_cut n2 n5
expect_cut n4 n1
for n in n1 n2 n3 n4 n5; do healthy "$n" || fail "the host cannot reach $n during the split"; done
say "ok: the host reaches every node"
wait_for 20 "n1 believes n3 down" sees n1 n3 down || fail "n1 still believes n3 up"
wait_for 20 "n3 believes n1 down" sees n3 n1 down || fail "n3 still believes n1 up"
scripts/partition.sh status | tee "$LOG_DIR/status"
grep -q '^n1 .*cut from: n3,n4,n5 ' "$LOG_DIR/status" || fail "status does not show n1 cut from n3,n4,n5"
grep -q '^n4 .*cut from: n1,n2 ' "$LOG_DIR/status" || fail "status does not show n4 cut from n1,n2"

say "isolate n5, which replaces the split; a restarted n5 stays cut off"
scripts/partition.sh isolate n5
expect_reach n1 n3
expect_cut n5 n1
expect_cut n2 n5
scripts/kill.sh n5
scripts/kill.sh --restart n5 | tee "$LOG_DIR/restart"
grep -q 'n5: cut from n1,n2,n3,n4 again' "$LOG_DIR/restart" || fail "kill.sh --restart did not restore n5's cut"
expect_cut n5 n4
expect_cut n4 n5
scripts/partition.sh heal
expect_reach n1 n3
expect_reach n5 n1
expect_reach n2 n5
cluster_ready 30

for demo in demo-stale-read demo-siblings; do
  phase "scripts/$demo.sh"
  if ! "scripts/$demo.sh" 2>&1 | tee "$LOG_DIR/$demo.out"; then
    fail "scripts/$demo.sh failed"
  fi
  grep -q '^demo passed: ' "$LOG_DIR/$demo.out" || fail "scripts/$demo.sh did not say 'demo passed'"
done
grep -q 'answers the STALE value v1' "$LOG_DIR/demo-stale-read.out" || fail "the stale-read demo showed no stale read"
grep -q '^     -> 300 (multipart/mixed' "$LOG_DIR/demo-siblings.out" || fail "the siblings demo showed no multipart 300"

phase "kill -9 a replica, write at w=quorum, restart it"
STEP=0
KEY="crash-$(date +%s)"
read -r -a PREF <<<"$(preference_list "$KEY")"
COORD=${PREF[0]} VICTIM=${PREF[1]}
say "key $KEY on ${PREF[*]}: $VICTIM will crash, $COORD coordinates"
req PUT "$COORD" "/kv/$KEY?w=all" -d before
check "write 'before' at w=all" "$STATUS" 204
scripts/kill.sh "$VICTIM"
if node_running "$VICTIM"; then fail "$VICTIM still runs after kill.sh"; fi
wait_for 20 "$COORD believes $VICTIM down" sees "$COORD" "$VICTIM" down || fail "$COORD still believes $VICTIM up"
req GET "$COORD" "/kv/$KEY"
check "read 'before' while $VICTIM is down" "$BODY" before
req PUT "$COORD" "/kv/$KEY?w=quorum" -H "x-dynkv-context: $CTX" -d after
check "write 'after' at w=quorum while $VICTIM is down" "$STATUS" 204
say "keep $VICTIM cut off while it restarts, so what it holds comes from its own disk"
scripts/partition.sh isolate "$VICTIM"
scripts/kill.sh --restart "$VICTIM"
check "$VICTIM still holds the acknowledged 'before' after SIGKILL" "$(local_values "$VICTIM" "$KEY")" before
scripts/partition.sh heal
wait_for 30 "$VICTIM stores 'after' itself" holds "$VICTIM" "$KEY" after || fail "$VICTIM stores '$(local_values "$VICTIM" "$KEY")'"
# A quorum read through the victim needs it to send to a peer again: its
# breakers opened while it was cut off and close on their next probe.
for peer in "${PREF[@]}"; do
  [ "$peer" = "$VICTIM" ] && continue
  wait_for 20 "$VICTIM reaches $peer again" reaches "$VICTIM" "$peer" || fail "$VICTIM does not reach $peer"
done
req GET "$VICTIM" "/kv/$KEY"
check "a quorum read through the restarted $VICTIM answers 'after'" "$BODY" after
req GET "$VICTIM" "/kv/$KEY?r=1"
check "an r=1 read from $VICTIM answers 'after'" "$BODY" after
