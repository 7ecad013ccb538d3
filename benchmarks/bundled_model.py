"""Train the bundled model, pack it into the package and score it on both test sets.

    python benchmarks/bundled_model.py            # 6,250 training steps, then scoring: 7.3 h of epochs on 2 CPU
        # cores (912-1,074 s per epoch, the cores to itself, 2026-12-05: --repeat 2 below, models.md;
        # resumes where it stopped when run again), or 5 min on a lent
        # GPU: STEPS=bundled in benchmarks/device_run.sh trains it there, benchmarks/device_bundled.py brings it
        # home, this packs and scores it
    python benchmarks/bundled_model.py --score-only
    python benchmarks/bundled_model.py --epochs 40 --iterations 250   # a candidate: another budget (any budget
        # other than the bundled model's 25 x 250 is one), e.g. trained on a lent GPU (benchmarks/device_bundled.py)
  The candidates of docs/models.md, all but the last at 12 steps per epoch (--from-bundled started from the
  bundled model of the day, the 1,536-step one):
    python benchmarks/bundled_model.py --trainer nnUNetTrainerUNet320CoatingAugBalanced --epochs 32 --iterations 12
    python benchmarks/bundled_model.py --epochs 32 --iterations 12 --max-size 256   # the recipe trained at 256 px
    python benchmarks/bundled_model.py --epochs 16 --iterations 12 --max-size 256 --lr 3e-4 --from-bundled
        # the bundled model (its network and weights) fine-tuned on photos at 256 px
    python benchmarks/bundled_model.py --epochs 128 --iterations 12 --from-bundled   # a second training cycle
    python benchmarks/bundled_model.py --epochs 128 --iterations 12 --repeat 2   # the 1,536-step recipe trained again
    python benchmarks/bundled_model.py --repeat 2   # the bundled model's recipe and budget trained again (on CPU)

Steps (each a stock nnU-Net or nnunet-tongue command, echoed and logged under ``--workdir``):
1. the cross-dataset benchmark's preparation (``benchmarks/cross_dataset.py``): BioHit and NTUST converted
   at 192 px with their split files, the two-source dataset (both sources' ``train`` cases only) planned and
   preprocessed by the stock command;
2. ``nnUNetv2_train 513 2d all -tr nnUNetTrainerUNet320CoatingAug_<E>epochs_<I>its_3val_bs<B>``: every
   training case (fold ``all``), the budget and batch in the name (``--from-bundled``: ``-p nnUNetPlansBundledNet
   -pretrained_weights <the bundled model exported>``);
3. the model folder's dataset.json given the size ``segment`` feeds photos at, :data:`SEGMENT_MAX_SIZE`, and
   the final checkpoint packed as float16 safetensors into ``nnunet_tongue/models/bundled/tongue-unet320``
   (:func:`nnunet_tongue.models.packed.pack`);
4. ``nnunet-tongue segment -m <that folder>`` (default settings) and ``nnunet-tongue evaluate`` on each
   source's test photos at their original size, and on close-up crops of them (each test photo cut to a
   square 1.25 times the tongue's extent, so the tongue fills most of the frame, as in a phone close-up);
   the float32 checkpoint segments the same photos to check the float16 masks against it.

Writes the figures into the model's card, ``benchmarks/results/bundled_model.json`` and the table in
``docs/models.md``. A finished training is not repeated; a stopped one resumes from its last epoch when the
same command runs again (budget trainers save a checkpoint after every epoch, and the command passes ``--c``).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

from biohit_benchmark import (BIOHIT as DATA, RESULTS, REPO, epoch_seconds, nnunet_env, resolution_ceiling, run, start,
                             finish)
from cross_dataset import BOTH, SOURCES, dataset_name, docs_sheet, prepare, record_tongue_extent

from nnunet_tongue.conversion import CONVERSION_KEY
from nnunet_tongue.evaluation.metrics import dice
from nnunet_tongue.models.store import BUNDLED_ROOT, DEFAULT_MODEL

TRAINER = "nnUNetTrainerUNet320CoatingAug"
EPOCHS, ITERATIONS, BATCH_SIZE = 25, 250, 11  # the bundled model's budget: 6,250 steps of 11 photos
VAL_ITERATIONS = 3  # validation steps per epoch (nnU-Net's pseudo Dice in the training log)
MAX_SIZE = 192
#: the longest side ``segment`` brings photos to for the bundled model (recorded in its dataset.json): larger than
#: its training photos, chosen on the 137 training photos the recipe's fold-0 model did not train on (models.md)
SEGMENT_MAX_SIZE = 256
DOCS = REPO / "docs" / "models.md"
IMG = REPO / "docs" / "img" / "models"
CLOSE_UP_MARGIN = 1.25
BUNDLED_PLANS = "nnUNetPlansBundledNet"  # --from-bundled: the stock plans with the bundled model's network
CARD = {
    "description": "nnU-Net's PlainConvUNet (at most 320 feature maps per stage, 10.7 M parameters) trained with "
                   "AdamW + warmup and the coating augmentation (photo augmentation plus synthetic white-to-yellow "
                   "tongue coating) on studio (BioHit) and clinical close-up (NTUST) tongue photos; RGB photos of "
                   "an open mouth with the tongue out.",
    "intended_use": "research and tongue-photo analysis (e.g. colour and coating measurements on the tongue "
                    "region, photo triage); not a medical device and not for diagnosis. Check the quality flags "
                    "and the overlay of each photo.",
    "training_data": {
        "BioHit": {"cases": 240, "what": "studio photos 768x576, tongue small in the frame, little coating",
                   "licence": "no licence published upstream; research benchmarking only",
                   "split": "../shared/data/biohit_split.json train cases"},
        "NTUST": {"cases": 441, "what": "clinical close-ups 400x400 with chin rest, many coated tongues",
                  "licence": "MIT (IanMackenzie0909/Tongue-Segmentation)",
                  "split": "../shared/data/ntust_split.json train cases"},
    },
}


def close_ups(workdir: Path, source: str) -> tuple[Path, Path]:
    """Each test photo and its mask cut to a square of CLOSE_UP_MARGIN x the tongue's extent (PNG, lossless)."""
    photos, masks = workdir / f"closeup_photos_{source}", workdir / f"closeup_masks_{source}"
    if masks.is_dir():
        return photos, masks
    photos.mkdir(exist_ok=True)
    staging = masks.with_name(masks.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for gt in sorted((workdir / "fullres" / dataset_name(source) / "labelsTs").glob("*.png")):
        mask = np.asarray(Image.open(gt)) > 0
        photo = np.asarray(Image.open(workdir / f"test_photos_{source}" / f"{gt.stem}.jpg").convert("RGB"))
        ys, xs = np.nonzero(mask)
        side = int(round(CLOSE_UP_MARGIN * max(np.ptp(xs) + 1, np.ptp(ys) + 1)))
        side = min(side, *mask.shape)
        cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
        x0 = int(min(max(0, round(cx - side / 2)), mask.shape[1] - side))
        y0 = int(min(max(0, round(cy - side / 2)), mask.shape[0] - side))
        Image.fromarray(photo[y0:y0 + side, x0:x0 + side]).save(photos / f"{gt.stem}.png")
        Image.fromarray((mask[y0:y0 + side, x0:x0 + side] * 255).astype(np.uint8)).save(staging / gt.name)
    staging.rename(masks)
    return photos, masks


def bundled_tag() -> str:
    """The packed bundled model's name, the budgeted trainer it was trained with and the size it is segmented at
    (from its card): the prefix of its score folders, so that a retrained model, or one fed at another size, is
    never scored from an earlier model's cached masks."""
    card = json.loads((BUNDLED_ROOT / DEFAULT_MODEL / "card.json").read_text())
    size = card.get("input_scale", {}).get("segment_max_size_px")
    return f"{DEFAULT_MODEL}_{card['training']['trainer']}" + (f"_at{size}px" if size else "")


def record_segment_size(model: Path) -> None:
    """Write :data:`SEGMENT_MAX_SIZE` into the model folder's dataset.json, where ``segment`` reads its default."""
    meta_file = model / "dataset.json"
    meta = json.loads(meta_file.read_text())
    meta.setdefault(CONVERSION_KEY, {})["segment_max_size"] = SEGMENT_MAX_SIZE
    meta_file.write_text(json.dumps(meta, indent=1))


def score(workdir: Path, env: dict, tag: str, photos: Path, truth: Path, model: list[str]) -> tuple[dict, Path]:
    seg, report, log = workdir / f"segmented_{tag}", workdir / f"evaluation_{tag}", workdir / "benchmark.log"
    if not (report / "summary.json").exists():
        run(["nnunet-tongue", "segment", "-i", str(photos), "-o", str(seg), *model, "-device", "cpu",
             "--overwrite", "--no-progress"], env, log)
        run(["nnunet-tongue", "evaluate", "-p", str(seg / "masks"), "-g", str(truth), "-o", str(report),
             "--images", str(photos), "--overwrite"], env, log)
    summary = json.loads((report / "summary.json").read_text())
    flags: dict[str, int] = {}
    for line in (seg / "segment.jsonl").read_text().splitlines():
        for flag in json.loads(line).get("flags", []):
            flags[flag] = flags.get(flag, 0) + 1
    return {"n_cases": summary["n_cases"], "metrics": summary["metrics"], "worst_cases": summary["worst_cases"][:5],
            "flags": flags}, seg / "masks"


def train(workdir: Path, data: Path, trainer: str, epochs: int, iterations: int, batch_size: int,
          max_size: int = MAX_SIZE, lr: float | None = None, from_bundled: bool = False,
          repeat: int = 1) -> tuple[Path, dict]:
    """Train ``trainer`` on the two-source dataset (fold ``all``) on that budget unless it is trained (resumes a
    stopped training); returns the model folder and the card's training record. ``from_bundled``: the bundled
    model's network (plans :data:`BUNDLED_PLANS`) started from its weights instead of the planned one from scratch.
    ``repeat`` N > 1: the same training again, into its own results folder (nnU-Net seeds nothing, so it differs
    by chance alone)."""
    import torch

    from nnunet_tongue.training.budget import budget_trainer_name

    prepare(workdir, max_size, data)
    results = workdir / ("results" if repeat == 1 else f"results_repeat{repeat}")
    env = nnunet_env(workdir, nnUNet_results=str(results))
    budgeted = budget_trainer_name(trainer, epochs, iterations, VAL_ITERATIONS, lr=lr, batch_size=batch_size)
    dataset = dataset_name("both")
    plans = bundled_plans(workdir) if from_bundled else "nnUNetPlans"
    model = results / dataset / f"{budgeted}__{plans}__2d"
    checkpoint = model / "fold_all" / "checkpoint_final.pth"
    command = ["nnUNetv2_train", str(BOTH[0]), "2d", "all", "-tr", budgeted, "-device", "cpu"]
    command += ["-p", plans] if from_bundled else []
    # --c resumes a stopped run (or starts one); nnU-Net refuses it beside -pretrained_weights, a first start's flag
    first = ["-pretrained_weights", str(export_bundled(workdir, env))] if from_bundled else ["--c"]
    if not checkpoint.exists():
        log = workdir / f"train_{dataset}_{budgeted}_{plans}_all{'' if repeat == 1 else f'_repeat{repeat}'}.log"
        resume = (model / "fold_all" / "checkpoint_latest.pth").exists()
        finish(*start(command + (["--c"] if resume else first), env, log), log)
    logging = torch.load(checkpoint, map_location="cpu", weights_only=False)["logging"]
    record = {"command": " ".join(command + first).replace(f"{REPO}/", ""), "host": "2 CPU cores"}
    if (model / "fold_all" / "device.json").exists():  # trained on a lent GPU (benchmarks/device_bundled.py)
        device = json.loads((model / "fold_all" / "device.json").read_text())
        record = {"command": device["command"], "host": device["host"]}
    return model, {**record, "trainer": budgeted,
                   "epochs": epochs, "iterations_per_epoch": iterations, "batch_size": batch_size,
                   "training_photos_max_size_px": max_size, "train_wall_s": round(sum(epoch_seconds(logging))),
                   **({"repeat": repeat} if repeat > 1 else {}),
                   "date": date.fromtimestamp(logging["epoch_end_timestamps"][-1]).isoformat()}


def export_bundled(workdir: Path, env: dict) -> Path:
    """The packed bundled model written out as a stock nnU-Net model folder; returns its checkpoint."""
    exported = workdir / f"pretrained_{bundled_tag()}"
    if not exported.exists():
        run(["nnunet-tongue", "models", "export", DEFAULT_MODEL, "-o", str(exported)], env, workdir / "benchmark.log")
    return next(exported.glob("*/*/fold_all/checkpoint_final.pth"))


def bundled_plans(workdir: Path) -> str:
    """Writes :data:`BUNDLED_PLANS` beside the two-source dataset's stock plans: those plans (same preprocessed
    data) with the bundled model's network, so that its weights load at this training size; the patch stays
    the planned one."""
    folder = workdir / "preprocessed" / dataset_name("both")
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    network = json.loads((BUNDLED_ROOT / DEFAULT_MODEL / "plans.json").read_text())["configurations"]["2d"]
    config = plans["configurations"]["2d"]
    divisor = np.prod(network["architecture"]["arch_kwargs"]["strides"], axis=0)
    if any(size % int(d) for size, d in zip(config["patch_size"], divisor)):
        raise SystemExit(f"the planned patch {config['patch_size']} is not a multiple of the bundled network's "
                         f"downsampling {divisor.tolist()}")
    config["architecture"] = network["architecture"]
    plans["plans_name"] = BUNDLED_PLANS
    (folder / f"{BUNDLED_PLANS}.json").write_text(json.dumps(plans, indent=1))
    return BUNDLED_PLANS


def candidate(args: argparse.Namespace) -> int:
    """Train, pack and score a candidate recipe beside the bundled model (see ``--trainer``)."""
    from nnunet_tongue.models.packed import pack

    workdir = args.workdir
    model, training = train(workdir, args.data, args.trainer, args.epochs, args.iterations, args.batch_size,
                            args.max_size, args.lr, args.from_bundled, args.repeat)
    env = nnunet_env(workdir, nnUNet_results=str(workdir / "results"))
    options = ("" if args.max_size == MAX_SIZE else f" --max-size {args.max_size}") + (
        f" --lr {args.lr:g}" if args.lr else "") + (" --from-bundled" if args.from_bundled else "") + (
        f" --repeat {args.repeat}" if args.repeat > 1 else "")
    name, fed_at = candidate_name(args, training["trainer"])
    packed = workdir / "candidates" / name
    if not (packed / "card.json").exists():
        extent = record_tongue_extent(model, workdir / "raw" / dataset_name("both"))
        if fed_at:
            record_segment_size(model)
        staging = packed.with_name(packed.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        pack(model, staging, folds=["all"], dtype="float16", trainer=args.trainer,
             card=dict(CARD, name=name, training=training,
                       input_scale={"photos_downscaled_to_px": args.max_size, "training_tongue_extent_px": extent,
                                    **({"segment_max_size_px": fed_at} if fed_at else {})}))
        staging.rename(packed)
    command = f"python benchmarks/bundled_model.py --trainer {args.trainer} --epochs {args.epochs}" + (
        "" if args.iterations == ITERATIONS else f" --iterations {args.iterations}")
    results: dict = {"trainer": training["trainer"], "date": date.today().isoformat(), "training": training,
                     "command": command + options, "segment_max_size_px": fed_at or args.max_size,
                     "test": {}, "close_up": {}, "resolution_ceiling": {}, "vs_bundled": {}}
    for source in SOURCES:
        truth, photos = workdir / "fullres" / dataset_name(source) / "labelsTs", workdir / f"test_photos_{source}"
        tag, bundled = f"candidate_{name}_{source}", f"{bundled_tag()}_{source}"
        results["test"][source], _ = score(workdir, env, tag, photos, truth, ["-m", str(packed)])
        score(workdir, env, bundled, photos, truth, ["-m", str(BUNDLED_ROOT / DEFAULT_MODEL)])
        results["vs_bundled"][source] = paired_difference(workdir, tag, bundled)
        results["close_up"][source], _ = score(workdir, env, f"{tag}_closeup", *close_ups(workdir, source),
                                               ["-m", str(packed)])
        results["resolution_ceiling"][source] = resolution_ceiling(workdir / "raw" / dataset_name(source) / "labelsTs",
                                                                    truth)
        print(json.dumps({source: {k: results[k][source]["metrics"]["dice"]["mean"] for k in ("test", "close_up")}
                          | {"vs_bundled": results["vs_bundled"][source]}}))
    out = RESULTS / f"bundled_candidate_{name}.json"
    out.write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {out}")
    return 0


def candidate_name(args: argparse.Namespace, trainer: str) -> tuple[str, int | None]:
    """A candidate's name (its packed folder, score folders and results file) and the size ``segment`` feeds it at
    when not its training size. Trained at the bundled model's size, a candidate is fed as the bundled model is
    (:data:`SEGMENT_MAX_SIZE`), so that the two compare like for like; the size is in the name, so that no
    candidate is scored from masks made at another size."""
    fed_at = SEGMENT_MAX_SIZE if args.max_size == MAX_SIZE else None
    name = trainer + ("" if args.max_size == MAX_SIZE else f"_{args.max_size}px") + (
        f"_from_{DEFAULT_MODEL}" if args.from_bundled else "") + (
        f"_repeat{args.repeat}" if args.repeat > 1 else "") + (f"_at{fed_at}px" if fed_at else "")
    return name, fed_at


def is_candidate(args: argparse.Namespace) -> bool:
    """Whether the command line asks for anything but the bundled model's own recipe and budget: a candidate,
    packed and scored beside the bundled model, never in its place."""
    return ((args.epochs, args.iterations, args.batch_size) != (EPOCHS, ITERATIONS, BATCH_SIZE)
            or args.trainer != TRAINER or args.max_size != MAX_SIZE or bool(args.lr) or args.from_bundled
            or args.repeat > 1)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=EPOCHS, help="another budget makes a candidate")
    p.add_argument("--iterations", type=int, default=ITERATIONS, help="steps per epoch")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--workdir", type=Path, help="default: benchmarks/runs/cross_dataset/cpu (cpu_<N>px for another "
                                                "--max-size)")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--score-only", action="store_true", help="score the bundled model as it is (no training)")
    p.add_argument("--trainer", default=TRAINER,
                   help=f"a candidate recipe (default: the bundled model's, {TRAINER}): trained the same way, packed "
                        "under WORKDIR/candidates and scored on both test sets (with the per-photo difference to "
                        "the bundled model on the same photos) and their close-up crops into "
                        "benchmarks/results/bundled_candidate_<trainer>.json; the bundled model, its card and the "
                        "docs are left as they are")
    p.add_argument("--max-size", type=int, default=MAX_SIZE,
                   help=f"train on photos downscaled to N px on their longest side (default {MAX_SIZE}, the bundled "
                        "model's); another size makes a candidate, as --trainer does")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the trainer's); makes a candidate")
    p.add_argument("--from-bundled", action="store_true",
                   help="start from the bundled model (its network and weights, nnU-Net's -pretrained_weights) "
                        "instead of from scratch: fine-tuning, e.g. at another --max-size; makes a candidate")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="the N-th training of the same recipe (N > 1), into WORKDIR/results_repeatN: the spread "
                        "between trainings; makes a candidate")
    return p


def main() -> int:
    p = parser()
    args = p.parse_args()
    if args.repeat < 1:
        p.error(f"--repeat counts trainings from 1, got {args.repeat}")
    if args.workdir is None:
        tier = "cpu" if args.max_size == MAX_SIZE else f"cpu_{args.max_size}px"
        args.workdir = REPO / "benchmarks" / "runs" / "cross_dataset" / tier
    if is_candidate(args):
        if args.score_only:
            p.error("--score-only scores the bundled model; a candidate is scored after its training")
        return candidate(args)
    from nnunet_tongue.models.packed import pack

    workdir = args.workdir
    dataset = dataset_name("both")
    bundled = BUNDLED_ROOT / DEFAULT_MODEL
    env = nnunet_env(workdir, nnUNet_results=str(workdir / "results"))
    if args.score_only:
        prepare(workdir, MAX_SIZE, args.data)
        card = json.loads((bundled / "card.json").read_text())
        model = workdir / "results" / dataset / f"{card['training']['trainer']}__nnUNetPlans__2d"
    else:
        model, training = train(workdir, args.data, TRAINER, args.epochs, args.iterations, args.batch_size)
        extent = record_tongue_extent(model, workdir / "raw" / dataset)
        record_segment_size(model)
        card = dict(CARD, training=dict(training, command=f"python benchmarks/bundled_model.py (trained by: "
                                                                 f"{training['command']})"),
                    input_scale={"photos_downscaled_to_px": MAX_SIZE, "segment_max_size_px": SEGMENT_MAX_SIZE,
                                 "training_tongue_extent_px": extent})
        staging = bundled.with_name(bundled.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        pack(model, staging, folds=["all"], dtype="float16", trainer=TRAINER, card=dict(card, name=DEFAULT_MODEL))
        shutil.rmtree(bundled, ignore_errors=True)
        staging.rename(bundled)
        print(f"packed {bundled} ({sum(f.stat().st_size for f in bundled.iterdir()) / 2**20:.1f} MB)")

    tag = bundled_tag()
    results: dict = {"model": DEFAULT_MODEL, "date": date.today().isoformat(), "test": {}, "mirrored": {},
                     "close_up": {}, "float16_vs_float32": {}, "resolution_ceiling": {},
                     "resolution_ceiling_segment": {}}
    for source in SOURCES:
        photos = workdir / f"test_photos_{source}"
        truth = workdir / "fullres" / dataset_name(source) / "labelsTs"
        results["test"][source], half = score(workdir, env, f"{tag}_{source}", photos, truth, ["-m", str(bundled)])
        results["mirrored"][source], _ = score(workdir, env, f"{tag}_mirrored_{source}", photos, truth,
                                               ["-m", str(bundled), "--mirroring"])
        results["resolution_ceiling"][source] = resolution_ceiling(workdir / "raw" / dataset_name(source) / "labelsTs",
                                                                    truth)
        results["resolution_ceiling_segment"][source] = resolution_ceiling(SEGMENT_MAX_SIZE, truth)
        _, full = score(workdir, env, f"{tag}_fp32_{source}", photos, truth, ["-m", str(model), "-f", "all"])
        agreement = [dice(np.asarray(Image.open(a)) > 0, np.asarray(Image.open(full / a.name)) > 0)
                     for a in sorted(half.glob("*.png"))]
        results["float16_vs_float32"][source] = {"n": len(agreement), "min_dice": float(min(agreement)),
                                                 "mean_dice": float(np.mean(agreement))}
        crops, crop_truth = close_ups(workdir, source)
        results["close_up"][source], _ = score(workdir, env, f"{tag}_closeup_{source}", crops, crop_truth,
                                               ["-m", str(bundled)])
        print(json.dumps({source: {k: results[k][source]["metrics"]["dice"]["mean"] for k in ("test", "close_up")}}))
        sheet = workdir / f"evaluation_{tag}_{source}" / "worst_cases.png"
        if sheet.exists():
            results["test"][source]["worst_cases_jpg"] = f"img/models/{docs_sheet(sheet, f'bundled_{source}', IMG)}"
    card_file = bundled / "card.json"
    card = json.loads(card_file.read_text())
    card["figures"] = {"date": results["date"], "command": "python benchmarks/bundled_model.py",
                       "test": {s: {"n_cases": r["n_cases"], "dice": r["metrics"]["dice"]}
                                for s, r in results["test"].items()},
                       "close_up_crops": {s: {"n_cases": r["n_cases"], "dice": r["metrics"]["dice"]}
                                          for s, r in results["close_up"].items()}}
    card_file.write_text(json.dumps(card, indent=2))
    results["card"] = {k: card[k] for k in ("training", "weights")}
    (RESULTS / "bundled_model.json").write_text(json.dumps(results, indent=1, default=float))
    DOCS.write_text(_replace_table(DOCS.read_text(), markdown(results), "bundled-model-figures"))
    print(f"wrote {RESULTS / 'bundled_model.json'} and the table in {DOCS}")
    return 0


def report_per_case(report: Path) -> dict[str, dict[str, float]]:
    """The per-photo metrics of an ``nnunet-tongue evaluate`` report folder: case -> {dice, iou, hd95, ...}."""
    with open(report / "per_case.csv", newline="") as f:
        return {row.pop("case"): {k: float(v) for k, v in row.items()} for row in csv.DictReader(f)}


def report_dice(report: Path) -> dict[str, float]:
    """Dice (%) per photo of an ``nnunet-tongue evaluate`` report folder."""
    return {case: 100 * row["dice"] for case, row in report_per_case(report).items()}


def per_case(workdir: Path, tag: str) -> dict[str, dict[str, float]]:
    """The per-photo metrics of an evaluation written by :func:`score`: case -> {dice, iou, hd95, ...}."""
    return report_per_case(workdir / f"evaluation_{tag}")


def dice_per_case(workdir: Path, tag: str) -> dict[str, float]:
    """Dice (%) per photo of an evaluation written by :func:`score`."""
    return report_dice(workdir / f"evaluation_{tag}")


def paired_difference(workdir: Path, tag: str, reference: str) -> dict:
    """Per-photo Dice of ``tag`` minus that of ``reference`` on the same test photos (both scored by :func:`score`):
    mean and its standard error in Dice points (%), and how many photos each model scored higher on."""
    ours, theirs = dice_per_case(workdir, tag), dice_per_case(workdir, reference)
    if ours.keys() != theirs.keys():
        raise SystemExit(f"evaluation_{tag} and evaluation_{reference} scored different photos")
    return {"reference": reference, **paired(ours, theirs)}


def paired(ours: dict[str, float], theirs: dict[str, float]) -> dict:
    """Per-photo Dice (%) of ``ours`` minus ``theirs`` on the same photos: mean and its standard error in Dice
    points, and how many photos each scored higher on."""
    diff = np.array([ours[case] - theirs[case] for case in sorted(ours)])
    return {"n": len(diff), "mean_dice_points": round(float(diff.mean()), 3),
            "standard_error": round(float(diff.std(ddof=1) / np.sqrt(len(diff))), 3),
            "photos_higher": int((diff > 0).sum()), "photos_lower": int((diff < 0).sum())}


def _row(name: str, scored: dict) -> str:
    m = scored["metrics"]
    flags = ", ".join(f"{k} {v}" for k, v in sorted(scored["flags"].items())) or "none"
    return (f"| {name} | {scored['n_cases']} | {100 * m['dice']['mean']:.2f} ± {100 * m['dice']['sd']:.2f} | "
            f"{100 * m['dice']['min']:.2f} | {100 * m['iou']['mean']:.2f} | {m['hd95']['mean']:.1f} | "
            f"{m['assd']['mean']:.2f} | {flags} |")


def markdown(results: dict) -> str:
    lines = ["| test photos | n | Dice % (mean ± sd) | worst Dice % | IoU % | HD95 px | ASSD px | "
             "quality flags raised |",
             "|---|---|---|---|---|---|---|---|"]
    for source, name in (("biohit", "BioHit test"), ("ntust", "NTUST test")):
        lines.append(_row(name, results["test"][source]))
    for source, name in (("biohit", "BioHit test, close-up crops"), ("ntust", "NTUST test, close-up crops")):
        lines.append(_row(name, results["close_up"][source]))
    for source, name in (("biohit", "BioHit test, test-time mirroring"), ("ntust", "NTUST test, test-time mirroring")):
        lines.append(_row(name, results["mirrored"][source]))
    agreement = "; ".join(f"{s}: min {100 * a['min_dice']:.3f} %, mean {100 * a['mean_dice']:.3f} % "
                          f"over {a['n']} photos"
                          for s, a in results["float16_vs_float32"].items())
    ceiling = {size: "; ".join(f"{s}: {c['mean']:.2f} ± {c['sd']:.2f} (worst {c['min']:.2f})"
                               for s, c in results[key].items())
               for size, key in ((MAX_SIZE, "resolution_ceiling"), (SEGMENT_MAX_SIZE, "resolution_ceiling_segment"))}
    lines += ["", f"float16 (shipped) vs float32 masks, Dice: {agreement}.", "",
              "Resolution ceiling, Dice % (the test masks downscaled and brought back the way `segment` does: the "
              f"best a perfect model can score at that scale): at the size `segment` feeds the model, "
              f"{SEGMENT_MAX_SIZE} px, {ceiling[SEGMENT_MAX_SIZE]}; at the training size, {MAX_SIZE} px, "
              f"{ceiling[MAX_SIZE]}.", ""]
    lines += [f"![worst {name}](" + results["test"][source]["worst_cases_jpg"] + ")"
              for source, name in (("biohit", "BioHit test cases"), ("ntust", "NTUST test cases"))
              if "worst_cases_jpg" in results["test"][source]]
    lines += ["",
              f"Measured {results['date']} with `python benchmarks/bundled_model.py` "
              f"(training: {results['card']['training']['train_wall_s'] / 60:.0f} min on "
              f"{results['card']['training']['host']})."]
    return "\n".join(lines)


def _replace_table(page: str, table: str, block: str) -> str:
    """``page`` with the text between ``<!-- block -->`` and ``<!-- /block -->`` replaced by ``table``."""
    begin, end = f"<!-- {block} -->", f"<!-- /{block} -->"
    if begin not in page:
        raise SystemExit(f"{DOCS} has no {begin} ... {end} block for the table")
    head, rest = page.split(begin, 1)
    return f"{head}{begin}\n{table}\n{end}{rest.split(end, 1)[1]}"


if __name__ == "__main__":
    started = time.time()
    code = main()
    print(f"done in {time.time() - started:.0f} s", file=sys.stderr)
    sys.exit(code)
