#!/usr/bin/env bash
# GPU end-to-end check of libnccl-net-weir.so with PyTorch's NCCL (see docs/nccl.md).
#
# Two processes on one GPU, each with its own NCCL_HOSTID, count as two nodes, so all their
# traffic goes through the net plugin. all_reduce and all_gather, 1 KiB – 256 MiB, once with
# NCCL_NET=weir and once with NCCL_NET=Socket in the same run; every result is checked, and a
# nccl-tests-style table with busbw for both is printed. Exit status 1 on a wrong result, on
# a run that did not go through the intended network, or on a failed rank.
#
# Build the plugin on an x86-64 machine (bash scripts/build-plugin.sh), copy the repository
# (or just this script, gpu_e2e.py and the .so) to the GPU host, then:
#
#   bash scripts/gpu-e2e.sh [path/to/libnccl-net-weir.so] [max bytes]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
plugin=${1:-$here/../target/release/libnccl-net-weir.so}
max=${2:-$((256 << 20))}
[ -f "$plugin" ] || { echo "gpu-e2e: no plugin at $plugin (run scripts/build-plugin.sh)"; exit 2; }
python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || { echo "gpu-e2e: needs PyTorch with CUDA and a GPU"; exit 2; }
python3 -c 'import torch; print("gpu-e2e: torch", torch.__version__, "nccl", ".".join(map(str, torch.cuda.nccl.version())), torch.cuda.get_device_name(0))'

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for net in weir Socket; do
    echo "gpu-e2e: NCCL_NET=$net ..."
    if ! python3 "$here/gpu_e2e.py" --net "$net" --plugin "$plugin" --max-bytes "$max" \
        --out "$work/$net.jsonl" >"$work/$net.log" 2>&1; then
        echo "gpu-e2e: NCCL_NET=$net failed; last lines of its log:"
        tail -n 40 "$work/$net.log"
        status=1
        continue
    fi
    # Prove which network carried the traffic: NCCL logs the net it chose.
    if ! grep -Eiq "Using network $net\b|NET/$net\b" "$work/$net.log"; then
        echo "gpu-e2e: NCCL_NET=$net: NCCL's log does not show network $net in use:"
        grep -Ei "NET/|network" "$work/$net.log" | head -n 20
        status=1
    fi
    grep -Ei "NET/Plugin|Using network|weir" "$work/$net.log" | sort -u | head -n 8 | sed 's/^/    /'
done

python3 - "$work/weir.jsonl" "$work/Socket.jsonl" <<'PY' || status=1
import json, sys
def load(p):
    try:
        return {(r["op"], r["size"]): r for r in map(json.loads, open(p))}
    except FileNotFoundError:
        return {}
weir, sock = load(sys.argv[1]), load(sys.argv[2])
bad = 0
for op in ("all_reduce", "all_gather"):
    print(f"\n# {op}, 2 ranks (two NCCL_HOSTIDs on one GPU); GB/s = 1e9 B/s")
    print(f"# {'size':>10} | {'weir time(us)':>13} {'algbw':>7} {'busbw':>7} {'ok':>3} |"
          f" {'socket time(us)':>15} {'algbw':>7} {'busbw':>7} {'ok':>3} | {'busbw ratio':>11}")
    for (o, size) in sorted(k for k in set(weir) | set(sock) if k[0] == op):
        w, s = weir.get((op, size)), sock.get((op, size))
        def cols(r, tw):
            if not r:
                return f"{'-':>{tw}} {'-':>7} {'-':>7} {'-':>3}"
            return f"{r['time_us']:>{tw}.1f} {r['algbw']:>7.3f} {r['busbw']:>7.3f} {('yes' if r['correct'] else 'NO'):>3}"
        ratio = f"{w['busbw'] / s['busbw']:.2f}x" if w and s and s["busbw"] > 0 else "-"
        print(f"  {size:>10} | {cols(w, 13)} | {cols(s, 15)} | {ratio:>11}")
        bad += sum(1 for r in (w, s) if r and not r["correct"])
if not weir or not sock:
    print("gpu-e2e: a network produced no results"); sys.exit(1)
if bad:
    print(f"gpu-e2e: {bad} wrong results"); sys.exit(1)
PY
exit $status
