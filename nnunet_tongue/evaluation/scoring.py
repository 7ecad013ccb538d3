"""Scoring one case: read both masks, check their sizes, compute the metrics (runs in worker processes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nnunet_tongue.evaluation.cases import EvaluationError, read_mask
from nnunet_tongue.evaluation.metrics import binary_metrics

#: Aspect ratios (W / H) further apart than this are never resized onto each other.
_ASPECT_TOLERANCE = 0.02


@dataclass(frozen=True)
class CaseJob:
    """What a worker needs to score one case."""

    case: str
    pred: Path
    gt: Path
    label: int | None = None
    resize_to_gt: bool = False


def _resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(image.resize(size, Image.Resampling.NEAREST)) > 0


def load_pair(job: CaseJob) -> tuple[np.ndarray, np.ndarray]:
    """``(prediction, ground truth)`` as boolean arrays of the ground truth's size.

    A size mismatch is an :class:`EvaluationError` unless ``job.resize_to_gt``, which resizes the
    prediction (nearest neighbour) when both have the same aspect ratio.
    """
    pred, gt = read_mask(job.pred, job.label), read_mask(job.gt, job.label)
    if pred.shape == gt.shape:
        return pred, gt
    (ph, pw), (gh, gw) = pred.shape, gt.shape
    sizes = f"prediction {job.pred.name} is {pw}x{ph} (WxH) but ground truth {job.gt.name} is {gw}x{gh}"
    if not job.resize_to_gt:
        raise EvaluationError(
            f"{sizes}: predict at the original resolution, or pass --resize-to-gt (resize_to_gt=True) "
            "to resize predictions to the ground-truth size (nearest neighbour)"
        )
    if abs(pw / ph - gw / gh) > _ASPECT_TOLERANCE * gw / gh:
        raise EvaluationError(f"{sizes}: the aspect ratios differ, so resizing would distort the prediction")
    return _resize_nearest(pred, (gw, gh)), gt


def score_case(job: CaseJob) -> dict[str, object]:
    """One CSV row: case id, metrics, foreground pixel counts and size; ``{"case", "error"}`` on bad input."""
    try:
        pred, gt = load_pair(job)
    except EvaluationError as error:
        return {"case": job.case, "error": str(error)}
    height, width = gt.shape
    return {
        "case": job.case,
        **binary_metrics(pred, gt),
        "pred_pixels": int(pred.sum()),
        "gt_pixels": int(gt.sum()),
        "width": width,
        "height": height,
    }
