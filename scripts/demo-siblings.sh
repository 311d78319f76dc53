#!/usr/bin/env bash
# Demo: both sides of a partition accept a write of the same key; after the
# heal a read shows both values as siblings, and a write with the read's
# context resolves them.
#
#   scripts/demo-siblings.sh [KEY]      (default key: cart-<timestamp>)
#
# Needs the docker-compose cluster running (docs/DOCKER.md). Exits non-zero
# as soon as the cluster does not behave as told.
set -euo pipefail
# shellcheck source=docker/lib.sh
. "$(dirname "$0")/../docker/lib.sh"
PARTITION="$(dirname "$0")/partition.sh"

KEY="${1:-cart-$(date +%s)}"
cut=0
cleanup() { if [ $cut = 1 ]; then "$PARTITION" heal >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

echo "== Siblings demo: key '$KEY'"
say "dynkv stays writable on both sides of a partition. Two writes that did"
say "not see each other are concurrent: neither is dropped, a read after the"
say "heal returns both (300 Multiple Choices) and the client picks the result."

step "Start from a whole cluster."
cluster_ready 30

step "Where does '$KEY' live?"
req GET n1 "/admin/ring?key=$KEY"
read -r -a PREF <<<"$(json 'd["preference_list"]' <<<"$BODY")"
require_fresh_key "$KEY" "${PREF[@]}"
read -r -a OTHER <<<"$(json 'd["fallbacks"]' <<<"$BODY")"
if [ ${#PREF[@]} -ne 3 ] || [ ${#OTHER[@]} -ne 2 ]; then fail "expected 3 primaries and 2 fallbacks"; fi
LEFT_NODE=${PREF[0]} RIGHT_NODE=${PREF[1]}
LEFT="${PREF[0]},${OTHER[0]}"
RIGHT="${PREF[1]},${PREF[2]},${OTHER[1]}"
READER=${OTHER[1]}
say "Primaries: ${PREF[*]}. Left side: $LEFT; right side: $RIGHT."

step "Split the cluster so that primaries of '$KEY' are on both sides."
say "$ scripts/partition.sh split $LEFT $RIGHT"
cut=1
"$PARTITION" split "$LEFT" "$RIGHT" | sed 's/^/     /'
wait_for 20 "$LEFT_NODE believes $RIGHT_NODE down" sees "$LEFT_NODE" "$RIGHT_NODE" down || fail "$LEFT_NODE still believes $RIGHT_NODE up"
wait_for 20 "$RIGHT_NODE believes $LEFT_NODE down" sees "$RIGHT_NODE" "$LEFT_NODE" down || fail "$RIGHT_NODE still believes $LEFT_NODE up"

step "Write 'apples' through $LEFT_NODE and 'pears' through $RIGHT_NODE, blind (no context), w=1."
say "Each is a primary of the key, so each coordinates the write on its own"
say "replica and acknowledges at once; neither write knows about the other."
req PUT "$LEFT_NODE" "/kv/$KEY?w=1" -H 'content-type: text/plain' -d apples
check "the left side accepts 'apples' (204)" "$STATUS" 204
req PUT "$RIGHT_NODE" "/kv/$KEY?w=1" -H 'content-type: text/plain' -d pears
check "the right side accepts 'pears' (204)" "$STATUS" 204
req GET "$LEFT_NODE" "/kv/$KEY?r=1"
check "the left side reads 'apples'" "$BODY" apples
req GET "$RIGHT_NODE" "/kv/$KEY?r=1"
check "the right side reads 'pears'" "$BODY" pears

step "Heal the network."
say "$ scripts/partition.sh heal"
"$PARTITION" heal | sed 's/^/     /'
cut=0
cluster_ready 30

step "Read through $READER from all three primaries: both values come back."
say "(Repeated until all three answer; the first read after a heal may still"
say "find a peer marked down.)"
siblings_seen() {
  curl -sS --max-time 5 -H 'accept: application/json' \
    "$(node_url "$READER")/kv/$KEY?r=all&sloppy=false" 2>/dev/null |
    sibling_values 2>/dev/null | grep -qx 'apples,pears'
}
wait_for 30 "$READER reads both siblings" siblings_seen || fail "no read showed both siblings"
req GET "$READER" "/kv/$KEY?r=all"
check "the read answers 300 Multiple Choices" "$STATUS" 300
[[ "$CTYPE" == multipart/mixed* ]] || fail "expected multipart/mixed, got '$CTYPE'"
say "ok: one part per sibling, each with its own Content-Type"
req GET "$READER" "/kv/$KEY?r=all" -H 'accept: application/json'
check "the JSON read answers 300" "$STATUS" 300
check "the siblings are 'apples' and 'pears'" "$(sibling_values <<<"$BODY")" apples,pears
SIB_CTX=$(json 'd["context"]' <<<"$BODY")
check "the JSON context is the X-Dynkv-Context header" "$SIB_CTX" "$CTX"
say "context of the sibling read: $SIB_CTX"

step "Resolve: write the merged value 'apples,pears' with that context (w=all)."
say "The context covers both siblings, so the new value replaces both."
req PUT "$READER" "/kv/$KEY?w=all" -H "x-dynkv-context: $SIB_CTX" -H 'content-type: text/plain' -d 'apples,pears'
check "the resolving write answers 204" "$STATUS" 204
req GET "$LEFT_NODE" "/kv/$KEY?r=all"
check "a read answers 200" "$STATUS" 200
check "with the one resolved value" "$BODY" 'apples,pears'

step "Every primary now stores that one value (GET /admin/local/$KEY on each)."
for n in "${PREF[@]}"; do
  resolved() {
    [ "$(curl -fsS --max-time 3 "$(node_url "$1")/admin/local/$KEY" | json 'len(d["siblings"])')" = 1 ] &&
      holds "$1" "$KEY" 'apples,pears'
  }
  wait_for 20 "$n stores exactly 'apples,pears'" resolved "$n" ||
    fail "$n stores '$(local_values "$n" "$KEY")'"
done
req GET "${PREF[2]}" "/admin/local/$KEY"

printf '\ndemo passed: concurrent writes on both sides of a partition became siblings and were resolved\n'
