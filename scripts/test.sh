#!/usr/bin/env bash
# The project's test command (README): every test, then the network-namespace tests, which
# need root. A namespace test the kernel refuses prints why and is reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked

if [ "$(id -u)" != 0 ]; then
  echo "netns tests: 2 skipped (not root: network namespaces need CAP_NET_ADMIN)"
  exit 0
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked -p weir-tests --test netns_loss -- --ignored --test-threads=1 2>&1 | tee "$log"
skipped=$(grep -c '^SKIPPED' "$log" || true)
if [ "$skipped" -gt 0 ]; then
  grep '^SKIPPED' "$log"
  echo "netns tests: $skipped skipped (reasons above)"
else
  echo "netns tests: all ran"
fi
