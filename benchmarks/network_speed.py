"""Training-step time and peak memory of each network at one nnU-Net 2d patch and batch size.

Compares nnU-Net's default PlainConvUNet with the plug-in networks, all built from the same default
plans entry (``nnunet_tongue.networks.from_plans.default_plans_architecture``), with deep supervision and
nnU-Net's Dice+CE loss left out (network forward + backward of a mean-squared loss on all outputs).

CPU: each network runs in its own subprocess; peak memory is that process's peak RSS growth over the
import baseline. CUDA: bf16 autocast (``--dtype bf16``), ``torch.cuda.max_memory_allocated``.
``--compile`` wraps each network in ``torch.compile`` (the first step, which compiles, is reported apart);
``--profile N`` then profiles N more steps and prints each network's costliest ops (self device time).
``--reuse-freed-memory`` first applies what the plug-in trainers apply on CPU
(:func:`nnunet_tongue.training.cpu_memory.reuse_freed_memory`); the CPU time of the timed steps is reported split
into user and system time, where glibc's returning and re-mapping of freed memory shows.
GFLOP / sample: forward + backward of one sample, counted on the meta device (:func:`count_flops`).

    python benchmarks/network_speed.py --patch 160 192 --batch 11 --device cpu --steps 3
    python benchmarks/network_speed.py --patch 640 768 --batch 7 --device cuda --steps 10 --compile
    python benchmarks/network_speed.py --networks PlainConvUNet TUNet --steps 5 --reuse-freed-memory
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

#: TUNetLean / TUNetFast: the networks of nnUNetTrainerTUNetLean / nnUNetTrainerTUNetFast (from_plans.TUNET_VARIANTS)
NETWORKS = ("PlainConvUNet", "ResUNet", "FabiansUNet", "TUNet", "TUNetLean", "TUNetFast")


def count_flops(network: str, patch: list[int]) -> float:
    """Floating-point operations of one training sample (forward + backward), counted by
    ``torch.utils.flop_counter`` on the meta device (shapes only, nothing computed): convolutions, matrix
    products and attention; normalisation, activations and resampling are not counted."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net = _build(network, patch).to("meta")
    counter = FlopCounterMode(display=False)
    with counter:
        sum(o.float().square().mean() for o in net(torch.randn(1, 3, *patch, device="meta"))).backward()
    return float(counter.get_total_flops())


def _build(network: str, patch: list[int]):
    from nnunet_tongue.networks.from_plans import (TUNET_VARIANTS, architecture_for, build_from_architecture,
                                                   default_plans_architecture)

    arch = default_plans_architecture(patch)
    if network in TUNET_VARIANTS:
        arch = architecture_for("TUNet", arch, patch, **TUNET_VARIANTS[network])
    elif network != "PlainConvUNet":
        arch = architecture_for(network, arch, patch)
    return build_from_architecture(arch, deep_supervision=True)


def measure(network: str, patch: list[int], batch: int, device: str, steps: int, dtype: str,
            compile_network: bool = False, profile_steps: int = 0, profile_rows: int = 20) -> dict:
    """Time ``steps`` training steps of ``network`` after one warm-up; with ``profile_steps``, then profile
    that many more and return the ops that took the most (self) device time as ``profile``."""
    import torch

    net = _build(network, patch).to(device)
    params = sum(p.numel() for p in net.parameters())
    if compile_network:
        net = torch.compile(net)
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

    start = time.perf_counter()
    step()  # warm-up (allocations, cuDNN autotuning, compilation)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    first_step = time.perf_counter() - start
    times, cpu_before = [], resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    user_s, system_s = (cpu.ru_utime - cpu_before.ru_utime) / steps, (cpu.ru_stime - cpu_before.ru_stime) / steps
    profile = None
    if profile_steps:
        from torch.profiler import ProfilerActivity, profile as profiler

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with profiler(activities=activities) as prof:
            for _ in range(profile_steps):
                step()
            if device == "cuda":
                torch.cuda.synchronize()
        key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
        profile = prof.key_averages().table(sort_by=key, row_limit=profile_rows)
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_rss) / 1024 + 0.0
    times.sort()
    return {"network": network, "params_M": params / 1e6, "step_s": times[len(times) // 2], "peak_MB": peak_mb,
            "first_step_s": first_step, "cpu_user_s": user_s, "cpu_system_s": system_s, "device": device,
            "dtype": dtype, "compiled": compile_network,
            "patch": patch, "batch": batch, **({"profile": profile} if profile else {})}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patch", type=int, nargs=2, default=[160, 192])
    p.add_argument("--batch", type=int, default=11)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--dtype", default=None, choices=("fp32", "bf16"), help="default: fp32 on CPU, bf16 on CUDA")
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up (median reported)")
    p.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    p.add_argument("--compile", action="store_true", help="torch.compile each network (default inductor backend)")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="after timing, profile this many steps and print each network's costliest ops")
    p.add_argument("--flops-only", action="store_true",
                   help="only count each network's GFLOP per sample (meta device: seconds, no time or memory)")
    p.add_argument("--reuse-freed-memory", action="store_true",
                   help="keep freed memory for the next step, as the plug-in trainers do on CPU (glibc only)")
    p.add_argument("--json", type=Path, help="also write the measurements to this JSON file")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: measure one network, print JSON
    args = p.parse_args()
    dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    if args.one:
        if args.reuse_freed_memory:
            from nnunet_tongue.training.cpu_memory import reuse_freed_memory

            if not reuse_freed_memory():
                raise SystemExit("--reuse-freed-memory needs glibc's malloc (Linux)")
        print(json.dumps(measure(args.one, args.patch, args.batch, args.device, args.steps, dtype, args.compile,
                                 args.profile)))
        return
    if args.flops_only:
        flops = {network: count_flops(network, args.patch) / 1e9 for network in args.networks}
        print(f"| network | GFLOP / sample, forward + backward, {args.patch[0]}×{args.patch[1]} | vs PlainConvUNet |")
        print("|---|---|---|")
        for network, gflop in flops.items():
            rel = f"{gflop / flops['PlainConvUNet']:.2f}×" if "PlainConvUNet" in flops else "—"
            print(f"| {network} | {gflop:.0f} | {rel} |")
        return
    rows = []
    for network in args.networks:
        out = subprocess.run([sys.executable, __file__, "--one", network, "--patch", *map(str, args.patch),
                              "--batch", str(args.batch), "--device", args.device, "--dtype", dtype,
                              "--steps", str(args.steps), "--profile", str(args.profile),
                              *(["--compile"] if args.compile else []),
                              *(["--reuse-freed-memory"] if args.reuse_freed_memory else [])],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"measuring {network} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rows[-1]["gflop_per_sample"] = count_flops(network, args.patch) / 1e9
        # each network's figures as soon as they are measured: a run stopped before the table keeps them
        r = rows[-1]
        print(f"measured {network}: step {r['step_s']:.3f} s, first step {r['first_step_s']:.1f} s, peak "
              f"{r['peak_MB']:.0f} MB", file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    base = rows[0]["step_s"] if rows[0]["network"] == "PlainConvUNet" else None
    memory = "peak GPU memory (MB)" if args.device == "cuda" else "peak RSS growth (MB)"
    digits = 3 if args.device == "cuda" else 2
    print(f"| network | params (M) | GFLOP / sample | step (s) | vs PlainConvUNet | CPU user / system (s) | "
          f"first step (s) | {memory} | device, dtype | patch, batch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rel = f"{r['step_s'] / base:.2f}×" if base else "—"
        how = f"{r['device']}, {r['dtype']}" + (", compiled" if r["compiled"] else "") + (
            ", freed memory reused" if args.reuse_freed_memory else "")
        print(f"| {r['network']} | {r['params_M']:.1f} | {r['gflop_per_sample']:.0f} | {r['step_s']:.{digits}f} | "
              f"{rel} | {r['cpu_user_s']:.1f} / {r['cpu_system_s']:.1f} | {r['first_step_s']:.1f} | "
              f"{r['peak_MB']:.0f} | {how} | {r['patch'][0]}×{r['patch'][1]}, {r['batch']} |")

    for r in rows:
        if "profile" in r:
            print(f"\n{r['network']}, {args.profile} steps profiled:\n\n```\n{r['profile'].rstrip()}\n```")


if __name__ == "__main__":
    main()
