#!/usr/bin/env bash
# Cuts the network between nodes of the docker-compose cluster, and heals it.
#
#   scripts/partition.sh split n1,n2 n3,n4,n5   nodes of different groups can no longer reach each other
#   scripts/partition.sh isolate n3             n3 against every other node
#   scripts/partition.sh heal                   remove every cut
#   scripts/partition.sh status                 the cuts in force, and whom each node believes up
#   scripts/partition.sh restore n3             rebuild n3's own rules after a restart (kill.sh --restart does it)
#
# The cut is real: inside each container (NET_ADMIN) an iptables chain
# DYNKV-PARTITION, jumped to first from INPUT and OUTPUT, drops every packet
# from and to the cluster-network addresses of the nodes on the other side,
# whatever the port: internode traffic to the cluster port (7170) and calls
# to the public port (7070) alike.
# Clients on the host reach each node through its published port, from the
# network's gateway address, which is never dropped: every node stays
# reachable to clients while it cannot talk to the other side. A new split
# or isolate replaces the previous cut. Nodes named in no group of a split
# keep talking to everyone.
#
# A restarted container starts with no rules of its own, but the nodes of
# the other side still drop its packets (addresses are fixed in
# docker-compose.yml), so the cut holds; `restore` puts its own rules back.
set -euo pipefail
# shellcheck source=docker/lib.sh
. "$(dirname "$0")/../docker/lib.sh"

CHAIN=DYNKV-PARTITION

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

# set_rules NODE IP...: NODE drops everything from and to each IP (none = no cut).
set_rules() {
  local node=$1 script ip
  shift
  script="set -e
iptables -w -N $CHAIN 2>/dev/null || iptables -w -F $CHAIN
iptables -w -C INPUT -j $CHAIN 2>/dev/null || iptables -w -I INPUT 1 -j $CHAIN
iptables -w -C OUTPUT -j $CHAIN 2>/dev/null || iptables -w -I OUTPUT 1 -j $CHAIN"
  for ip in "$@"; do
    script="$script
iptables -w -A $CHAIN -s $ip -j DROP
iptables -w -A $CHAIN -d $ip -j DROP"
  done
  docker exec -i "$(container "$node")" sh -s <<<"$script"
}

# clear_rules NODE: removes the chain and its jumps.
clear_rules() {
  docker exec -i "$(container "$1")" sh -s <<EOF
iptables -w -D INPUT -j $CHAIN 2>/dev/null || true
iptables -w -D OUTPUT -j $CHAIN 2>/dev/null || true
iptables -w -F $CHAIN 2>/dev/null || true
iptables -w -X $CHAIN 2>/dev/null || true
EOF
}

# dropped_ips NODE: the addresses NODE drops packets from.
dropped_ips() {
  docker exec "$(container "$1")" iptables -w -S "$CHAIN" 2>/dev/null |
    sed -n "s|^-A $CHAIN -s \([0-9.]*\)/32 -j DROP$|\1|p" || true
}

ip_to_node() {
  local n
  for n in $ALL; do
    if [ "${IP[$n]}" = "$1" ]; then echo "$n"; return; fi
  done
  echo "$1"
}

# Runs "$@" for every running node at once; fails if any failed.
on_running_nodes() {
  local n pids=() failed=0
  for n in $ALL; do
    if node_running "$n"; then
      "$@" "$n" & pids+=($!)
    fi
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  return $failed
}

ALL=$(cluster_nodes | tr '\n' ' ')
[ -n "$ALL" ] || { echo "no dynkv-nI containers: start the cluster with docker-compose up -d" >&2; exit 1; }
declare -A IP GROUP
for n in $ALL; do IP[$n]=$(node_ip "$n"); done

apply_groups() {
  local n m ips
  for n in $ALL; do
    ips=()
    if [ -n "${GROUP[$n]:-}" ]; then
      for m in $ALL; do
        if [ -n "${GROUP[$m]:-}" ] && [ "${GROUP[$m]}" != "${GROUP[$n]}" ]; then ips+=("${IP[$m]}"); fi
      done
    fi
    if ! node_running "$n"; then
      [ ${#ips[@]} -eq 0 ] || echo "$n is not running: the others drop its packets; 'restore $n' after it restarts"
      continue
    fi
    set_rules "$n" "${ips[@]}" &
  done
  wait_all
}

wait_all() {
  local failed=0 p
  for p in $(jobs -p); do wait "$p" || failed=1; done
  [ $failed = 0 ] || { echo "setting iptables rules failed (is NET_ADMIN granted?)" >&2; exit 1; }
}

check_node() {
  [[ " $ALL " == *" $1 "* ]] || { echo "unknown node '$1' (nodes: ${ALL% })" >&2; exit 2; }
}

cmd="${1:-status}"
[ $# -gt 0 ] && shift
case "$cmd" in
  split)
    [ $# -ge 2 ] || usage
    g=0
    for group in "$@"; do
      g=$((g + 1))
      IFS=, read -r -a members <<<"$group"
      for n in "${members[@]}"; do
        check_node "$n"
        [ -z "${GROUP[$n]:-}" ] || { echo "$n is in two groups" >&2; exit 2; }
        GROUP[$n]=$g
      done
    done
    apply_groups
    echo "partitioned: $(printf '%s | ' "$@" | sed 's/ | $//')"
    ;;
  isolate)
    [ $# -eq 1 ] || usage
    check_node "$1"
    for n in $ALL; do GROUP[$n]=2; done
    GROUP[$1]=1
    apply_groups
    echo "isolated $1 from $(for n in $ALL; do [ "$n" = "$1" ] || echo "$n"; done | paste -sd,)"
    ;;
  heal)
    on_running_nodes clear_rules
    echo "healed: every node can reach every node"
    ;;
  restore)
    [ $# -eq 1 ] || usage
    check_node "$1"
    ips=()
    for m in $ALL; do
      if [ "$m" = "$1" ] || ! node_running "$m"; then continue; fi
      if dropped_ips "$m" | grep -qxF "${IP[$1]}"; then ips+=("${IP[$m]}"); fi
    done
    set_rules "$1" "${ips[@]}"
    if [ ${#ips[@]} -eq 0 ]; then
      echo "$1: no cut to restore"
    else
      echo "$1: cut from $(for ip in "${ips[@]}"; do ip_to_node "$ip"; done | paste -sd,) again"
    fi
    ;;
  status)
    for n in $ALL; do
      if ! node_running "$n"; then
        printf '%-3s %-15s not running\n' "$n" "${IP[$n]}"
        continue
      fi
      cut=$(for ip in $(dropped_ips "$n"); do ip_to_node "$ip"; done | paste -sd,)
      printf '%-3s %-15s cut from: %-12s believes up: %s\n' "$n" "${IP[$n]}" "${cut:--}" \
        "$(up_view "$n" | tr ' ' ,)"
    done
    ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
