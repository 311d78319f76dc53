#!/usr/bin/env bash
# Crashes and restarts nodes of the docker-compose cluster.
#
#   scripts/kill.sh n3 [n4 ...]             SIGKILL the node (docker kill): no shutdown, no flush
#   scripts/kill.sh --restart n3 [n4 ...]   start it again on its data volume and wait until it answers
#
# A restarted node keeps its data (named volume nI-data), its address and the
# cluster secret (volume cluster-secret, made once by docker-compose up). If a
# partition is in force (scripts/partition.sh), the restarted node gets its
# side of the cut back.
set -euo pipefail
# shellcheck source=docker/lib.sh
. "$(dirname "$0")/../docker/lib.sh"

usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

restart=0
case "${1:-}" in
  --restart|restart) restart=1; shift ;;
  -h|--help|"") usage ;;
esac
[ $# -ge 1 ] || usage

for n in "$@"; do
  docker inspect "$(container "$n")" >/dev/null 2>&1 ||
    { echo "no container $(container "$n"): is the cluster up (docker-compose up -d)?" >&2; exit 2; }
done

for n in "$@"; do
  if [ $restart = 0 ]; then
    if node_running "$n"; then
      docker kill --signal KILL "$(container "$n")" >/dev/null
      echo "killed $n (SIGKILL)"
    else
      echo "$n is not running"
    fi
    continue
  fi
  if node_running "$n"; then
    echo "$n is already running"
  else
    docker start "$(container "$n")" >/dev/null
    if ! wait_for 30 "$n answers on $(node_url "$n")" healthy "$n"; then
      docker logs --tail 30 "$(container "$n")" >&2
      exit 1
    fi
  fi
  "$(dirname "$0")/partition.sh" restore "$n" | grep -v 'no cut to restore' || true
done
