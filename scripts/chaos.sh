#!/usr/bin/env bash
# Fault-injection run with a history checker (see docs/CHAOS.md).
#
#   scripts/chaos.sh [--seed S] [--duration 3m] [--nodes 5] [--json out.json] [...]
#       builds dynkv and dynkv-chaos, copies the dynkv binary aside (so a
#       rebuild during the run cannot change the nodes under test), runs.
#   scripts/chaos.sh --planted-bug [...]
#       the same against a build with the planted lost-write bug
#       (`--features planted-bug-lose-writes`, its own target directory):
#       the checker must fail.
#
# Every other argument goes to dynkv-chaos (`--help` lists them). Disk and
# clock faults (wiped disks, power cuts, full disks, skewed clocks) are on
# unless `--no-disk-faults`; they need `cc` to build the harness's
# LD_PRELOAD fault layer (tests/faults/dynkv_faults.c). Tombstone reaping is
# on with a short grace (`--reap-grace 5s`, `--reap-settle 3s`,
# `--reap-interval 1s`; `--no-reap` turns it off), so that the checker sees
# keys reaped and written again. Exit status: 0 every check passed, 1 a
# check failed, 2 usage or I/O error.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/dynkv-target}"

bug=0
disk=1
args=()
for a in "$@"; do
  case "$a" in
    --planted-bug) bug=1 ;;
    --no-disk-faults) disk=0; args+=("$a") ;;
    *) args+=("$a") ;;
  esac
done
if [ "$disk" = 1 ] && ! command -v "${CC:-cc}" >/dev/null; then
  echo "chaos.sh: no C compiler (\`${CC:-cc}\`) to build the disk/clock fault layer; install gcc or pass --no-disk-faults" >&2
  exit 2
fi

cargo build -p dynkv-chaos
if [ "$bug" = 1 ]; then
  target="${DYNKV_BUG_TARGET_DIR:-${CARGO_TARGET_DIR}-bug}"
  CARGO_TARGET_DIR="$target" cargo build -p dynkv --features planted-bug-lose-writes
  src="$target/debug/dynkv"
else
  cargo build -p dynkv
  src="$CARGO_TARGET_DIR/debug/dynkv"
fi
bin_dir="$(mktemp -d "${TMPDIR:-/tmp}/dynkv-chaos-bin.XXXXXX")"
trap 'rm -rf "$bin_dir"' EXIT
cp "$src" "$bin_dir/dynkv"

"$CARGO_TARGET_DIR/debug/dynkv-chaos" --bin "$bin_dir/dynkv" "${args[@]}"
