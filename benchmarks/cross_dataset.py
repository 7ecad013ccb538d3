"""Cross-dataset benchmark: train on BioHit, on NTUST and on both; score every model on both test sets.

    python benchmarks/cross_dataset.py                       # CPU tier, every trainer x every training set
    python benchmarks/cross_dataset.py --trainers nnUNetTrainerTUNet --train-on biohit
    python benchmarks/cross_dataset.py --trainers nnUNetTrainerTUNet --train-on biohit --repeat 2   # a 2nd training
    python benchmarks/cross_dataset.py --tier cpu_long --trainers nnUNetTrainerUNet320CoatingAug   # 384 steps
    python benchmarks/cross_dataset.py --tier gpu            # GPU tier: original resolution, 1,200 steps, batch 12
    python benchmarks/cross_dataset.py --docs-only           # regenerate docs/cross_dataset.md

Steps (each a stock nnU-Net or nnunet-tongue command, echoed and logged under ``--workdir``):
1. ``nnunet-tongue convert`` each source with its split file (``../shared/data/*_split.json``), downscaled to
   ``--max-size`` for training, and once more at full resolution for the test ground truth; a third raw
   dataset holds both sources' training cases (ids prefixed ``biohit_`` / ``ntust_``);
2. ``nnUNetv2_plan_and_preprocess`` for the three datasets;
3. ``nnUNetv2_train <dataset> 2d 0 -tr <trainer>_<E>epochs_<I>its_<V>val_bs<B>``: the same budget AND batch for
   every training (nnU-Net would plan a larger batch for a larger dataset);
4. ``nnunet-tongue segment`` on each source's test photos at their original size (BioHit 768×576, NTUST
   400×400), default settings, once as it is (``rescaled``: a second pass brings a tongue outside the training
   tongues' size range to their median size) and once with ``--no-rescale`` (``single_pass``);
5. ``nnunet-tongue evaluate`` against the original test masks.

Writes ``benchmarks/results/cross_dataset_<tier>.json`` (merged with earlier runs of other cells),
worst-case sheets under ``docs/img/cross_dataset/`` and regenerates ``docs/cross_dataset.md`` (GPU tier:
``docs/cross_dataset_gpu.md``), with ``benchmarks/results/cross_dataset_<tier>_findings.md`` appended. A finished
training or evaluation is not repeated when the command runs again; a stopped training resumes from its last
epoch (``--c``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import date
from pathlib import Path

from biohit_benchmark import (BIOHIT as DATA, RESULTS, REPO, CommandFailed, epoch_seconds, finish, nnunet_env, run,
                             start, training_summary)

from nnunet_tongue.conversion import CONVERSION_KEY
from nnunet_tongue.conversion.output import measure_tongue_extent

#: source -> (dataset id, dataset name, split file); "both" holds the training cases of every source
SOURCES = {"biohit": (511, "BioHit", "biohit_split.json"), "ntust": (512, "NTUST", "ntust_split.json")}
#: how segment is run: name -> its options
SEGMENT_VARIANTS = {"rescaled": [], "single_pass": ["--no-rescale"]}
BOTH = (513, "BioHitNTUST")
TRAIN_SETS = [*SOURCES, "both"]
#: the T-Unet, with photo augmentation, with synthetic coating on top of it, and the two controls: without its
#: transformer; nnU-Net's network with AdamW; that network with the coating augmentation, and 320 wide (the
#: bundled model's recipe)
TRAINERS = ["nnUNetTrainerTUNet", "nnUNetTrainerTUNetPhotoAug", "nnUNetTrainerTUNetCoatingAug",
            "nnUNetTrainerTUNetNoTransformer", "nnUNetTrainerAdamW", "nnUNetTrainerAdamWCoatingAug",
            "nnUNetTrainerUNet320CoatingAug"]
#: budgets: the CPU tier fits the 2-core machine (192 steps); ``cpu_long`` is the same at 384 steps, the budget of
#: the single-source baselines this benchmark started from, for the recipes that lead at 192 (it shares the CPU
#: tier's prepared data: ``tier_workdir``); the GPU tier trains at the photos' own resolution, 1,200 steps
TIERS = {"cpu": {"max_size": 192, "epochs": 16, "iterations": 12, "val_iterations": 3, "batch_size": 11,
                 "device": "cpu"},
         "cpu_long": {"max_size": 192, "epochs": 32, "iterations": 12, "val_iterations": 3, "batch_size": 11,
                      "device": "cpu"},
         "gpu": {"max_size": None, "epochs": 24, "iterations": 50, "val_iterations": 5, "batch_size": 12,
                 "device": "cuda"}}
#: the page each tier writes
DOCS = {"cpu": REPO / "docs" / "cross_dataset.md", "cpu_long": REPO / "docs" / "cross_dataset_cpu_long.md",
        "gpu": REPO / "docs" / "cross_dataset_gpu.md"}
IMG = REPO / "docs" / "img" / "cross_dataset"


def dataset_name(train_on: str) -> str:
    number, name = (SOURCES[train_on][:2] if train_on in SOURCES else BOTH)
    return f"Dataset{number}_{name}"


def convert_source(workdir: Path, root: Path, source: str, data: Path, max_size: int | None = None) -> Path:
    """``nnunet-tongue convert`` of one source with its split file into ``root`` (downscaled to ``max_size``, or at
    full resolution), unless it is there; returns the dataset folder."""
    number, name, split = SOURCES[source]
    folder = root / dataset_name(source)
    if not folder.exists():
        size = ["--max-size", str(max_size)] if max_size else []
        run(["nnunet-tongue", "convert", str(data / source), "-o", str(root), "-d", str(number), "-n", name,
             "--split-json", str(data / split), "--no-progress", *size], nnunet_env(workdir), workdir / "benchmark.log")
    return folder


def prepare(workdir: Path, max_size: int | None, data: Path) -> None:
    """Convert both sources (training resolution and full resolution), assemble the two-source dataset and run
    the stock plan and preprocess, unless ``workdir`` already holds them."""
    workdir.mkdir(parents=True, exist_ok=True)
    log, env = workdir / "benchmark.log", nnunet_env(workdir)
    raw = workdir / "raw"
    for source, (number, name, split) in SOURCES.items():
        convert_source(workdir, raw, source, data, max_size)
        convert_source(workdir, workdir / "fullres", source, data)
        photos = workdir / f"test_photos_{source}"
        photos.mkdir(exist_ok=True)
        for case in json.loads((data / split).read_text())["test"]:
            link = photos / f"{case}.jpg"
            if not link.exists():
                link.symlink_to((data / source / "images" / f"{case}.jpg").resolve())
    both = raw / dataset_name("both")
    if not both.exists():
        staging = both.with_name(both.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        total = 0
        for source in SOURCES:
            single = raw / dataset_name(source)
            for folder in ("imagesTr", "labelsTr"):
                (staging / folder).mkdir(parents=True, exist_ok=True)
                for f in sorted((single / folder).iterdir()):
                    (staging / folder / f"{source}_{f.name}").symlink_to(f.resolve())
            total += len(list((single / "labelsTr").iterdir()))
        meta = json.loads((raw / dataset_name("biohit") / "dataset.json").read_text())
        meta.update(numTraining=total, name=BOTH[1])
        meta[CONVERSION_KEY]["tongue_extent_px"] = measure_tongue_extent(staging / "labelsTr")
        (staging / "dataset.json").write_text(json.dumps(meta, indent=1))
        staging.rename(both)
    if not (workdir / "preprocessed" / dataset_name("both")).exists():
        processes = str(min(4, os.cpu_count() or 1))
        ids = [str(SOURCES[s][0]) for s in SOURCES] + [str(BOTH[0])]
        run(["nnUNetv2_plan_and_preprocess", "-d", *ids, "-c", "2d", "-npfp", processes, "-np", processes,
             "--verify_dataset_integrity", "--no_pbar"], env, log)


def record_tongue_extent(model: Path, raw_dataset: Path) -> dict:
    """The training tongues' size in the model's dataset.json, as convert (0.2) records it (datasets converted
    earlier lack it: measured from the raw labels then); returns it."""
    meta_file = model / "dataset.json"
    meta = json.loads(meta_file.read_text())
    if not (meta.get(CONVERSION_KEY) or {}).get("tongue_extent_px"):
        meta.setdefault(CONVERSION_KEY, {})["tongue_extent_px"] = measure_tongue_extent(raw_dataset / "labelsTr")
        meta_file.write_text(json.dumps(meta, indent=1))
    return meta[CONVERSION_KEY]["tongue_extent_px"]


def cell_key(trainer: str, train_on: str, repeat: int = 1) -> str:
    """The cell's key in the results file: ``trainer|train_on``, with ``|repeatN`` for the N-th training."""
    return f"{trainer}|{train_on}" + (f"|repeat{repeat}" if repeat > 1 else "")


def tier_workdir(tier: str) -> str:
    """The run folder a tier works in: that of the first tier training at the same resolution, whose converted
    and preprocessed data it reuses."""
    return next(t for t, cfg in TIERS.items() if cfg["max_size"] == TIERS[tier]["max_size"])


def sheet_name(tier: str, trainer: str, train_on: str, source: str, repeat: int = 1) -> str:
    """The docs name of a cell's worst-case sheet: tiers other than ``cpu`` are prefixed and an N-th training is
    suffixed ``_repeatN``, so that no tier's or training's sheets replace another's."""
    return (("" if tier == "cpu" else f"{tier}_") + f"{trainer}_{train_on}_on_{source}"
            + (f"_repeat{repeat}" if repeat > 1 else ""))


def cell_model(workdir: Path, budgeted: str, train_on: str, repeat: int = 1) -> Path:
    """The model folder of a cell's ``repeat``-th training (``budgeted``: the budget trainer's name)."""
    results = workdir / ("results" + (f"_repeat{repeat}" if repeat > 1 else ""))
    return results / dataset_name(train_on) / f"{budgeted}__nnUNetPlans__2d"


def cell_tag(budgeted: str, train_on: str, repeat: int, source: str, variant: str = "rescaled") -> str:
    """The name of a cell's masks and evaluation on one source's test photos (``segmented_<tag>``,
    ``evaluation_<tag>``) for one way of running segment (:data:`SEGMENT_VARIANTS`)."""
    suffix = f"_repeat{repeat}" if repeat > 1 else ""
    return f"{dataset_name(train_on)}_{budgeted}{suffix}_{source}_{variant}"


def cell(workdir: Path, tier: str, trainer: str, train_on: str, repeat: int = 1) -> dict:
    """Train ``trainer`` on ``train_on`` (unless done) and score it on every source's test set. ``repeat`` N > 1
    is an N-th identical training (nnU-Net seeds nothing: other initial weights and batches), in its own
    results folder."""
    from nnunet_tongue.training.budget import budget_trainer_name

    cfg = TIERS[tier]
    budgeted = budget_trainer_name(trainer, cfg["epochs"], cfg["iterations"], cfg["val_iterations"],
                                   batch_size=cfg["batch_size"])
    dataset = dataset_name(train_on)
    suffix = f"_repeat{repeat}" if repeat > 1 else ""
    model = cell_model(workdir, budgeted, train_on, repeat)
    env = nnunet_env(workdir, nnUNet_results=str(model.parents[1]))  # its results[_repeatN] folder
    timing = workdir / f"train_{dataset}_{budgeted}{suffix}.json"
    if not timing.exists():  # --c: a stopped training resumes from its last epoch
        log = workdir / f"train_{dataset}_{budgeted}{suffix}.log"
        done = [c for c in ("checkpoint_final.pth", "checkpoint_latest.pth") if (model / "fold_0" / c).exists()]
        earlier_s = epochs_done_s(model / "fold_0" / done[0]) if done else 0.0  # the one --c resumes from
        wall, rss, cores = finish(*start(["nnUNetv2_train", dataset.split("_")[0][7:], "2d", "0", "-tr", budgeted,
                                          "-device", cfg["device"], "--c"], env, log), log)
        timing.write_text(json.dumps([wall + earlier_s, rss, cores]))
    train_s, train_rss, _ = json.loads(timing.read_text())
    result = {"trainer": trainer, "budget_trainer": budgeted, "train_on": train_on, "repeat": repeat,
              "train_wall_s": train_s,
              "train_peak_rss_MB": train_rss, **training_summary(model), "test": {}}
    result["training_tongue_extent_px"] = record_tongue_extent(model, workdir / "raw" / dataset)
    for variant, options in SEGMENT_VARIANTS.items():
        for source in SOURCES:
            tag = cell_tag(budgeted, train_on, repeat, source, variant)
            seg, report = workdir / f"segmented_{tag}", workdir / f"evaluation_{tag}"
            photos = workdir / f"test_photos_{source}"
            gt = workdir / "fullres" / dataset_name(source) / "labelsTs"
            log = workdir / "benchmark.log"
            if not (report / "summary.json").exists():
                run(["nnunet-tongue", "segment", "-i", str(photos), "-o", str(seg), "-m", str(model), "-f", "0",
                     "-device", cfg["device"], "--overwrite", "--no-progress", *options], env, log)
                run(["nnunet-tongue", "evaluate", "-p", str(seg / "masks"), "-g", str(gt), "-o", str(report),
                     "--images", str(photos), "--overwrite"], env, log)
            summary = json.loads((report / "summary.json").read_text())
            rescaled = [json.loads(line).get("rescale_factor", 1.0) for line in
                        (seg / "segment.jsonl").read_text().splitlines()]
            scored = {"metrics": summary["metrics"], "worst_cases": summary["worst_cases"][:5],
                      "n_cases": summary["n_cases"], "n_rescaled": sum(f != 1.0 for f in rescaled)}
            sheet = report / "worst_cases.png"
            if sheet.exists() and variant == "rescaled" and source != train_on:  # the page's sheets
                scored["worst_cases_png"] = (
                    f"img/cross_dataset/{docs_sheet(sheet, sheet_name(tier, trainer, train_on, source, repeat))}")
            result.setdefault("test" if variant == "rescaled" else f"test_{variant}", {})[source] = scored
    return result


def epochs_done_s(checkpoint: Path) -> float:
    """Seconds of the epochs a stopped training finished, from its checkpoint: added to the resumed run's wall
    time, so that a cell's training time counts every epoch once (the interrupted epoch is not counted)."""
    import torch

    log = torch.load(checkpoint, map_location="cpu", weights_only=False)["logging"]
    return float(sum(epoch_seconds(log)))


def docs_sheet(sheet: Path, name: str, folder: Path = IMG) -> str:
    """A worst-case sheet, 1000 px wide as a JPEG in ``folder``, for the docs (the full-size PNG stays in the
    run folder); returns the file name."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(sheet) as im:
        im = im.convert("RGB")
        im.resize((1000, round(im.height * 1000 / im.width)), Image.Resampling.LANCZOS).save(
            folder / f"{name}.jpg", quality=80)
    return f"{name}.jpg"


def _dice(stats: dict) -> str:
    return f"{100 * stats['mean']:.2f} ± {100 * stats['sd']:.2f} (min {100 * stats['min']:.2f})"


def _row_label(c: dict) -> str:
    return c["train_on"] + (f", training {c['repeat']}" if c.get("repeat", 1) > 1 else "")


def _spread(repeats: list[dict]) -> str:
    """Each training's mean Dice per test set and their range."""
    parts = []
    for s in SOURCES:
        means = [100 * c["test"][s]["metrics"]["dice"]["mean"] for c in repeats]
        parts.append(f"{s} " + " / ".join(f"{m:.2f}" for m in means) + f" (range {max(means) - min(means):.2f})")
    return "; ".join(parts)


def markdown(results: dict) -> str:
    cfg = results["budget"]
    lines = ["# Cross-dataset benchmark" + ("" if results["tier"] == "cpu" else f", tier {results['tier']}"), "",
             f"Generated by `python benchmarks/cross_dataset.py --tier {results['tier']}` from "
             f"`benchmarks/results/cross_dataset_{results['tier']}.json`; "
             "every figure below comes from that run.", "",
             *[f"The same benchmark at another budget: [{t}]({DOCS[t].name}).\n" for t in TIERS
               if t != results["tier"] and (RESULTS / f"cross_dataset_{t}.json").exists()],
             "- training: photos " + (f"downscaled to longest side {cfg['max_size']} px" if cfg["max_size"] else
                                      "at their original resolution") + f"; {cfg['epochs']} epochs × "
             f"{cfg['iterations']} iterations ({cfg['epochs'] * cfg['iterations']} steps) at batch "
             f"{cfg['batch_size']} for every training, fold 0 of nnU-Net's 5-fold split of the training cases; "
             f"{cfg['device']} ({results['host']})",
             "- BioHit: 240 training / 60 test studio photos (768×576); NTUST: 441 / 100 clinical close-ups "
             "(400×400, many coated tongues); *both*: the 681 training cases together. Never trained on a "
             "`test` case.",
             "- scored: `nnunet-tongue segment` at the photos' original size (default settings: no mirroring, "
             "post-processing on) and `nnunet-tongue evaluate` against the original masks (Dice/IoU in %, "
             "HD95/ASSD in pixels of the original photo). Each cell: mean ± sd (worst case) over the test set. "
             "*--no-rescale*: the same model, one pass (as `segment` ran before 0.2); in brackets, how many test "
             "photos the default run segmented a second time because the tongue's size was outside the "
             "training range.",
             "- rows *training N*: an N-th identical training (nnU-Net seeds nothing), the spread between "
             "trainings below each table; where a cell has one training, take the spread measured for the others "
             "as a guide: differences below about a point on the unseen source, or half a point on the own one, "
             "are not evidence.", ""]
    for trainer in sorted({c["trainer"] for c in results["cells"].values()}):
        rows = sorted((c for c in results["cells"].values() if c["trainer"] == trainer),
                      key=lambda c: (TRAIN_SETS.index(c["train_on"]), c.get("repeat", 1)))
        lines += [f"## {trainer}", "", "| trained on | " + " | ".join(f"Dice on {s} test" for s in SOURCES)
                  + " | " + " | ".join(f"HD95 on {s}" for s in SOURCES) + " | "
                  + " | ".join(f"Dice on {s} with --no-rescale (photos the default rescaled)" for s in SOURCES)
                  + " | run |",
                  "|---|" + "---|" * (3 * len(SOURCES) + 1)]
        for c in rows:
            dice = [_dice(c["test"][s]["metrics"]["dice"]) for s in SOURCES]
            hd = [f"{c['test'][s]['metrics']['hd95']['mean']:.1f} (max {c['test'][s]['metrics']['hd95']['max']:.1f})"
                  for s in SOURCES]
            single = [f"{100 * c['test_single_pass'][s]['metrics']['dice']['mean']:.2f} ({c['test'][s]['n_rescaled']})"
                      if "test_single_pass" in c else "—" for s in SOURCES]
            lines.append(f"| {_row_label(c)} | " + " | ".join(dice) + " | " + " | ".join(hd) + " | "
                         + " | ".join(single) + f" | {c['date']} |")
        lines += ["", "IoU and ASSD:", "", "| trained on | " + " | ".join(f"IoU on {s}" for s in SOURCES) + " | "
                  + " | ".join(f"ASSD on {s}" for s in SOURCES) + " |", "|---|" + "---|" * (2 * len(SOURCES))]
        for c in rows:
            m = {s: c["test"][s]["metrics"] for s in SOURCES}
            lines.append(f"| {_row_label(c)} | " + " | ".join(f"{100 * m[s]['iou']['mean']:.2f}" for s in SOURCES)
                         + " | " + " | ".join(f"{m[s]['assd']['mean']:.2f}" for s in SOURCES) + " |")
        lines.append("")
        for train_on in TRAIN_SETS:
            repeats = [c for c in rows if c["train_on"] == train_on]
            if len(repeats) > 1:
                lines += [f"Spread between the {len(repeats)} identical trainings on {train_on} (mean Dice): "
                          f"{_spread(repeats)}", ""]
        for c in rows:
            for source in SOURCES:
                if source != c["train_on"] and c["test"][source].get("worst_cases_png"):
                    worst = ", ".join(f"{w['case']} ({100 * w['dice']:.1f})" for w in c["test"][source]["worst_cases"])
                    lines += [f"Worst {source} test cases of the model trained on {_row_label(c)} (Dice): {worst}", "",
                              f"![worst cases]({c['test'][source]['worst_cases_png']})", ""]
    findings = RESULTS / f"cross_dataset_{results['tier']}_findings.md"
    if findings.exists():
        lines += [findings.read_text().rstrip(), ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tier", choices=TIERS, default="cpu")
    p.add_argument("--trainers", nargs="+", default=TRAINERS)
    p.add_argument("--train-on", nargs="+", choices=TRAIN_SETS, default=TRAIN_SETS)
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "runs" / "cross_dataset")
    p.add_argument("--data", type=Path, default=DATA, help="folder with biohit/, ntust/ and their split files")
    p.add_argument("--repeat", type=int, default=1, help="N > 1: an N-th identical training of each cell, for the "
                   "spread between trainings")
    p.add_argument("--docs-only", action="store_true", help="only regenerate docs/cross_dataset.md")
    args = p.parse_args()
    results_file = RESULTS / f"cross_dataset_{args.tier}.json"
    cfg = TIERS[args.tier]
    results = json.loads(results_file.read_text()) if results_file.exists() else {"cells": {}}
    if not args.docs_only:
        import platform

        missing = [s for s in SOURCES if not (args.data / s / "images").is_dir()]
        if missing:
            raise SystemExit(f"{', '.join(missing)} not found in {args.data}: pass --data")
        workdir = args.workdir / tier_workdir(args.tier)
        prepare(workdir, cfg["max_size"], args.data)
        results.update(tier=args.tier, budget=cfg, host=f"{platform.machine()}, {os.cpu_count()} CPU cores")
        for train_on in args.train_on:
            for trainer in args.trainers:
                try:
                    c = cell(workdir, args.tier, trainer, train_on, args.repeat)
                except CommandFailed as failure:
                    print(failure, file=sys.stderr)
                    continue
                c["date"] = date.today().isoformat()
                if results_file.exists():  # cells another run of this command wrote meanwhile are kept
                    results["cells"] = {**json.loads(results_file.read_text())["cells"], **results["cells"]}
                results["cells"][cell_key(trainer, train_on, args.repeat)] = c
                results_file.write_text(json.dumps(results, indent=1, default=float))
                print(json.dumps({f"{trainer} on {train_on}": {s: c["test"][s]["metrics"]["dice"]["mean"]
                                                               for s in SOURCES}}), flush=True)
    if not results["cells"]:
        raise SystemExit(f"no results in {results_file}: run the benchmark first")
    DOCS[args.tier].write_text(markdown(results))
    print(f"wrote {DOCS[args.tier]}")
    return 0


if __name__ == "__main__":
    started = time.time()
    code = main()
    print(f"done in {time.time() - started:.0f} s", file=sys.stderr)
    sys.exit(code)
