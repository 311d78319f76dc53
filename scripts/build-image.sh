#!/usr/bin/env bash
# Builds the dynkv node image (default tag dynkv:latest) without any image
# registry.
#
#   scripts/build-image.sh [--profile release|dev] [--rebuild-base]
#
# 1. Base image: a minimal Debian bookworm root made by debootstrap
#    (--variant=minbase) with the libraries the binary links (librocksdb7.8
#    and what it pulls in) plus curl, iproute2 and iptables, tarred and
#    `docker import`ed as dynkv-base:<recipe hash>. The root tarball is cached
#    in $DYNKV_IMAGE_CACHE (default /var/tmp/dynkv-image-cache), so only the
#    first build runs debootstrap.
# 2. The node image: docker/Dockerfile FROM that base, adding the dynkv
#    binary (ENTRYPOINT `dynkv serve`).
#
# The binary is $DYNKV_BIN if set; otherwise it is built with cargo in
# $CARGO_TARGET_DIR (default /var/tmp/dynkv-target): `--release` by default,
# the dev profile with `--profile dev` or DYNKV_PROFILE=dev. Its debug info is
# stripped from the copy that goes into the image (DYNKV_STRIP=0 keeps it).
#
# Other settings: DYNKV_IMAGE (tag, default dynkv:latest), DYNKV_DEBIAN_MIRROR
# (default http://deb.debian.org/debian). Needs a running docker daemon and,
# only while the cache is cold, root for debootstrap (installed with apt-get
# if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
PROFILE="${DYNKV_PROFILE:-release}"
REBUILD_BASE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="${2:?--profile needs release or dev}"; shift 2 ;;
    --profile=*) PROFILE="${1#--profile=}"; shift ;;
    --rebuild-base) REBUILD_BASE=1; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$PROFILE" in
  release) ;;
  dev|debug) PROFILE=dev ;;
  *) echo "profile must be release or dev, not '$PROFILE'" >&2; exit 2 ;;
esac

IMAGE="${DYNKV_IMAGE:-dynkv:latest}"
CACHE="${DYNKV_IMAGE_CACHE:-/var/tmp/dynkv-image-cache}"
MIRROR="${DYNKV_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
# Runtime libraries of the binary come with librocksdb7.8 (libstdc++, snappy,
# lz4, zstd, bz2, zlib, gflags); curl is for the health check and demos,
# iproute2 and iptables for scripts/partition.sh.
PACKAGES=librocksdb7.8,curl,iproute2,iptables
RECIPE_VERSION=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/dynkv-target}"

say() { printf '== %s\n' "$*"; }

if ! docker info >/dev/null 2>&1; then
  echo "docker daemon not reachable (docker info failed)" >&2
  exit 1
fi

# --- the binary -------------------------------------------------------------
if [ -n "${DYNKV_BIN:-}" ]; then
  BIN="$DYNKV_BIN"
  say "binary: $BIN (DYNKV_BIN)"
else
  if [ "$PROFILE" = release ]; then
    say "cargo build --release -p dynkv"
    cargo build --release -p dynkv
    BIN="$CARGO_TARGET_DIR/release/dynkv"
  else
    say "cargo build -p dynkv (dev profile)"
    cargo build -p dynkv
    BIN="$CARGO_TARGET_DIR/debug/dynkv"
  fi
fi
[ -x "$BIN" ] || { echo "no executable dynkv binary at $BIN" >&2; exit 1; }
bin_ready=$(date +%s)

# --- the base image ---------------------------------------------------------
key=$(printf '%s|%s|%s|%s' "$SUITE" minbase "$PACKAGES" "$RECIPE_VERSION" | sha256sum | cut -c1-12)
BASE="dynkv-base:$SUITE-$key"
ROOTFS="$CACHE/rootfs-$SUITE-$key.tar"
mkdir -p "$CACHE"

work=$(mktemp -d "$CACHE/build.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

if [ "$REBUILD_BASE" = 1 ]; then
  rm -f "$ROOTFS"
  docker image rm -f "$BASE" >/dev/null 2>&1 || true
fi

if docker image inspect "$BASE" >/dev/null 2>&1; then
  say "base image $BASE present"
else
  if [ -f "$ROOTFS" ]; then
    say "base root from cache: $ROOTFS"
  else
    [ "$(id -u)" -eq 0 ] || { echo "debootstrap needs root (the base image is not cached yet)" >&2; exit 1; }
    if ! command -v debootstrap >/dev/null 2>&1; then
      say "apt-get install debootstrap"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    fi
    say "debootstrap --variant=minbase $SUITE ($PACKAGES) from $MIRROR"
    root="$work/root"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" \
      >"$work/debootstrap.log" 2>&1 || {
      tail -n 30 "$work/debootstrap.log" >&2
      echo "debootstrap failed (full log above was $work/debootstrap.log)" >&2
      exit 1
    }
    # Trim what a container never uses.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
      "$root"/var/lib/apt/lists/* "$root"/var/log/* \
      "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
      "$root"/usr/share/locale/* "$root"/debootstrap
    tar --numeric-owner -C "$root" -cf "$ROOTFS.tmp" .
    mv "$ROOTFS.tmp" "$ROOTFS"
    rm -rf "$root"
    say "cached $ROOTFS ($(du -h "$ROOTFS" | cut -f1))"
  fi
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --message "dynkv base: debootstrap minbase $SUITE + $PACKAGES" \
    "$ROOTFS" "$BASE" >/dev/null
  say "imported $BASE"
fi
base_ready=$(date +%s)

# --- the node image ---------------------------------------------------------
cp docker/Dockerfile "$work/Dockerfile"
cp "$BIN" "$work/dynkv"
if [ "${DYNKV_STRIP:-1}" != 0 ] && command -v objcopy >/dev/null 2>&1; then
  objcopy --strip-debug "$work/dynkv"
fi
say "docker build -t $IMAGE (FROM $BASE)"
if ! DOCKER_BUILDKIT=0 docker build -q \
  --build-arg "BASE_IMAGE=$BASE" \
  --label "org.dynkv.profile=$PROFILE" \
  --label "org.dynkv.revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  -t "$IMAGE" "$work" >"$work/build.log" 2>&1; then
  cat "$work/build.log" >&2
  exit 1
fi
# Earlier builds of the tag stay behind untagged: remove those no container uses.
docker image prune -f --filter label=org.dynkv.profile >/dev/null 2>&1 || true
# The binary must find every library it links inside the image.
version=$(docker run --rm --entrypoint /usr/local/bin/dynkv "$IMAGE" --version)
# docker-compose.yml's `secret` service makes the cluster secret with it.
secret_check=$(docker run --rm --network none --entrypoint /usr/local/bin/dynkv "$IMAGE" admin secret) || secret_check=""
[[ "$secret_check" =~ ^[0-9a-f]{64}$ ]] || { echo "'dynkv admin secret' does not work in $IMAGE" >&2; exit 1; }
done_at=$(date +%s)

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
base_size=$(docker image inspect -f '{{.Size}}' "$BASE")
say "built $IMAGE: $version, profile $PROFILE"
say "image size $((size / 1000000)) MB (base $((base_size / 1000000)) MB, binary $(( $(stat -c %s "$work/dynkv") / 1000000 )) MB)"
say "took $((done_at - started)) s (binary $((bin_ready - started)) s, base $((base_ready - bin_ready)) s, image $((done_at - base_ready)) s)"
