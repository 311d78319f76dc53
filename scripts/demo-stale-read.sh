#!/usr/bin/env bash
# Demo: a stale read from a cut-off replica, and the replica healing.
#
#   scripts/demo-stale-read.sh [KEY]      (default key: stale-<timestamp>)
#
# Needs the docker-compose cluster running (docs/DOCKER.md). It writes v1 to
# every replica of KEY, isolates one replica, writes v2 through the majority
# with the context of the v1 read (so v2 replaces v1), reads v1 from the
# isolated replica at r=1 and v2 through the majority at r=quorum, heals the
# network and waits until the replica holds v2 again (read repair, hinted
# handoff). Part two repeats the cut on a second key (KEY-aae) so that no
# hint is kept and nothing reads the key: anti-entropy alone repairs it.
# Exits non-zero as soon as the cluster does not behave as told.
set -euo pipefail
# shellcheck source=docker/lib.sh
. "$(dirname "$0")/../docker/lib.sh"
PARTITION="$(dirname "$0")/partition.sh"

KEY="${1:-stale-$(date +%s)}"
cut=0
cleanup() { if [ $cut = 1 ]; then "$PARTITION" heal >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

echo "== Stale read demo: key '$KEY'"
say "Reading one replica (r=1) can return an old value while that replica is"
say "cut off; a quorum read does not. Once the network heals, read repair,"
say "hinted handoff or anti-entropy bring the replica up to date."

step "Start from a whole cluster."
cluster_ready 30

step "Where does '$KEY' live? Ask any node for its preference list."
req GET n1 "/admin/ring?key=$KEY"
read -r -a PREF <<<"$(json 'd["preference_list"]' <<<"$BODY")"
require_fresh_key "$KEY" "${PREF[@]}"
[ ${#PREF[@]} -eq 3 ] || fail "expected 3 primaries, got '${PREF[*]}'"
COORD=${PREF[0]} PEER=${PREF[1]} STALE=${PREF[2]}
say "Primaries: ${PREF[*]}. We will cut off $STALE and write through $COORD."

step "Write v1 to all three replicas (w=all), then read it back to get its context."
req PUT "$COORD" "/kv/$KEY?w=all" -H 'content-type: text/plain' -d v1
check "write v1 at w=all answers 204" "$STATUS" 204
req GET "$COORD" "/kv/$KEY?r=all"
check "read at r=all answers 200" "$STATUS" 200
check "the value is v1" "$BODY" v1
V1_CTX=$CTX
say "context of the v1 read: $V1_CTX"
for n in "${PREF[@]}"; do
  check "$n stores v1 (GET /admin/local/$KEY on $n)" "$(local_values "$n" "$KEY")" v1
done

step "Isolate $STALE: drop every packet between it and the other nodes."
say "$ scripts/partition.sh isolate $STALE"
cut=1
"$PARTITION" isolate "$STALE" | sed 's/^/     /'
say "Clients on the host still reach $STALE; the nodes notice the cut through"
say "their failure detectors within about a second."
wait_for 20 "$COORD believes $STALE down" sees "$COORD" "$STALE" down || fail "$COORD still believes $STALE up"
wait_for 20 "$STALE believes $COORD down" sees "$STALE" "$COORD" down || fail "$STALE still believes $COORD up"

step "Write v2 through $COORD at w=quorum, sending the context of the v1 read."
say "The context says 'this replaces v1', so v2 is a successor, not a sibling."
say "$COORD and $PEER acknowledge: 2 of 3 is a quorum."
req PUT "$COORD" "/kv/$KEY?w=quorum" -H "x-dynkv-context: $V1_CTX" -H 'content-type: text/plain' -d v2
check "write v2 at w=quorum answers 204" "$STATUS" 204

step "Read at r=1 through the cut-off replica $STALE: it answers from its own copy."
req GET "$STALE" "/kv/$KEY?r=1"
check "$STALE answers 200" "$STATUS" 200
check "$STALE answers the STALE value v1" "$BODY" v1

step "Read at r=quorum through $COORD: two replicas answer, the newest value wins."
req GET "$COORD" "/kv/$KEY?r=quorum"
check "$COORD answers 200" "$STATUS" 200
check "the quorum read answers v2" "$BODY" v2
say "What each primary stores by itself (GET /admin/local/$KEY):"
check "$COORD stores v2" "$(local_values "$COORD" "$KEY")" v2
check "$PEER stores v2" "$(local_values "$PEER" "$KEY")" v2
check "$STALE still stores v1" "$(local_values "$STALE" "$KEY")" v1

step "Heal the network and let the cluster repair $STALE."
rr0=$(metric_total dynkv_read_repairs_total '{outcome="repaired"}')
hd0=$(metric_total dynkv_hints_delivered_total)
ae0=$(metric_total dynkv_aae_keys_repaired_total)
say "$ scripts/partition.sh heal"
"$PARTITION" heal | sed 's/^/     /'
cut=0
wait_for 20 "$COORD believes $STALE up again" sees "$COORD" "$STALE" up || fail "$COORD still believes $STALE down"
say "A quorum read through $COORD asks two replicas in full and, for a share of"
say "reads (read_repair.chance), the third for a digest; after answering it sends"
say "the merged value to any replica found behind (read repair). Hinted handoff"
say "(the copy a fallback kept for $STALE) and anti-entropy (Merkle-tree"
say "exchanges) bring it v2 without any read as well."
req GET "$COORD" "/kv/$KEY?r=quorum"
check "the read answers v2" "$BODY" v2
wait_for 30 "$STALE stores v2" holds "$STALE" "$KEY" v2 || fail "$STALE still stores '$(local_values "$STALE" "$KEY")'"
req GET "$STALE" "/admin/local/$KEY"
rr=$(($(metric_total dynkv_read_repairs_total '{outcome="repaired"}') - rr0))
hd=$(($(metric_total dynkv_hints_delivered_total) - hd0))
ae=$(($(metric_total dynkv_aae_keys_repaired_total) - ae0))
say "Since the heal, over the whole cluster (GET /metrics):"
say "  dynkv_read_repairs_total{outcome=\"repaired\"} +$rr"
say "  dynkv_hints_delivered_total +$hd"
say "  dynkv_aae_keys_repaired_total +$ae"
[ $((rr + hd + ae)) -gt 0 ] || fail "no repair mechanism counted the repair of $STALE"

step "Read at r=1 through $STALE again: no longer stale."
req GET "$STALE" "/kv/$KEY?r=1"
check "$STALE answers v2" "$BODY" v2

echo
echo "== Part two: anti-entropy repairs a replica that nobody reads"
KEY2="$KEY-aae"
say "This time no fallback can keep a hint and no read follows the heal, so"
say "only the Merkle-tree exchanges between replicas can repair the stale one."

step "Start again from a whole cluster."
cluster_ready 30

step "Where does '$KEY2' live?"
req GET n1 "/admin/ring?key=$KEY2"
read -r -a PREF2 <<<"$(json 'd["preference_list"]' <<<"$BODY")"
require_fresh_key "$KEY2" "${PREF2[@]}"
read -r -a FALLBACKS2 <<<"$(json 'd["fallbacks"]' <<<"$BODY")"
A=${PREF2[0]} B=${PREF2[1]} C=${PREF2[2]}
say "Primaries: ${PREF2[*]}; the other nodes, ${FALLBACKS2[*]}, are its fallbacks."

step "Write v1 at w=all and read its context."
req PUT "$A" "/kv/$KEY2?w=all" -H 'content-type: text/plain' -d v1
check "write v1 at w=all answers 204" "$STATUS" 204
req GET "$A" "/kv/$KEY2?r=all"
check "the value is v1" "$BODY" v1
V1_CTX=$CTX

MAJ="$A,$B"
MIN="$C,$(IFS=,; echo "${FALLBACKS2[*]}")"
step "Split $MAJ from $MIN: $A and $B keep a quorum, but every fallback is on the other side."
say "$ scripts/partition.sh split $MAJ $MIN"
cut=1
"$PARTITION" split "$MAJ" "$MIN" | sed 's/^/     /'
for n in "$C" "${FALLBACKS2[@]}"; do
  wait_for 20 "$A believes $n down" sees "$A" "$n" down || fail "$A still believes $n up"
done

step "Write v2 through $A at w=quorum with the v1 context: $A and $B acknowledge."
req PUT "$A" "/kv/$KEY2?w=quorum" -H "x-dynkv-context: $V1_CTX" -H 'content-type: text/plain' -d v2
check "write v2 at w=quorum answers 204" "$STATUS" 204
for n in $(cluster_nodes); do
  hints=$(curl -fsS --max-time 3 "$(node_url "$n")/admin/local/$KEY2" | json 'len(d["hints"])')
  check "$n keeps no hint for $KEY2" "$hints" 0
done
check "$C still stores v1" "$(local_values "$C" "$KEY2")" v1

step "Heal, read nothing, and watch $C through GET /admin/local/$KEY2 only."
ae0=$(metric_total dynkv_aae_keys_repaired_total)
rr0=$(metric_total dynkv_read_repairs_total '{outcome="repaired"}')
declare -A AE_BEFORE
for n in "${PREF2[@]}"; do AE_BEFORE[$n]=$(metric "$n" dynkv_aae_keys_repaired_total); done
say "$ scripts/partition.sh heal"
"$PARTITION" heal | sed 's/^/     /'
cut=0
say "Each node compares the Merkle tree of each partition it holds with the"
say "other replicas, two exchanges every 200 ms (docker-compose.yml)."
wait_for 90 "$C stores v2" holds "$C" "$KEY2" v2 || fail "anti-entropy did not repair $C: it stores '$(local_values "$C" "$KEY2")'"
req GET "$C" "/admin/local/$KEY2"
ae=$(($(metric_total dynkv_aae_keys_repaired_total) - ae0))
rr=$(($(metric_total dynkv_read_repairs_total '{outcome="repaired"}') - rr0))
say "Since the heal: dynkv_aae_keys_repaired_total +$ae, dynkv_read_repairs_total{outcome=\"repaired\"} +$rr"
[ "$ae" -gt 0 ] || fail "dynkv_aae_keys_repaired_total did not move"
check "no read repair was involved" "$rr" 0
say "Keys anti-entropy changed in each primary's own store since the heal:"
for n in "${PREF2[@]}"; do say "  $n: +$(($(metric "$n" dynkv_aae_keys_repaired_total) - AE_BEFORE[$n]))"; done
printf '\ndemo passed: stale read of v1 from cut-off %s, v2 from the quorum, %s repaired after the heal; anti-entropy alone repaired %s\n' "$STALE" "$STALE" "$C"
