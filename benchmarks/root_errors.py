"""Where a model's errors lie on the tongue: at its root (under the upper lip and teeth) or elsewhere.

    nnunet-tongue segment -i TEST_PHOTOS -o seg
    python benchmarks/root_errors.py -p seg/masks -g TRUTH_MASKS --images TEST_PHOTOS --name biohit \
        [--sheet docs/img/models/root_biohit.jpg] [--json root_biohit.json]

The root band of a case is the top quarter of its true tongue's height (rows above ``top + 0.25 * height`` of
the ground truth; the test photos are upright). Every wrong pixel is counted as a false positive (predicted,
not in the truth) or a false negative, inside the band or below it. A case is *root-over* when the band's
false positives exceed twice its false negatives and 1 % of the tongue's area (the model reaches higher than
the truth), *root-under* the other way round. "Dice with true roots" replaces each prediction inside the band
by the truth: what a model exact at the root, and unchanged elsewhere, would score; "root line moved by N px"
moves the predicted upper edge inside the band up (N > 0) or down by N rows of the photo, the same for every
case: what one fixed change of where the model puts the root would score. The sheet shows the two
worst root-under cases beside the two worst root-over ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from nnunet_tongue.evaluation import figures
from nnunet_tongue.evaluation.cases import find_photos, list_masks, match_cases, read_mask
from nnunet_tongue.evaluation.metrics import binary_metrics, dice

ROOT_FRACTION = 0.25
#: a case's root error counts as one-sided when one kind is twice the other and above this share of the tongue
ONE_SIDED_SHARE = 0.01
#: rows the predicted root line is moved by (up > 0, down < 0) to see whether one fixed shift would help
ROOT_MOVES = (-8, -4, -2, 2, 4, 8)


def root_band(gt: np.ndarray) -> np.ndarray:
    """Rows above the top ROOT_FRACTION of the true tongue's height (bool, gt's shape; empty for an empty truth)."""
    band = np.zeros(gt.shape, dtype=bool)
    rows = np.flatnonzero(gt.any(axis=1))
    if rows.size:
        band[: int(round(rows[0] + ROOT_FRACTION * (rows[-1] - rows[0])))] = True
    return band


def move_root(pred: np.ndarray, band: np.ndarray, rows: int) -> np.ndarray:
    """``pred`` with its upper edge inside ``band`` moved up (``rows`` > 0) or down (< 0) by that many rows."""
    if rows == 0:
        return pred.copy()
    shifted = np.zeros_like(pred)
    if rows > 0:
        shifted[:-rows] = pred[rows:]
        return np.where(band, pred | shifted, pred)
    shifted[-rows:] = pred[:rows]
    return np.where(band, pred & shifted, pred)


def case_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """False positives and negatives inside and below the root band (pixels), Dice, Dice with true roots and
    Dice with the predicted root line moved by each of ROOT_MOVES rows."""
    band = root_band(gt)
    fp, fn = pred & ~gt, gt & ~pred
    true_roots = np.where(band, gt, pred)
    return {"dice": dice(pred, gt), "dice_true_roots": dice(true_roots, gt), "area": int(gt.sum()),
            "fp_root": int((fp & band).sum()), "fn_root": int((fn & band).sum()),
            "fp_rest": int((fp & ~band).sum()), "fn_rest": int((fn & ~band).sum()),
            **{f"dice_root_moved_{rows:+d}": dice(move_root(pred, band, rows), gt) for rows in ROOT_MOVES}}


def side(row: dict[str, float]) -> str | None:
    """``"over"`` (the model's root reaches higher), ``"under"`` (the truth's does), or None (neither clearly)."""
    floor = ONE_SIDED_SHARE * row["area"]
    if row["fp_root"] > 2 * row["fn_root"] and row["fp_root"] > floor:
        return "over"
    if row["fn_root"] > 2 * row["fp_root"] and row["fn_root"] > floor:
        return "under"
    return None


def summarise(rows: dict[str, dict[str, float]]) -> dict[str, object]:
    """The shares of wrong pixels by place and kind, the one-sided cases, mean Dice with and without true roots."""
    kinds = ("fp_root", "fn_root", "fp_rest", "fn_rest")
    total = sum(row[k] for row in rows.values() for k in kinds) or 1
    sides = {case: side(row) for case, row in rows.items()}
    return {"n_cases": len(rows),
            "error_share_pct": {k: 100 * sum(row[k] for row in rows.values()) / total for k in kinds},
            "root_over": sorted((c for c, s in sides.items() if s == "over"), key=lambda c: -rows[c]["fp_root"]),
            "root_under": sorted((c for c, s in sides.items() if s == "under"), key=lambda c: -rows[c]["fn_root"]),
            "dice_mean_pct": 100 * float(np.mean([row["dice"] for row in rows.values()])),
            "dice_true_roots_mean_pct": 100 * float(np.mean([row["dice_true_roots"] for row in rows.values()])),
            "dice_root_moved_mean_pct": {rows_: 100 * float(np.mean([row[f"dice_root_moved_{rows_:+d}"]
                                                                       for row in rows.values()]))
                                         for rows_ in ROOT_MOVES}}


def sentence(name: str, s: dict[str, object]) -> str:
    """One line for docs."""
    share = s["error_share_pct"]
    return (f"{name} ({s['n_cases']} photos): {share['fp_root'] + share['fn_root']:.0f} % of the wrong pixels lie "
            f"in the root band ({share['fp_root']:.0f} % predicted above the truth's root, {share['fn_root']:.0f} % "
            f"of the truth's root missed); root-over cases {len(s['root_over'])}, root-under cases "
            f"{len(s['root_under'])}; Dice {s['dice_mean_pct']:.2f}, with true roots "
            f"{s['dice_true_roots_mean_pct']:.2f}; with the predicted root line moved by "
            + ", ".join(f"{r:+d} px: {d:.2f}" for r, d in s["dice_root_moved_mean_pct"].items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-p", "--pred", type=Path, required=True, help="predicted masks")
    p.add_argument("-g", "--gt", type=Path, required=True, help="ground-truth masks (same file stems)")
    p.add_argument("--images", type=Path, help="photos, for the sheet")
    p.add_argument("--name", default="test set", help="the set's name in the printed line")
    p.add_argument("--sheet", type=Path, help="write the sheet of the worst one-sided cases here")
    p.add_argument("--json", type=Path, help="write the per-case figures and the summary here")
    args = p.parse_args(argv)
    preds, gts = list_masks(args.pred, "prediction"), list_masks(args.gt, "ground-truth")
    cases, _ = match_cases(preds, gts)
    rows = {case: case_errors(read_mask(preds[case]), read_mask(gts[case])) for case in cases}
    summary = summarise(rows)
    print(sentence(args.name, summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "cases": rows}, indent=1))
    if args.sheet:
        shown = summary["root_under"][:2] + summary["root_over"][:2]
        photos = find_photos(args.images, shown) if args.images else {}
        tiles = []
        for case in shown:
            pred, gt = read_mask(preds[case]), read_mask(gts[case])
            tiles.append(figures.Tile.of_case(case, rows[case]["dice"], binary_metrics(pred, gt)["hd95"], pred, gt,
                                              photos.get(case)))
        if tiles:
            figures.contact_sheet(tiles, args.sheet, f"{args.name}: the truth's root higher than the model's "
                                                     "(root-under), then lower (root-over)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
