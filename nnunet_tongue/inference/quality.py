"""Quality flags: which photos a clinic should look at again or retake.

Each flag is a fixed rule with a documented threshold (docs/inference.md, "Quality flags"), computed from the
photo, the network's tongue probability and the mask ``segment`` writes:

- ``no_tongue``: the mask is empty.
- ``cut_by_border``: the tongue touches the photo's edge along more than :data:`BORDER_TOUCH` of the photo's
  perimeter (a tongue cut by the frame is measured too small).
- ``several_regions``: before post-processing, a second tongue-like region holds at least
  :data:`SECOND_REGION` of the largest one's area (lips, a hand, a reflection).
- ``area_implausible``: the tongue covers less than :data:`MIN_AREA` or more than :data:`MAX_AREA` of the photo.
- ``low_confidence``: pixels the network is unsure about (probability between 0.25 and 0.75) amount to more
  than :data:`UNSURE_AREA` of the tongue's area.
- ``too_dark`` / ``too_bright``: the photo's mean grey level is below :data:`DARK` or above :data:`BRIGHT` (0-255).
- ``blurred``: the photo's :func:`sharpness` is below :data:`SHARPNESS` (BioHit and NTUST photos score 7.0-24.2,
  the same photos out of focus 1.5-4.5, under-exposed or not; ``benchmarks/sharpness_flag.py``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

BORDER_TOUCH = 0.01
SECOND_REGION = 0.10
MIN_AREA, MAX_AREA = 0.01, 0.80
UNSURE_AREA = 0.10
DARK, BRIGHT = 40.0, 215.0
SHARPNESS = 5.0
FLAGS = ("no_tongue", "cut_by_border", "several_regions", "area_implausible", "low_confidence", "too_dark",
         "too_bright", "blurred")
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def grey_pixels(grey: Image.Image, longest: int = 512) -> np.ndarray:
    """A grey photo as float32 pixels, brought to at most ``longest`` px on its longest side (bilinear)."""
    scale = longest / max(grey.size)
    if scale < 1:
        grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
                           Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.float32)


def sharpness(grey: Image.Image) -> float:
    """Fine-to-coarse edge energy of a grey photo brought to at most 512 px on its longest side: the variance of its
    Laplacian of Gaussian at sigma 1 px over that at sigma 2 px (higher = sharper; 0 for a flat photo).

    A blur takes the fine scale away first, so the ratio falls; exposure and contrast scale both variances alike
    and leave it unchanged, so a dark photo is not taken for a blurred one.
    """
    pixels = grey_pixels(grey)
    coarse = float(ndimage.gaussian_laplace(pixels, 2.0).var())
    return float(ndimage.gaussian_laplace(pixels, 1.0).var()) / coarse if coarse > 1e-6 else 0.0


def quality(photo: np.ndarray, probability: np.ndarray, mask: np.ndarray) -> dict:
    """The measurements behind the flags and the flags raised: ``{"flags": [...], "measures": {...}}``."""
    mask = np.asarray(mask, dtype=bool)
    raw = probability >= 0.5
    area = int(mask.sum())
    border = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    labels, n = ndimage.label(raw, structure=_EIGHT_CONNECTED)
    sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1] if n else np.zeros(0)
    grey = Image.fromarray(photo).convert("L")
    measures = {
        "tongue_area_fraction": area / mask.size,
        "border_touch_fraction": float(border.sum()) / border.size,
        "second_region_ratio": float(sizes[1] / sizes[0]) if sizes.size > 1 else 0.0,
        "unsure_area_ratio": float(((probability > 0.25) & (probability < 0.75)).sum()) / max(area, 1),
        "mean_grey": float(np.asarray(grey, dtype=np.float32).mean()),
        "sharpness": sharpness(grey),
    }
    flags = []
    if area == 0:
        flags.append("no_tongue")
    else:
        if measures["border_touch_fraction"] > BORDER_TOUCH:
            flags.append("cut_by_border")
        if measures["second_region_ratio"] >= SECOND_REGION:
            flags.append("several_regions")
        if not MIN_AREA <= measures["tongue_area_fraction"] <= MAX_AREA:
            flags.append("area_implausible")
        if measures["unsure_area_ratio"] > UNSURE_AREA:
            flags.append("low_confidence")
    if measures["mean_grey"] < DARK:
        flags.append("too_dark")
    if measures["mean_grey"] > BRIGHT:
        flags.append("too_bright")
    if measures["sharpness"] < SHARPNESS:
        flags.append("blurred")
    return {"flags": flags, "measures": {k: round(v, 4) for k, v in measures.items()}}


def draw_flags(overlay: Image.Image, flags: list[str]) -> Image.Image:
    """The overlay with the flags written in its top-left corner (white on red), one per line."""
    if not flags:
        return overlay
    draw = ImageDraw.Draw(overlay)
    size = max(10, round(max(overlay.size) / 40))
    try:
        from PIL import ImageFont

        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without scalable default font
        font = None
    y = 4
    for flag in flags:
        box = draw.textbbox((4, y), flag, font=font)
        draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(200, 0, 0))
        draw.text((4, y), flag, fill=(255, 255, 255), font=font)
        y = box[3] + 6
    return overlay
