#!/usr/bin/env python3
"""GPU end-to-end check of the Weir NCCL net plugin (driven by scripts/gpu-e2e.sh).

Two processes share one GPU; each gets its own NCCL_HOSTID, so NCCL takes them for two nodes
and all their traffic goes through the network plugin (NCCL_NET selects which). Rank 0 prints
one JSON line per (op, size): time per call, algbw and busbw in nccl-tests conventions, and
whether every element was right on both ranks.

  python3 scripts/gpu_e2e.py --net weir --out weir.jsonl
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time


def sizes(lo, hi):
    s = lo
    while s <= hi:
        yield s
        s *= 2


def worker(args):
    import torch
    import torch.distributed as dist

    rank = int(os.environ["E2E_RANK"])
    world = 2
    torch.cuda.set_device(0)
    dist.init_process_group(
        "nccl",
        init_method=f"tcp://127.0.0.1:{args.port}",
        rank=rank,
        world_size=world,
    )
    dev = torch.device("cuda", 0)
    out = []
    for op in ("all_reduce", "all_gather"):
        for size in sizes(args.min_bytes, args.max_bytes):
            # float32 elements; all_gather's size is the gathered output (nccl-tests).
            if op == "all_reduce":
                n = max(size // 4, 1)
                # Values that sum exactly in float32: rank r holds r+1 + i % 7.
                base = (torch.arange(n, device=dev, dtype=torch.float32) % 7)
                x = base + (rank + 1)
                expect = base * world + sum(r + 1 for r in range(world))

                def run():
                    y = x.clone()
                    dist.all_reduce(y)
                    return y
            else:
                n = max(size // 4 // world, 1)
                x = (torch.arange(n, device=dev, dtype=torch.float32) % 7) + 10 * rank
                expect = torch.cat(
                    [(torch.arange(n, device=dev, dtype=torch.float32) % 7) + 10 * r
                     for r in range(world)])
                y = torch.empty(n * world, device=dev, dtype=torch.float32)

                def run():
                    dist.all_gather_into_tensor(y, x)
                    return y
            ok = bool(torch.equal(run(), expect))
            for _ in range(args.warmup):
                run()
            torch.cuda.synchronize()
            dist.barrier()
            iters = args.iters if size < (64 << 20) else max(args.iters // 4, 2)
            t0 = time.perf_counter()
            for _ in range(iters):
                got = run()
            torch.cuda.synchronize()
            dt = (time.perf_counter() - t0) / iters
            ok = ok and bool(torch.equal(got, expect))
            flag = torch.tensor([0 if ok else 1], device=dev)
            dist.all_reduce(flag)
            nbytes = n * 4 * (world if op == "all_gather" else 1)
            algbw = nbytes / dt / 1e9
            factor = 2 * (world - 1) / world if op == "all_reduce" else (world - 1) / world
            row = dict(net=args.net, op=op, size=nbytes, time_us=dt * 1e6,
                       algbw=algbw, busbw=algbw * factor, correct=int(flag.item()) == 0)
            if rank == 0:
                out.append(row)
                print(json.dumps(row), flush=True)
    dist.destroy_process_group()
    if rank == 0 and args.out:
        with open(args.out, "w") as f:
            for row in out:
                f.write(json.dumps(row) + "\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", required=True, help="NCCL_NET value: weir or Socket")
    ap.add_argument("--plugin", help="path of libnccl-net-weir.so (for --net weir)")
    ap.add_argument("--min-bytes", type=int, default=1 << 10)
    ap.add_argument("--max-bytes", type=int, default=256 << 20)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=1800)
    args = ap.parse_args()
    if "E2E_RANK" in os.environ:
        return worker(args)
    port = args.port or free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ)
        env.update(
            E2E_RANK=str(rank),
            NCCL_HOSTID=f"weir-e2e-host{rank}",  # two "nodes" on one GPU
            NCCL_NET=args.net,
            NCCL_SOCKET_IFNAME=env.get("NCCL_SOCKET_IFNAME", "lo"),
            NCCL_DEBUG=env.get("NCCL_DEBUG", "INFO"),
            NCCL_DEBUG_SUBSYS=env.get("NCCL_DEBUG_SUBSYS", "INIT,NET"),
        )
        if args.net.lower() == "weir":
            if not args.plugin:
                sys.exit("--plugin is required with --net weir")
            env["NCCL_NET_PLUGIN"] = os.path.abspath(args.plugin)
            env["LD_LIBRARY_PATH"] = (os.path.dirname(os.path.abspath(args.plugin)) + ":" +
                                      env.get("LD_LIBRARY_PATH", ""))
            env.setdefault("WEIR_IFNAME", "lo")
        else:
            env["NCCL_NET_PLUGIN"] = "none"
        cmd = [sys.executable, __file__] + sys.argv[1:] + ["--port", str(port)]
        procs.append(subprocess.Popen(cmd, env=env))
    deadline = time.time() + args.timeout
    codes = [None, None]
    while None in codes:
        for i, p in enumerate(procs):
            if codes[i] is None:
                codes[i] = p.poll()
        if time.time() > deadline:
            for p in procs:
                p.kill()
            sys.exit(f"timeout after {args.timeout} s")
        if any(c not in (None, 0) for c in codes):
            for p in procs:
                if p.poll() is None:
                    time.sleep(5)
                    p.kill()
            sys.exit(f"rank failed: exit codes {codes}")
        time.sleep(0.2)


if __name__ == "__main__":
    main()
