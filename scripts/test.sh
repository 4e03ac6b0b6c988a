#!/usr/bin/env bash
# The project's test command (README): every test, then the network-namespace tests.
#
# Some tests need tools that a bare machine with only Rust lacks:
#
#   tool               tests                                         Debian package
#   clang              eBPF policies compiled from examples/cc/*.c   clang
#   mpicc, mpirun      the Open MPI baseline of `weir bench allreduce` openmpi-bin libopenmpi-dev
#   ip, nft            kernel-side loss in network namespaces        iproute2 nftables
#
# As root on a machine with apt-get, the missing ones are installed first (WEIR_NO_INSTALL=1
# turns that off). Otherwise each test that needs a missing tool passes as skipped: it prints
# `SKIPPED <test>: <reason>; install: <command>` and the summary at the end lists them all.
# The namespace tests also need root (CAP_NET_ADMIN); without it they are reported skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }

# Debian packages for the tools that are missing here.
missing_packages() {
  local p=()
  have clang || p+=(clang)
  { have mpicc && have mpirun; } || p+=(openmpi-bin libopenmpi-dev)
  have ip || p+=(iproute2)
  have nft || p+=(nftables)
  echo "${p[@]}"
}

pkgs=$(missing_packages)
if [ -n "$pkgs" ]; then
  if [ "${WEIR_NO_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ] && have apt-get; then
    echo "test.sh: installing $pkgs (set WEIR_NO_INSTALL=1 to skip their tests instead)"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086 # one word per package
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; }; then
      echo "test.sh: could not install $pkgs; the tests that need them will be skipped"
    fi
  else
    echo "test.sh: missing $pkgs; the tests that need them will be reported skipped" \
      "(as root: apt-get install -y $pkgs)"
  fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Tests that skip write their SKIPPED line straight to stderr (past libtest's capture).
cargo test --workspace --locked 2>&1 | tee "$log"

# The engine's descriptor rings under loom's model checker: a separate build of the firmware
# crate with `--cfg loom` (its own target directory, so the main build is not invalidated).
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test --locked -p weir-firmware --lib loom 2>&1 | tee -a "$log"

if [ "$(id -u)" != 0 ]; then
  echo "SKIPPED netns_loss (2 tests): not root, network namespaces need CAP_NET_ADMIN;" \
    "run: sudo bash scripts/test.sh" | tee -a "$log"
else
  cargo test --locked -p weir-tests --test netns_loss -- --ignored --test-threads=1 2>&1 \
    | tee -a "$log"
fi

skipped=$(grep -c '^SKIPPED' "$log" || true)
if [ "$skipped" -gt 0 ]; then
  echo
  echo "test.sh: $skipped skipped (a missing tool or privilege; each line says which):"
  grep '^SKIPPED' "$log" | sort | uniq
else
  echo "test.sh: nothing skipped"
fi
