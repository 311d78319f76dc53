#!/usr/bin/env bash
# Installs the system packages dynkv builds and tests with (Debian 12).
# clang/libclang: bindgen for the rocksdb crate; librocksdb-dev: the RocksDB
# we link against (see README, Development); tcpdump: the test that checks
# nothing readable crosses the cluster ports captures loopback traffic;
# libssl-dev: the openssl TLS engine links the system libssl; openssl: the TLS
# tests use its s_client as a legacy (TLS 1.2, DHE-RSA) client; iproute2: the
# default-ports test runs a node in its own network namespace; wrk: HTTPS load
# for the TLS engine measurements; python3, python3-venv: the Python client's
# tests (scripts/python-client-tests.sh) install it into a virtualenv;
# chromium and fonts-dejavu-core: the dashboard's browser test
# (scripts/ui-test.sh) and its screenshots.
set -euo pipefail
PACKAGES=(clang libclang-dev librocksdb-dev libsnappy-dev pkg-config curl tcpdump libssl-dev openssl iproute2 wrk python3 python3-venv chromium fonts-dejavu-core)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
