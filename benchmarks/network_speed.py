"""Training-step time and peak memory of each network at one nnU-Net 2d patch and batch size.

Compares nnU-Net's default PlainConvUNet with the plug-in networks, all built from the same default
plans entry (``nnunet_tongue.utils_for_tests.default_plans_architecture``), with deep supervision and
nnU-Net's Dice+CE loss left out (network forward + backward of a mean-squared loss on all outputs).

CPU: each network runs in its own subprocess; peak memory is that process's peak RSS growth over the
import baseline. CUDA: bf16 autocast (``--dtype bf16``), ``torch.cuda.max_memory_allocated``.

    python benchmarks/network_speed.py --patch 160 192 --batch 11 --device cpu --steps 3
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

NETWORKS = ("PlainConvUNet", "ResUNet", "FabiansUNet", "TUNet")


def measure(network: str, patch: list[int], batch: int, device: str, steps: int, dtype: str) -> dict:
    import torch

    from nnunet_tongue.networks.from_plans import architecture_for
    from nnunet_tongue.utils_for_tests import default_plans_architecture, instantiate

    arch = default_plans_architecture(patch)
    if network != "PlainConvUNet":
        arch = architecture_for(network, arch, patch)
    net = instantiate(arch, deep_supervision=True).to(device)
    params = sum(p.numel() for p in net.parameters())
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, *patch, device=device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bf16")
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = sum(o.float().square().mean() for o in net(x))
        loss.backward()
        optimizer.step()

    step()  # warm-up (allocations, cuDNN autotuning)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_rss) / 1024 + 0.0
    times.sort()
    return {"network": network, "params_M": params / 1e6, "step_s": times[len(times) // 2], "peak_MB": peak_mb,
            "device": device, "dtype": dtype, "patch": patch, "batch": batch}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patch", type=int, nargs=2, default=[160, 192])
    p.add_argument("--batch", type=int, default=11)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--dtype", default=None, choices=("fp32", "bf16"), help="default: fp32 on CPU, bf16 on CUDA")
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up (median reported)")
    p.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: measure one network, print JSON
    args = p.parse_args()
    dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    if args.one:
        print(json.dumps(measure(args.one, args.patch, args.batch, args.device, args.steps, dtype)))
        return
    rows = []
    for network in args.networks:
        out = subprocess.run([sys.executable, __file__, "--one", network, "--patch", *map(str, args.patch),
                              "--batch", str(args.batch), "--device", args.device, "--dtype", dtype,
                              "--steps", str(args.steps)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"measured {network}", file=sys.stderr, flush=True)
    base = rows[0]["step_s"] if rows[0]["network"] == "PlainConvUNet" else None
    print(f"| network | params (M) | step (s) | vs PlainConvUNet | peak RSS growth (MB) | device, dtype | patch, batch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rel = f"{r['step_s'] / base:.2f}×" if base else "—"
        print(f"| {r['network']} | {r['params_M']:.1f} | {r['step_s']:.2f} | {rel} | {r['peak_MB']:.0f} | "
              f"{r['device']}, {r['dtype']} | {r['patch'][0]}×{r['patch'][1]}, {r['batch']} |")


if __name__ == "__main__":
    main()
