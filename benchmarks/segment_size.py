"""The size ``segment`` feeds the bundled recipe's model at, chosen on training photos its model never saw.

    python benchmarks/segment_size.py      # CPU, about 3 min on 2 cores, after the training below

The model: the bundled model's recipe trained on nnU-Net's fold 0 of the two-source dataset, 545 of the 681
training photos, 384 steps (``python benchmarks/cross_dataset.py --tier cpu_long --trainers
nnUNetTrainerUNet320CoatingAug --train-on both --repeat 3``). The photos: the 137 training photos fold 0 holds out
(nnU-Net's ``splits_final.json``: 48 BioHit, 89 NTUST) at their original size; no ``test`` photo. Each is segmented
as ``segment`` does (:class:`TongueSegmenter`, default settings) under each rule of :data:`RULES` and scored
against its mask at original size; per photo, the Dice difference to the training size (mean ± standard error,
photos higher / lower). Writes ``benchmarks/results/segment_size.json``.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

from biohit_benchmark import BIOHIT as DATA, RESULTS, REPO
from bundled_model import MAX_SIZE, SEGMENT_MAX_SIZE, TRAINER
from cross_dataset import SOURCES, TIERS, dataset_name

from nnunet_tongue.evaluation.metrics import dice
from nnunet_tongue.inference.segmenter import TongueSegmenter
from nnunet_tongue.photos import load_photo
from nnunet_tongue.training.budget import budget_trainer_name

#: rule -> (what it does, TongueSegmenter's max_size, a second pass for every photo)
RULES = {"training_size": (f"photos brought to the training size, {MAX_SIZE} px (second pass outside the "
                           "training tongues' 5th-95th percentile)", MAX_SIZE, False),
         "segment_size": (f"photos brought to {SEGMENT_MAX_SIZE} px (second pass as above)", SEGMENT_MAX_SIZE, False),
         "every_tongue_to_median": (f"photos brought to {MAX_SIZE} px, then every tongue to the training tongues' "
                                    "median extent (a second pass for every photo)", MAX_SIZE, True)}


def held_out(workdir: Path) -> dict[str, list[str]]:
    """{source: [case, ...]}: the two-source dataset's fold-0 validation cases, by source."""
    split = json.loads((workdir / "preprocessed" / dataset_name("both") / "splits_final.json").read_text())[0]
    return {source: sorted(c[len(source) + 1:] for c in split["val"] if c.startswith(f"{source}_"))
            for source in SOURCES}


def scores(model: Path, rule: str, cases: dict[str, list[str]], workdir: Path,
           data: Path) -> tuple[dict[str, dict], dict[str, int]]:
    """{source: {case: Dice %}} of the model under ``rule``, and {source: photos given the second pass}."""
    _, max_size, every_photo = RULES[rule]
    segmenter = TongueSegmenter(model, folds=[0], device="cpu", max_size=max_size)
    if every_photo:  # the training range narrowed to its median: every tongue off it gets the second pass
        median = segmenter.tongue_extent["median"]
        segmenter.tongue_extent = {**segmenter.tongue_extent, "p5": median, "p95": median}
    found: dict[str, dict] = {}
    second_pass = dict.fromkeys(cases, 0)
    for source, names in cases.items():
        truth_dir = workdir / "fullres" / dataset_name(source) / "labelsTr"
        for case in names:
            photo, _ = load_photo(data / source / "images" / f"{case}.jpg")
            truth = np.asarray(Image.open(truth_dir / f"{case}.png")) > 0
            prediction = segmenter.predict(photo)
            found.setdefault(source, {})[case] = 100 * dice(prediction.mask, truth)
            second_pass[source] += prediction.rescale_factor != 1.0
    return found, second_pass


def compared(per_case: dict[str, float], reference: dict[str, float]) -> dict:
    difference = np.array([per_case[c] - reference[c] for c in reference])
    return {"mean_difference": float(difference.mean()),
            "standard_error": float(difference.std(ddof=1) / np.sqrt(len(difference))),
            "higher": int((difference > 0).sum()), "lower": int((difference < 0).sum())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="which training of the cross-dataset cell (default 3)")
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    args = p.parse_args()
    workdir = REPO / "benchmarks" / "runs" / "cross_dataset" / "cpu"
    cfg = TIERS["cpu_long"]
    budgeted = budget_trainer_name(TRAINER, cfg["epochs"], cfg["iterations"], cfg["val_iterations"],
                                   batch_size=cfg["batch_size"])
    results_dir = workdir / ("results" if args.repeat == 1 else f"results_repeat{args.repeat}")
    model = results_dir / dataset_name("both") / f"{budgeted}__nnUNetPlans__2d"
    if not (model / "fold_0" / "checkpoint_final.pth").is_file():
        raise SystemExit(f"{model} has no trained fold 0: train it first (see the usage above)")
    cases = held_out(workdir)
    measured = {rule: scores(model, rule, cases, workdir, args.data) for rule in RULES}
    per_rule = {rule: found for rule, (found, _) in measured.items()}
    results = {"date": date.today().isoformat(), "command": "python benchmarks/segment_size.py",
               "model": str(model.relative_to(REPO)), "photos": {s: len(c) for s, c in cases.items()},
               "rules": {rule: RULES[rule][0] for rule in RULES}, "dice": {}, "vs_training_size": {},
               "second_pass": {rule: passes for rule, (_, passes) in measured.items()}}
    for rule, found in per_rule.items():
        for source, per_case in found.items():
            results["dice"].setdefault(rule, {})[source] = {"mean": float(np.mean(list(per_case.values()))),
                                                            "min": float(min(per_case.values()))}
            if rule != "training_size":
                results["vs_training_size"].setdefault(rule, {})[source] = compared(
                    per_case, per_rule["training_size"][source])
            print(f"{rule:24s} {source:7s} Dice {results['dice'][rule][source]['mean']:.2f}, second pass "
                  f"{results['second_pass'][rule][source]}"
                  + (" vs training size {mean_difference:+.3f} ± {standard_error:.3f} (higher {higher}, lower "
                     "{lower})".format(**results["vs_training_size"][rule][source]) if rule != "training_size" else ""))
    out = RESULTS / "segment_size.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
