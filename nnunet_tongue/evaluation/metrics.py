"""Per-case metrics for one predicted and one ground-truth binary mask.

Dice, IoU, HD95 and ASSD come from :mod:`medpy.metric.binary` (distances in pixels, unit spacing,
boundary = object pixels with a 4-connected neighbour outside the object). medpy cannot score an
empty mask, so empty masks follow the conventions below (see docs/evaluation.md):

- both empty: Dice = IoU = 1, HD95 = ASSD = 0 (nothing to find, nothing found);
- exactly one empty: Dice = IoU = 0, HD95 = ASSD = the image diagonal, the largest distance two
  pixels of the image can have, so the case is scored as the worst possible one and still counts
  in every mean.
"""

from __future__ import annotations

import math

import numpy as np
from medpy.metric import binary as medpy_binary

#: Metric names, in report order.
METRICS: tuple[str, ...] = ("dice", "iou", "hd95", "assd")
#: Whether a larger value is better, per metric (decides what "worst" means).
HIGHER_IS_BETTER: dict[str, bool] = {"dice": True, "iou": True, "hd95": False, "assd": False}


def image_diagonal(shape: tuple[int, ...]) -> float:
    """Largest distance between two pixel centres of an image of this shape, in pixels."""
    return math.sqrt(sum((n - 1) ** 2 for n in shape))


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two masks (non-zero = foreground): 2|P∩G| / (|P| + |G|); 1.0 when both are empty."""
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    total = int(pred.sum()) + int(gt.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(pred, gt).sum()) / total


def binary_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Dice, IoU, HD95 and ASSD (pixels) of ``pred`` against ``gt``; non-zero = foreground."""
    pred = np.asarray(pred).astype(bool)
    gt = np.asarray(gt).astype(bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    pred_any, gt_any = bool(pred.any()), bool(gt.any())
    if not pred_any and not gt_any:
        return {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}
    if not pred_any or not gt_any:
        worst = image_diagonal(pred.shape)
        return {"dice": 0.0, "iou": 0.0, "hd95": worst, "assd": worst}
    return {
        "dice": dice(pred, gt),
        "iou": float(medpy_binary.jc(pred, gt)),
        "hd95": float(medpy_binary.hd95(pred, gt)),
        "assd": float(medpy_binary.assd(pred, gt)),
    }
