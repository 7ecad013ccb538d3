"""Real-data benchmark on BioHit: every trainer, same split, same budget, evaluated at full resolution.

    python benchmarks/biohit_benchmark.py --tier cpu     # 2 CPU cores, reduced resolution and schedule
    python benchmarks/biohit_benchmark.py --tier gpu     # CUDA, full resolution, 3 x 50 steps (one 10-min command)

Steps (each a stock nnU-Net or nnunet-tongue command, echoed and logged):
1. ``nnunet-tongue convert`` BioHit with ``biohit_split.json`` (240 train / 60 held-out test), downscaled
   to ``--max-size`` for training; a second, full-resolution conversion gives the test ground truth (inverted
   upstream masks fixed the same way);
2. ``nnUNetv2_plan_and_preprocess``; 3. ``nnUNetv2_train 501 2d 0 -tr <trainer>_<E>epochs_<I>its_<V>val`` for
   each trainer (the budget in the name)
   (the CPU tier adds the residual networks trained with nnU-Net's SGD, ``*SGD``, for the optimiser study);
4. ``nnunet-tongue segment`` on the 60 original test photos (masks at 768×576, no mirroring);
5. ``nnunet-tongue evaluate`` against the full-resolution ground truth.

Writes ``benchmarks/results/<tier>.json`` and ``docs/img/benchmark_<tier>_*.png``, then regenerates
``docs/benchmarks.md`` from every results file present (with ``benchmarks/results/<tier>_findings.md``, the
hand-written reading of a tier's run, and ``network_speed.md`` appended). A finished training is not
repeated when the command is re-run: delete ``benchmarks/runs/<tier>/train_<trainer>.json`` to redo one.

A *study* varies one thing on the tier's data and split: ``--study NAME`` with ``--trainers`` and/or
a setting (``--epochs``, ``--lr``, …) trains into its own results folder and writes
``benchmarks/results/<tier>_study_<NAME>.json``;
the page lists every study of a tier below the tier's table, e.g.

    python benchmarks/biohit_benchmark.py --tier cpu --study token8 --trainers nnUNetTrainerTUNetToken8
    python benchmarks/biohit_benchmark.py --tier cpu --study long --trainers nnUNetTrainerTUNet --epochs 32
    python benchmarks/biohit_benchmark.py --tier cpu --study lr3e-4 --trainers nnUNetTrainerTUNet --lr 3e-4
    python benchmarks/biohit_benchmark.py --tier gpu --study long --trainers nnUNetTrainerTUNet --epochs 24 \
        --iterations 50 --val-iterations 2          # --compile: with nnU-Net's torch.compile
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIOHIT = REPO.parent / "shared" / "data"
TRAINERS = ["nnUNetTrainer", "nnUNetTrainerResUNet", "nnUNetTrainerFabiansUNet", "nnUNetTrainerTUNet"]
#: the residual networks with nnU-Net's SGD schedule instead of AdamW + warmup (optimiser study)
SGD_VARIANTS = ["nnUNetTrainerResUNetSGD", "nnUNetTrainerFabiansUNetSGD"]
#: trainers only studies use
STUDY_TRAINERS = ["nnUNetTrainerTUNetToken8", "nnUNetTrainerTUNetLean", "nnUNetTrainerTUNetFast",
                  "nnUNetTrainerTUNetUpright"]
TIERS = {
    "cpu": {"max_size": 192, "epochs": 8, "iterations": 12, "val_iterations": 3, "device": "cpu",
            "trainers": TRAINERS + SGD_VARIANTS},
    # the schedule benchmarks/device_run.sh fitted into one 10-minute command on an offline GPU machine
    # (docs/gpu_runs.md: sized there from the measured step times, after the CUDA checks): the four
    # trainings share the GPU, torch.compile off (its start-up would eat the budget; network_speed.py
    # --compile checks it), every other setting nnU-Net's own
    "gpu": {"max_size": None, "epochs": 3, "iterations": 50, "val_iterations": 5, "device": "cuda",
            "trainers": TRAINERS, "parallel": 4, "env": {"nnUNet_compile": "f", "nnUNet_def_n_proc": "4"}},
}
BIN = Path(sys.executable).parent
RESULTS = REPO / "benchmarks" / "results"


#: runs a command and prints the resource use of it and everything it waited for (GNU time's %M/%U/%S
#: without needing /usr/bin/time, which the GPU machine lacks)
_RUSAGE = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
           "r = resource.getrusage(resource.RUSAGE_CHILDREN); "
           "print('MAXRSS_KB', r.ru_maxrss, 'CPU_S', r.ru_utime, r.ru_stime, flush=True); sys.exit(rc)")


class CommandFailed(SystemExit):
    """A benchmark step's command exited non-zero (stops the script unless caught)."""


def start(cmd: list[str], env: dict, log: Path) -> tuple[subprocess.Popen, float]:
    """Start a console script of this environment, its output appended to ``log``."""
    print(f"$ {shlex.join(cmd)}", flush=True)
    with open(log, "a") as f:
        f.write(f"\n$ {shlex.join(cmd)}\n")
        f.flush()
        script = shutil.which(cmd[0], path=os.pathsep.join([str(BIN), env.get("PATH", "")]))
        if script is None:
            raise SystemExit(f"{cmd[0]} not found beside {sys.executable} or on PATH: install the project first")
        proc = subprocess.Popen([sys.executable, "-c", _RUSAGE, script, *cmd[1:]], env=env, stdout=f,
                                stderr=subprocess.STDOUT)
    return proc, time.time()


def finish(proc: subprocess.Popen, started: float, log: Path) -> tuple[float, int, float]:
    """Wait for a started command; return (wall seconds, peak RSS in MB of its largest process, CPU cores it
    kept busy on average: (user + system time) / wall time, about 2 on a 2-core machine that runs nothing else)."""
    proc.wait()
    wall = time.time() - started
    if proc.returncode != 0:
        raise CommandFailed(f"{proc.args[3]} failed ({proc.returncode}); see {log}")
    stats = [line.split() for line in log.read_text().splitlines() if line.startswith("MAXRSS_KB")][-1]
    return wall, int(stats[1]) // 1024, (float(stats[3]) + float(stats[4])) / wall


def run(cmd: list[str], env: dict, log: Path) -> tuple[float, int, float]:
    """:func:`start` then :func:`finish`."""
    return finish(*start(cmd, env, log), log)


def count_parameters(state_dict: dict) -> int:
    """Parameters in a checkpoint's state dict, each tensor once.

    dynamic-network-architectures' decoders keep a reference to their encoder, so the state dict lists
    every encoder tensor twice (``encoder.*`` and ``decoder.encoder.*``, one shared storage); summing all
    entries would over-count. Equals ``sum(p.numel() for p in network.parameters())`` for these networks.
    """
    unique = {(v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)): v.numel()
              for v in state_dict.values() if v.dtype.is_floating_point}
    return sum(unique.values())


def optimiser_of(trainer: str) -> str:
    """Short description of the optimiser a trainer trains with."""
    from nnunet_tongue.training.trainers import AdamWWarmupTrainer
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with contextlib.redirect_stdout(io.StringIO()):  # the lookup narrates its search
        cls = recursive_find_trainer_class_by_name(trainer)
    return "AdamW + warmup" if issubclass(cls, AdamWWarmupTrainer) else "SGD (nnU-Net)"


def epoch_seconds(logging: dict) -> list[float]:
    """Each finished epoch's duration from an nnU-Net checkpoint's ``logging``."""
    return [e - s for s, e in zip(logging["epoch_start_timestamps"], logging["epoch_end_timestamps"])]


def training_summary(model: Path) -> dict:
    import torch

    ckpt = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    log = ckpt["logging"]
    epoch_s = epoch_seconds(log)
    params = count_parameters(ckpt["network_weights"])
    return {"epoch_s": epoch_s, "train_losses": log["train_losses"], "val_losses": log["val_losses"],
            "pseudo_dice": [float(d) for d in log["mean_fg_dice"]],
            "pseudo_dice_ema": [float(d) for d in log["ema_fg_dice"]], "params_M": params / 1e6}


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device visible"


def resolution_ceiling(training_labels: Path | int, full_labels: Path) -> dict:
    """Dice (%) of a perfect prediction at the training resolution (``training_labels``: the folder of the
    downscaled test masks, or the longest side in px to downscale them to by the converter's rule) brought back
    to the photos' size the way ``segment`` does (bilinear, threshold 0.5): the best score that scale allows."""
    import numpy as np
    from PIL import Image

    from nnunet_tongue.conversion.masks import resize_mask
    from nnunet_tongue.evaluation.metrics import dice
    from nnunet_tongue.photos import scaled_size

    scores = []
    for truth_path in sorted(full_labels.glob("*.png")):
        truth = np.asarray(Image.open(truth_path)) > 0
        if isinstance(training_labels, int):
            small = resize_mask(truth, scaled_size(truth.shape[1], truth.shape[0], training_labels)[:2])
        else:
            small = np.asarray(Image.open(training_labels / truth_path.name))
        small = small.astype(np.float32)
        if small.shape != truth.shape:
            small = np.asarray(Image.fromarray(small).resize(truth.shape[::-1], Image.Resampling.BILINEAR))
        scores.append(100 * dice(small >= 0.5, truth))
    return {"mean": float(np.mean(scores)), "sd": float(np.std(scores, ddof=1)), "min": float(np.min(scores))}


def nnunet_env(workdir: Path, **extra: str) -> dict:
    """The environment nnU-Net's commands run in for ``workdir`` (its raw and preprocessed folders; nnU-Net's
    own worker counts unless the caller's environment sets them)."""
    from nnunet_tongue.workspace import NnUNetWorkspace

    return NnUNetWorkspace(workdir, processes=None, extra=extra).environment()


def prepare(workdir: Path, max_size: int | None, data: Path) -> Path:
    """Convert BioHit (at ``max_size`` for training, and at full resolution for scoring) and run the stock
    plan and preprocess, unless ``workdir`` already holds them; return the raw dataset folder."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "benchmark.log"
    env = nnunet_env(workdir)
    dataset = workdir / "raw" / "Dataset501_Tongue"
    if not dataset.exists():
        resize = ["--max-size", str(max_size)] if max_size else []
        run(["nnunet-tongue", "convert", str(data / "biohit"), "-o", str(workdir / "raw"), "--split-json",
             str(data / "biohit_split.json"), "--no-progress", *resize], env, log)
        run(["nnunet-tongue", "convert", str(data / "biohit"), "-o", str(workdir / "fullres"), "--split-json",
             str(data / "biohit_split.json"), "--no-progress"], env, log)
        processes = str(min(8, os.cpu_count() or 1))
        run(["nnUNetv2_plan_and_preprocess", "-d", "501", "-c", "2d", "-npfp", processes, "-np", processes,
             "--verify_dataset_integrity", "--no_pbar"], env, log)
    return dataset


def benchmark(tier: str, workdir: Path, trainers: list[str], study: str | None = None,
              overrides: dict | None = None, data: Path = BIOHIT) -> dict:
    """Run the tier (or one of its studies: own results folder, some settings overridden) on the BioHit copy
    in ``data`` (``biohit/`` and ``biohit_split.json``)."""
    cfg = dict(TIERS[tier], trainers=trainers, **(overrides or {}))
    dataset = prepare(workdir, cfg["max_size"], data)
    log = workdir / "benchmark.log"
    prefix = f"{study}_" if study else ""  # a study's trainings, predictions and reports stay apart
    results_dir = workdir / f"{prefix}results"
    env = nnunet_env(workdir, nnUNet_results=str(results_dir))
    from nnunet_tongue.training.budget import budget_trainer_name

    budgeted = {t: budget_trainer_name(t, cfg["epochs"], cfg["iterations"], cfg["val_iterations"], cfg.get("lr"))
                for t in trainers}
    split = json.loads((data / "biohit_split.json").read_text())
    gt = workdir / "fullres" / "Dataset501_Tongue" / "labelsTs"
    photos = workdir / "test_photos"
    photos.mkdir(exist_ok=True)
    for case in split["test"]:
        link = photos / f"{case}.jpg"
        if not link.exists():
            link.symlink_to((data / "biohit" / "images" / f"{case}.jpg").resolve())
    converted = json.loads((dataset / "dataset.json").read_text()).get("nnunet_tongue_conversion", {})
    if converted.get("max_size") != cfg["max_size"]:
        raise SystemExit(f"{dataset} was converted with max size {converted.get('max_size')}, this run wants "
                         f"{cfg['max_size']}: use another --workdir")
    plans = json.loads((workdir / "preprocessed" / "Dataset501_Tongue" / "nnUNetPlans.json").read_text())
    plan2d = plans["configurations"]["2d"]
    results = {"tier": tier, **({"study": study} if study else {}), "budget": cfg, "patch_size": plan2d["patch_size"],
               "batch_size": plan2d["batch_size"], "device": cfg["device"],
               "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
               **({"gpu": gpu_name()} if cfg["device"] == "cuda" else {}),
               "n_test": len(split["test"]), "trainers": {},
               "resolution_ceiling_dice": resolution_ceiling(dataset / "labelsTs", gt)}
    models = {t: results_dir / "Dataset501_Tongue" / f"{budgeted[t]}__nnUNetPlans__2d" for t in trainers}
    timings = {t: workdir / f"train_{prefix}{t}.json" for t in trainers}  # a finished training is not repeated
    pending = [t for t in trainers if not timings[t].exists()]
    parallel = min(cfg.get("parallel", 1), len(trainers))  # a study of one trainer runs it alone
    cfg["parallel"] = parallel  # also results["budget"]
    train_env = dict(env, **cfg.get("env", {}))
    if parallel > 1 and "nnUNet_n_proc_DA" not in os.environ:  # share the CPU cores between the trainings
        train_env["nnUNet_n_proc_DA"] = str(max(1, (os.cpu_count() or 1) // parallel - 1))
    results["budget"]["data_augmentation_workers"] = int(train_env.get("nnUNet_n_proc_DA", 0)) or None
    for first in range(0, len(pending), parallel):
        running = []
        for trainer in pending[first:first + parallel]:
            train_log = workdir / f"train_{prefix}{trainer}.log"
            running.append((trainer, train_log, *start(["nnUNetv2_train", "501", "2d", "0", "-tr", budgeted[trainer],
                                                        "-device", cfg["device"]], train_env, train_log)))
        for trainer, train_log, proc, started in running:
            try:
                timings[trainer].write_text(json.dumps(finish(proc, started, train_log)))
            except CommandFailed as failure:  # the others go on; the page shows this one as failed
                print(failure, flush=True)
                results["trainers"][trainer] = {"failed": str(failure),
                                                "log_tail": train_log.read_text().splitlines()[-30:]}
    evaluations = {}
    for trainer in trainers:
        if trainer in results["trainers"]:
            continue
        model = models[trainer]
        train_s, train_rss, cores = json.loads(timings[trainer].read_text())
        cuda_memory = model / "fold_0" / "cuda_memory.json"  # written by the budget trainers on CUDA
        seg = workdir / f"segmented_{prefix}{trainer}"
        seg_s, seg_rss, _ = run(["nnunet-tongue", "segment", "-i", str(photos), "-o", str(seg), "-m", str(model),
                              "-f", "0", "-device", cfg["device"], "--no-mirroring", "--overwrite", "--no-progress"],
                             env, log)
        report = workdir / f"evaluation_{prefix}{trainer}"
        # scored while the next model segments (CPU beside GPU work; only the segment step is timed)
        report_log = workdir / f"{report.name}.log"
        evaluations[trainer] = (report, report_log, *start(["nnunet-tongue", "evaluate", "-p", str(seg / "masks"),
                                                            "-g", str(gt), "-o", str(report), "--images", str(photos),
                                                            "--overwrite"], env, report_log))
        results["trainers"][trainer] = {
            **training_summary(model), "optimiser": optimiser_of(trainer), "train_wall_s": train_s,
            "train_peak_rss_MB": train_rss, "train_cpu_cores_busy": cores, "trained_in_parallel": parallel,
            **(json.loads(cuda_memory.read_text()) if cuda_memory.exists() else {}),
            "segment_wall_s": seg_s, "segment_s_per_photo": seg_s / len(split["test"]),
            "segment_peak_rss_MB": seg_rss,
        }
    for trainer, (report, report_log, proc, started) in evaluations.items():
        finish(proc, started, report_log)
        metrics = json.loads((report / "summary.json").read_text())["metrics"]
        results["trainers"][trainer]["metrics"] = metrics
        print(json.dumps({trainer: metrics["dice"]}), flush=True)
    return results


def plots(results: dict, img_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tier = results["tier"]
    trainers = {name: t for name, t in results["trainers"].items() if "failed" not in t}
    img_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), dpi=80)
    for name, r in trainers.items():
        axes[0].plot(r["train_losses"], label=name.replace("nnUNetTrainer", "") or "default")
        axes[1].plot(r["pseudo_dice"], label=name.replace("nnUNetTrainer", "") or "default")
    axes[0].set(title="training loss (Dice+CE)", xlabel="epoch")
    axes[1].set(title="pseudo Dice per epoch (validation fold 0)", xlabel="epoch")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    curves = f"benchmark_{tier}_curves.png"
    fig.savefig(img_dir / curves)
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=80)
    names = [n.replace("nnUNetTrainer", "") or "default" for n in trainers]
    means = [100 * r["metrics"]["dice"]["mean"] for r in trainers.values()]
    sds = [100 * r["metrics"]["dice"]["sd"] for r in trainers.values()]
    ax.bar(names, means, yerr=sds, capsize=4, color="#c0504d")
    for value, label in ((97.61, "published U-Net 97.61"), (99.23, "published RCA-UNet 99.23")):
        ax.axhline(value, ls="--", c="grey", lw=1)
        ax.text(-0.4, value + 0.1, label, fontsize=7, color="grey")
    ax.tick_params(axis="x", labelsize=7)
    ax.set(ylabel="Dice (%)", title=f"held-out 60 BioHit photos, {tier} tier (published splits unknown)",
           ylim=(min(means) - 5, 100))
    fig.tight_layout()
    bars = f"benchmark_{tier}_dice.png"
    fig.savefig(img_dir / bars)
    return [curves, bars]


def _metric(stats: dict, scale: float, worst: str, digits: int = 2) -> str:
    """``mean ± sd (worst)`` of one metric's summary statistics."""
    return (f"{scale * stats['mean']:.{digits}f} ± {scale * stats['sd']:.{digits}f} "
            f"({scale * stats[worst]:.{digits}f})")


def study_table(tier: dict, studies: list[dict]) -> list[str]:
    """Markdown lines: each study's trainers beside the tier's row for the same trainer (same metrics)."""
    if not studies:
        return []
    lines = ["", f"Studies on the same data, split and settings, one thing varied (`--study`; training times "
             "left out: a study may have run beside other work):", "",
             "| study | trainer | budget (epochs × iterations) | Dice | IoU | HD95 | ASSD |",
             "|---|---|---|---|---|---|---|"]

    def row(label: str, name: str, t: dict, budget: dict) -> str:
        m = t["metrics"]
        schedule = f"{budget['epochs']} × {budget['iterations']}" + (
            f", lr {budget['lr']:g}" if budget.get("lr") else "")
        return (f"| {label} | {name} | {schedule} | {_metric(m['dice'], 100, 'min')} | "
                f"{_metric(m['iou'], 100, 'min')} | {_metric(m['hd95'], 1, 'max', 1)} | "
                f"{_metric(m['assd'], 1, 'max')} |")

    reference = tier["trainers"].get("nnUNetTrainerTUNet")
    if reference:
        lines.append(row("(tier, above)", "nnUNetTrainerTUNet", reference, tier["budget"]))
    for st in sorted(studies, key=lambda st: st["study"]):
        lines += [row(f"`{st['study']}`", name, t, st["budget"]) for name, t in st["trainers"].items()
                  if "failed" not in t]
    return lines


def markdown(all_results: list[dict]) -> str:
    lines = ["# Benchmarks", "",
             "Generated by `python benchmarks/biohit_benchmark.py --tier <tier>` from `benchmarks/results/*.json`;",
             "every figure below comes from that run. Held-out set: the 60 `test` cases of",
             "`../shared/data/biohit_split.json` (never trained on), predicted at their original 768×576 and",
             "evaluated with `nnunet-tongue evaluate` (Dice/IoU in %, HD95/ASSD in pixels at 768×576).", ""]
    tiers = [r for r in all_results if "study" not in r]
    studies = [r for r in all_results if "study" in r]
    for r in tiers:
        b = r["budget"]
        res = f"downscaled to longest side {b['max_size']} px for training" if b["max_size"] else "full resolution"
        lines += [f"## {r['tier'].upper()} tier", "",
                  f"- device: {r['device']}{', ' + r['gpu'] if r.get('gpu') else ''} ({r['host']}); {res}; "
                  "nnU-Net default 2d plans: patch "
                  f"{r['patch_size'][0]}×{r['patch_size'][1]}, batch {r['batch_size']}",
                  f"- budget, identical for every trainer: {b['epochs']} epochs × {b['iterations']} iterations "
                  f"({b['epochs'] * b['iterations']} steps), fold 0 of nnU-Net's 5-fold split "
                  "of the 240 training cases",
                  "- segment: no test-time mirroring, default post-processing; time per photo = wall time of "
                  "`nnunet-tongue segment` on the 60 photos (model loading included) / 60"]
        if r.get("resolution_ceiling_dice") and b["max_size"]:
            c = r["resolution_ceiling_dice"]
            lines.append(f"- resolution ceiling: the test masks downscaled to the training resolution and brought back "
                         f"to 768×576 the way `segment` does score Dice {c['mean']:.2f} ± {c['sd']:.2f} (worst "
                         f"{c['min']:.2f}), the most a perfect model can reach at this resolution")
        if b.get("parallel", 1) > 1:
            lines.append(f"- the trainings ran {b['parallel']} at a time on the one {r['device']} device, each with "
                         "its share of the CPU cores for data augmentation, so s / epoch is under that sharing; "
                         "the network step table below times each network alone")
        if b.get("env"):
            lines.append("- environment for the trainings: " + ", ".join(f"`{k}={v}`" for k, v in b["env"].items()))
        busy = [f"{n.replace('nnUNetTrainer', '') or 'default'} {t['train_cpu_cores_busy']:.2f}"
                for n, t in r["trainers"].items() if "train_cpu_cores_busy" in t]
        if busy and r["device"] == "cpu" and b.get("parallel", 1) == 1:
            lines.append("- CPU cores each training kept busy, (user + system time) / wall time, 2.00 = the whole "
                         "machine (trainings run one after another): " + ", ".join(busy))
        gpu_memory = int(any("peak_cuda_memory_MB" in t for t in r["trainers"].values()))
        lines += ["",
                  "Each metric: mean ± sd over the 60 photos, and in brackets the worst case (lowest Dice/IoU, "
                  "highest HD95/ASSD).", "",
                  "| trainer | optimiser | params (M) | Dice | IoU | HD95 | ASSD | s / epoch | s / photo | "
                  "peak RSS train / segment (MB) |" + (" peak GPU memory, training (MB) |" if gpu_memory else ""),
                  "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if gpu_memory else "")]
        for name, t in r["trainers"].items():
            if "failed" in t:  # its log's last lines are in the results JSON
                lines.append(f"| {name} | training failed: {t['failed']} |" + " — |" * (8 + gpu_memory))
                continue
            m = t["metrics"]
            epoch = sorted(t["epoch_s"])[len(t["epoch_s"]) // 2]
            params = f"{t['params_M']:.1f}" if "params_M" in t else "—"
            lines.append(
                f"| {name} | {t.get('optimiser', '—')} | {params} | {_metric(m['dice'], 100, 'min')} | "
                f"{_metric(m['iou'], 100, 'min')} | {_metric(m['hd95'], 1, 'max', 1)} | "
                f"{_metric(m['assd'], 1, 'max')} | {epoch:.0f} | {t['segment_s_per_photo']:.2f} | "
                f"{t['train_peak_rss_MB']} / {t['segment_peak_rss_MB']} |"
                + (f" {t.get('peak_cuda_memory_MB', float('nan')):.0f} |" if gpu_memory else ""))
        lines += [f"\n{note}" for note in r.get("notes", [])]
        lines += study_table(r, [st for st in studies if st["tier"] == r["tier"]])
        lines += ["", f"![training curves](img/benchmark_{r['tier']}_curves.png)", "",
                  f"![Dice per trainer](img/benchmark_{r['tier']}_dice.png)", ""]
        findings = RESULTS / f"{r['tier']}_findings.md"  # hand-written reading of this run, if any
        if findings.exists():
            lines += [findings.read_text().rstrip(), ""]
    for tier, cfg in TIERS.items():
        if tier not in {r["tier"] for r in tiers}:
            resolution = f"longest side {cfg['max_size']} px" if cfg["max_size"] else "full resolution"
            lines += [f"## {tier.upper()} tier", "",
                      f"Not run yet: `python benchmarks/biohit_benchmark.py --tier {tier}` ({cfg['device']}, "
                      f"{resolution}, {cfg['epochs']} epochs × {cfg['iterations']} iterations). "
                      "No figure on this page comes from it."
                      + (" On a GPU machine it runs as part of one prepared command, `benchmarks/device_run.sh` "
                         "([gpu_runs.md](gpu_runs.md))." if cfg["device"] == "cuda" else ""), ""]
    lines += ["## Published results on BioHit", "",
              "Their split protocols are not published, so these are a rough bar, not a like-for-like comparison.", "",
              "| method | source | Dice | mIoU |", "|---|---|---|---|",
              "| U-Net | Sci. Rep. 2025, s41598-025-91823-1, Table 4 | 97.61 | 96.05 |",
              "| RCA-UNet | same table | 99.23 | 98.49 |",
              "| lightweight encoder-decoder | Li et al., IEEE BIBM 2019 | — | 99.15 (IoU) |", ""]
    return "\n".join(lines)


def _study_name(value: str) -> str:
    if not value.replace("-", "").replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(f"{value!r}: use letters, digits, - and _ only (it names files)")
    return value


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tier", choices=TIERS, default="cpu")
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "runs")
    p.add_argument("--trainers", nargs="+", choices=TRAINERS + SGD_VARIANTS + STUDY_TRAINERS,
                   help="default: the tier's list (CPU tier: the four trainers and the SGD variants)")
    p.add_argument("--study", metavar="NAME", type=_study_name,
                   help="run a study on the tier's data: own results folder and results file, not the tier's table")
    p.add_argument("--epochs", type=int, help="epochs instead of the tier's")
    p.add_argument("--iterations", type=int, help="training iterations per epoch instead of the tier's")
    p.add_argument("--val-iterations", type=int, help="validation iterations per epoch instead of the tier's")
    p.add_argument("--lr", type=float, help="initial learning rate instead of each trainer's (in the trainer's name)")
    p.add_argument("--max-size", type=int,
                   help="longest side for training instead of the tier's (needs a fresh --workdir)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="instead of the tier's (a dry run of the GPU tier: cpu)")
    p.add_argument("--compile", action="store_true",
                   help="train with nnU-Net's torch.compile (nnUNet_compile=t; the GPU tier turns it off to save "
                        "start-up time)")
    p.add_argument("--data", type=Path, default=BIOHIT,
                   help="folder with biohit/ and biohit_split.json (default: ../shared/data beside the checkout)")
    p.add_argument("--results-dir", type=Path, default=RESULTS,
                   help="where the results JSON and plots go; docs/benchmarks.md is regenerated only for the default")
    p.add_argument("--docs-only", action="store_true", help="only regenerate docs/benchmarks.md from results")
    p.add_argument("--prepare-only", action="store_true",
                   help="only convert and preprocess the tier's data into --workdir "
                        "(e.g. while the GPU does other work)")
    args = p.parse_args()
    overrides = {key: value for key, value in (("epochs", args.epochs), ("iterations", args.iterations),
                                                ("val_iterations", args.val_iterations), ("lr", args.lr),
                                                ("max_size", args.max_size), ("device", args.device))
                 if value is not None}
    if args.compile:
        overrides["env"] = dict(TIERS[args.tier].get("env", {}), nnUNet_compile="t")
    results_dir = args.results_dir.resolve()
    if overrides and not args.study and results_dir == RESULTS:
        names = ", ".join("--compile" if key == "env" else f"--{key.replace('_', '-')}" for key in overrides)
        p.error(f"{names} change the settings the tier's published table states: use them with "
                "--study NAME, or write elsewhere with --results-dir")
    if args.study and not (args.trainers or overrides):
        p.error("a study varies something: name --trainers and/or a setting such as --epochs")
    if not args.docs_only:
        if not (args.data / "biohit" / "images").is_dir():
            raise SystemExit(f"BioHit data not found at {args.data} (expected {args.data / 'biohit' / 'images'}); "
                             "pass --data")
        if args.prepare_only:
            prepare(args.workdir / args.tier, overrides.get("max_size", TIERS[args.tier]["max_size"]), args.data)
            print(f"prepared {args.workdir / args.tier}")
            return 0
        results = benchmark(args.tier, args.workdir / args.tier, args.trainers or TIERS[args.tier]["trainers"],
                            args.study, overrides, args.data)
        results_dir.mkdir(parents=True, exist_ok=True)
        if args.study:
            name = f"{args.tier}_study_{args.study}.json"
        else:
            results["plots"] = plots(results, REPO / "docs" / "img" if results_dir == RESULTS else results_dir)
            name = f"{args.tier}.json"
        (results_dir / name).write_text(json.dumps(results, indent=1, default=float))
        if results_dir != RESULTS:
            print(f"wrote {results_dir / name}; copy it to {RESULTS} (plots to docs/img) and run --docs-only")
            return 0
    # this benchmark's tiers and studies only (<tier>.json, <tier>_study_<study>.json); other benchmarks share RESULTS
    all_results = [json.loads(f.read_text()) for f in sorted(RESULTS.glob("*.json"))
                   if f.stem.split("_study_")[0] in TIERS]
    if not all_results:
        raise SystemExit(f"no results in {RESULTS}: run a tier first")
    network_speed = RESULTS / "network_speed.md"
    text = markdown(all_results)
    if network_speed.exists():
        text += "\n" + network_speed.read_text()
    (REPO / "docs" / "benchmarks.md").write_text(text)
    print(f"wrote {REPO / 'docs' / 'benchmarks.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
