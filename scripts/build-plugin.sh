#!/usr/bin/env bash
# Build the NCCL net plugin as NCCL expects to find it: target/release/libnccl-net-weir.so.
#
# Cargo names a cdylib after its crate (libnccl_net_weir.so; a crate name cannot contain '-'),
# so this copies it to the name NCCL looks for (NCCL_NET_PLUGIN=weir → libnccl-net-weir.so)
# and checks that every table NCCL may ask for is exported (as NCCL's own plugin test does
# with nm -D). Prints the path of the library on success.
#
#   bash scripts/build-plugin.sh            # release build
#   PROFILE=dev bash scripts/build-plugin.sh
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${PROFILE:-release}
case "$profile" in
    dev) dir=target/debug ;;
    *) dir=target/$profile ;;
esac
cargo build --locked --profile "$profile" -p weir-nccl-net >&2

src=$dir/libnccl_net_weir.so
dst=$dir/libnccl-net-weir.so
# A copy, not a symlink: the file is what gets copied to the GPU hosts.
cp -f "$src" "$dst"

missing=()
for v in 8 9 10 11 12; do
    if ! nm -D --defined-only "$dst" | grep -q " ncclNetPlugin_v$v\$"; then
        missing+=("ncclNetPlugin_v$v")
    fi
done
if ((${#missing[@]})); then
    echo "build-plugin: $dst does not export: ${missing[*]}" >&2
    exit 1
fi
echo "$PWD/$dst"
