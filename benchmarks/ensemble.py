"""Trainings ensembled at segment time: the same recipe trained N times, the N networks' logits averaged.

    python benchmarks/ensemble.py     # N x the network passes of one model per photo; no training: it needs the
        # cross-dataset cpu_long trainings of the recipe (benchmarks/cross_dataset.py --tier cpu_long --repeat N)
    python benchmarks/ensemble.py --trainer nnUNetTrainerUNet320FrequentCoatingAug

nnU-Net averages the logits of the folds in a model folder. This script gives it a folder whose ``fold_0`` ...
``fold_<N-1>`` are the N identical trainings' fold 0 (symlinks; plans and dataset.json of the first), so that
``nnunet-tongue segment`` (default settings) runs them as one model; ``nnunet-tongue evaluate`` scores it on both
test sets at the photos' original size, as the cross-dataset benchmark scores each training, and each test photo's
Dice is compared with every member's (paired difference, mean ± standard error). Writes
``benchmarks/results/ensemble.json`` and the worst-case sheet of the source the trainings never saw under
``docs/img/cross_dataset/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import date
from pathlib import Path

import numpy as np

from biohit_benchmark import RESULTS, REPO, nnunet_env
from bundled_model import dice_per_case, paired, score
from cross_dataset import SOURCES, cell_model, cell_tag, dataset_name, docs_sheet

TIER = "cpu_long"
MODEL_FILES = ("plans.json", "dataset.json", "dataset_fingerprint.json")


def members(workdir: Path, trainer: str, train_on: str) -> list[dict]:
    """The tier's cells (results-file entries) of every training of ``trainer`` on ``train_on`` whose model is
    still in ``workdir``, by repeat."""
    cells = json.loads((RESULTS / f"cross_dataset_{TIER}.json").read_text())["cells"].values()
    mine = sorted((c for c in cells if (c["trainer"], c["train_on"]) == (trainer, train_on)),
                  key=lambda c: c.get("repeat", 1))
    return [c for c in mine if (model(workdir, c) / "fold_0" / "checkpoint_final.pth").is_file()]


def model(workdir: Path, c: dict) -> Path:
    """The model folder of a cell's training."""
    return cell_model(workdir, c["budget_trainer"], c["train_on"], c.get("repeat", 1))


def ensemble_folder(folder: Path, models: list[Path]) -> Path:
    """A model folder whose fold ``i`` is the fold 0 of ``models[i]`` (plans and dataset.json of the first)."""
    plans = [json.loads((m / "plans.json").read_text()) for m in models]
    if any(p != plans[0] for p in plans[1:]):
        raise SystemExit(f"{', '.join(map(str, models))} were trained with different plans: not one network")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in MODEL_FILES:
        shutil.copy(models[0] / name, folder / name)
    for i, model in enumerate(models):
        (folder / f"fold_{i}").symlink_to((model / "fold_0").resolve())
    return folder


def summarise(dice_by_case: dict[str, float]) -> dict:
    """Mean, sd and worst Dice (%) and the photos below 90 of one model on one test set."""
    d = np.array(list(dice_by_case.values()))
    return {"dice_mean": round(float(d.mean()), 2), "dice_sd": round(float(d.std()), 2),
            "worst": round(float(d.min()), 2), "below_90": int((d < 90).sum()),
            "cases_below_90": sorted(c for c, v in dice_by_case.items() if v < 90)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trainer", default="nnUNetTrainerUNet320TexturedCoatingAug")
    p.add_argument("--train-on", choices=SOURCES, default="biohit")
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "runs" / "cross_dataset" / "cpu")
    args = p.parse_args()
    found = members(args.workdir, args.trainer, args.train_on)
    if len(found) < 2:
        raise SystemExit(f"{len(found)} finished {TIER} training(s) of {args.trainer} on {args.train_on} in "
                         f"{args.workdir}: an ensemble needs two or more (benchmarks/cross_dataset.py --tier "
                         f"{TIER} --trainers {args.trainer} --train-on {args.train_on} --repeat N)")
    repeats = [c.get("repeat", 1) for c in found]
    # the members are in the name, so that no other set of trainings is ever scored from these masks
    name = f"ensemble_{args.trainer}_{args.train_on}_trainings_" + "_".join(map(str, repeats))
    folder = ensemble_folder(args.workdir / name / "model", [model(args.workdir, c) for c in found])
    env = nnunet_env(args.workdir)
    result = {"date": date.today().isoformat(), "tier": TIER, "trainer": args.trainer, "train_on": args.train_on,
              "members": repeats, "segment": "default settings (rescaled), no mirroring, post-processing on",
              "test": {}}
    for source in SOURCES:
        photos = args.workdir / f"test_photos_{source}"
        truth = args.workdir / "fullres" / dataset_name(source) / "labelsTs"
        tag = f"{name}_{source}"
        scored, _ = score(args.workdir, env, tag, photos, truth, ["-m", str(folder)])
        ours = dice_per_case(args.workdir, tag)
        theirs = {c.get("repeat", 1): dice_per_case(args.workdir, cell_tag(c["budget_trainer"], c["train_on"],
                                                                           c.get("repeat", 1), source))
                  for c in found}
        sheet = args.workdir / f"evaluation_{tag}" / "worst_cases.png"
        result["test"][source] = {
            "ensemble": {**summarise(ours), "hd95_mean": round(scored["metrics"]["hd95"]["mean"], 2),
                         "worst_cases": scored["worst_cases"],
                         **({"worst_cases_png": "img/cross_dataset/" + docs_sheet(sheet, f"{name}_on_{source}")}
                            if source != args.train_on else {})},
            "members": {f"training {r}": summarise(d) for r, d in theirs.items()},
            "ensemble_vs_member": {f"training {r}": paired(ours, d) for r, d in theirs.items()}}
        print(json.dumps({source: result["test"][source]["ensemble"]["dice_mean"]}), flush=True)
    out = RESULTS / "ensemble.json"
    runs = json.loads(out.read_text()) if out.exists() else {}
    runs[name] = result
    out.write_text(json.dumps(runs, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
