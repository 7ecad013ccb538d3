"""A shape rule tried for the tongue a model leaves out: the mask's convex hull after the default post-processing.

    python benchmarks/convex_hull.py      # seconds; needs the cross-dataset benchmark's masks (no training)

A model that never saw coated tongues often stops at the coating, leaving a bite out of the back of the tongue;
the default post-processing (largest component, holes filled) cannot close a bite that opens onto the border of
the mask. The convex hull would, at the cost of filling the tongue's own hollows (the notch under the upper lip,
a cleft tip). This script scores that rule on the masks ``segment`` wrote for every cross-dataset cell still in
the work folder (``benchmarks/cross_dataset.py``, test photos at original size, default settings), against the
same ground truth, per photo: the mean Dice with and without it, the paired difference (mean ± standard error)
and how many photos fall below 90. Writes ``benchmarks/results/convex_hull.json``.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
from skimage.morphology import convex_hull_image

from biohit_benchmark import RESULTS, REPO
from bundled_model import paired
from cross_dataset import SOURCES, dataset_name

from nnunet_tongue.evaluation.cases import read_mask
from nnunet_tongue.evaluation.metrics import dice


def hull(mask: np.ndarray) -> np.ndarray:
    """The convex hull of a boolean mask (an empty mask stays empty)."""
    return convex_hull_image(mask) if mask.any() else mask


def compare(masks: Path, truth: Path) -> dict:
    """Dice (%) of the masks in ``masks`` as written and as their convex hulls, against ``truth``, per photo."""
    as_written, hulled = {}, {}
    for path in sorted(masks.glob("*.png")):
        predicted, expected = read_mask(path), read_mask(truth / path.name)
        as_written[path.stem] = 100 * dice(predicted, expected)
        hulled[path.stem] = 100 * dice(hull(predicted), expected)
    before, after = np.array(list(as_written.values())), np.array(list(hulled.values()))
    return {"dice_mean": round(float(before.mean()), 2), "hull_dice_mean": round(float(after.mean()), 2),
            "hull_vs_as_written": paired(hulled, as_written),
            "below_90": int((before < 90).sum()), "hull_below_90": int((after < 90).sum()),
            "worst": round(float(before.min()), 2), "hull_worst": round(float(after.min()), 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "runs" / "cross_dataset" / "cpu")
    args = p.parse_args()
    cells = {}
    for source in SOURCES:
        truth = args.workdir / "fullres" / dataset_name(source) / "labelsTs"
        for masks in sorted(args.workdir.glob(f"segmented_*_{source}_rescaled/masks")):
            cell = masks.parent.name[len("segmented_"):-len(f"_{source}_rescaled")]
            cells.setdefault(cell, {})[source] = compare(masks, truth)
            print(cell, source, cells[cell][source])
    if not cells:
        raise SystemExit(f"no segmented_*_rescaled/masks folders in {args.workdir}: run benchmarks/cross_dataset.py")
    out = RESULTS / "convex_hull.json"
    out.write_text(json.dumps({"date": date.today().isoformat(), "cells": cells}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
