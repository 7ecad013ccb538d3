"""``nnunet-tongue demo``: the whole job on a built-in synthetic dataset, on CPU, in minutes.

1. writes synthetic tongue photos (JPEG) and masks (0/255 PNG), as a user would have them;
2. ``nnunet-tongue convert`` → ``Dataset501_Tongue`` in nnU-Net's raw format;
3. stock ``nnUNetv2_plan_and_preprocess``;
4. stock ``nnUNetv2_train ... -tr nnUNetTrainerTUNet_5epochs_20its_5val`` (the T-Unet on a short budget);
5. ``nnunet-tongue segment`` on held-out photos (masks, cut-outs, overlays);
6. ``nnunet-tongue evaluate`` against their masks (Dice/IoU/HD95/ASSD, worst-case sheet).

Everything lives under ``--workdir``; nnU-Net's folders are set to sub-folders of it for this run only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

DATASET_ID = 501
TRAINER = "nnUNetTrainerTUNet"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnunet-tongue demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=Path("nnunet_tongue_demo"),
                   help="folder for everything the demo writes (default: ./nnunet_tongue_demo)")
    p.add_argument("--photos", type=int, default=40, help="synthetic training photos (default 40)")
    p.add_argument("--heldout", type=int, default=10, help="synthetic held-out photos (default 10)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    p.add_argument("--iterations", type=int, default=20, help="training iterations per epoch (default 20)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="training/inference device (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --workdir")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = args.workdir.resolve()
    if work.exists():
        if not args.overwrite:
            print(f"nnunet-tongue demo: {work} exists; pass --overwrite to replace it or --workdir for another",
                  file=sys.stderr)
            return 2
        shutil.rmtree(work)
    work.mkdir(parents=True)
    started = time.time()
    log = work / "demo.log"
    from nnunet_tongue.synthetic import write_photo_folder
    from nnunet_tongue.training.budget import budget_trainer_name
    from nnunet_tongue.workspace import CommandFailed, NnUNetWorkspace

    nnunet = NnUNetWorkspace(work / "nnUNet").create()
    trainer = budget_trainer_name(TRAINER, args.epochs, args.iterations, val_iterations=5)

    def run(*command: str) -> None:
        nnunet.run(*command, log=log, echo=True)

    try:
        print(f"[1/6] synthetic tongue photos -> {work / 'photos'}", flush=True)
        photos = write_photo_folder(work / "photos", args.photos, seed=1)
        heldout = write_photo_folder(work / "heldout", args.heldout, seed=2)

        print("[2/6] convert to nnU-Net's raw format", flush=True)
        run("nnunet-tongue", "convert", str(photos), "-o", str(nnunet.raw), "-d", str(DATASET_ID), "--no-progress")

        print("[3/6] plan and preprocess (stock nnU-Net)", flush=True)
        run("nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "-npfp", "2", "-np", "2",
            "--verify_dataset_integrity", "--no_pbar")

        print(f"[4/6] train T-Unet: {args.epochs} epochs x {args.iterations} iterations (stock nnUNetv2_train)",
              flush=True)
        run("nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", trainer, "-device", args.device)
        model = nnunet.results / f"Dataset{DATASET_ID:03d}_Tongue" / f"{trainer}__nnUNetPlans__2d"

        print("[5/6] segment the held-out photos", flush=True)
        segmented = work / "segmented"
        run("nnunet-tongue", "segment", "-i", str(heldout / "images"), "-o", str(segmented), "-m", str(model),
            "-f", "0", "-device", args.device, "--no-progress")

        print("[6/6] evaluate against their masks", flush=True)
        report = work / "evaluation"
        run("nnunet-tongue", "evaluate", "-p", str(segmented / "masks"), "-g", str(heldout / "masks"),
            "-o", str(report), "--images", str(heldout / "images"))
    except CommandFailed as failure:
        print(f"nnunet-tongue demo: {failure}", file=sys.stderr)
        return 1

    from nnunet_tongue.evaluation.report import format_summary

    summary = json.loads((report / "summary.json").read_text())
    print()
    print(format_summary(summary))
    print(f"\nDone in {time.time() - started:.0f} s. Outputs:")
    for label, path in [("trained model", model), ("masks, cut-outs, overlays", segmented),
                        ("evaluation report", report), ("log of every command", log)]:
        print(f"  {label:26s} {path}")
    return 0
