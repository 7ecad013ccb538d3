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
- ``blurred``: the photo's :func:`sharpness` is below :data:`SHARPNESS` at the fine scale or below
  :data:`SHARPNESS_MID` at the middle one (calibrated on BioHit and NTUST photos as taken, under- and
  over-exposed, re-encoded, noisy and out of focus: ``benchmarks/sharpness_flag.py``, docs/inference.md).
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
SHARPNESS, SHARPNESS_MID = 5.0, 5.3
FLAGS = ("no_tongue", "cut_by_border", "several_regions", "area_implausible", "low_confidence", "too_dark",
         "too_bright", "blurred")
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def grey_pixels(grey: Image.Image, longest: int = 512) -> np.ndarray:
    """A grey photo as float32 pixels, shrunk by the smallest whole factor k that brings its longest side to at most
    ``longest`` px: each pixel the mean of a k x k block, so pixel noise stays uncorrelated (its sigma / k)."""
    pixels = np.asarray(grey, dtype=np.float32)
    k = -(-max(pixels.shape) // longest)
    if k > 1:
        h, w = pixels.shape[0] // k * k, pixels.shape[1] // k * k
        pixels = pixels[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))
    return pixels


def _energy(sigma: float) -> float:
    """Sum of the squared weights of scipy's Laplacian of Gaussian at ``sigma``: white noise of variance v
    comes out of it with variance v times this."""
    impulse = np.zeros((8 * round(sigma) + 9,) * 2)
    impulse[impulse.shape[0] // 2, impulse.shape[1] // 2] = 1.0
    return float((ndimage.gaussian_laplace(impulse, sigma) ** 2).sum())


_LOG_NOISE_GAIN = {sigma: _energy(sigma) for sigma in (1.0, 2.0, 4.0)}
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)  # cancels shading and straight edges


def noise_sigma(pixels: np.ndarray) -> float:
    """The standard deviation of a grey photo's pixel noise: the median absolute response to a kernel that cancels
    smooth shading and straight edges (white noise of sigma s comes out of it with sigma 6 s), over 0.6745; 0 for a
    photo under 3 x 3 px."""
    if min(pixels.shape) < 3:
        return 0.0
    response = ndimage.convolve(pixels, _NOISE_KERNEL)[1:-1, 1:-1]
    return float(np.median(np.abs(response))) / 0.6745 / 6.0


def sharpness(grey: Image.Image) -> tuple[float, float, float]:
    """``(fine, mid, noise)`` of a grey photo shrunk to at most 512 px (:func:`grey_pixels`): the variance of its
    Laplacian of Gaussian at sigma 1 px over that at 2 px (fine), at 2 px over 4 px (mid), each variance less the
    share :func:`noise_sigma` explains; higher = sharper, 0 for a flat photo.

    A blur takes the fine scales away first, so both ratios fall; exposure and contrast scale every variance alike
    and leave them unchanged, so a dark photo is not taken for a blurred one; the noise's share is taken out, so a
    noisy photo's grain is not taken for detail.
    """
    pixels = grey_pixels(grey)
    noise = noise_sigma(pixels)
    detail = {sigma: max(float(ndimage.gaussian_laplace(pixels, sigma).var()) - noise ** 2 * gain, 0.0)
              for sigma, gain in _LOG_NOISE_GAIN.items()}
    fine, mid = (detail[a] / detail[b] if detail[b] > 1e-6 else 0.0 for a, b in ((1.0, 2.0), (2.0, 4.0)))
    return fine, mid, noise


def photo_sharpness(photo: np.ndarray) -> tuple[float, float, float]:
    """:func:`sharpness` of a photo array (RGB or grey)."""
    return sharpness(Image.fromarray(photo).convert("L"))


def is_blurred(fine: float, mid: float) -> bool:
    """The ``blurred`` flag's rule on a photo's fine and mid :func:`sharpness`."""
    return fine < SHARPNESS or mid < SHARPNESS_MID


def quality(photo: np.ndarray, probability: np.ndarray, mask: np.ndarray,
            measured_sharpness: tuple[float, float, float] | None = None) -> dict:
    """The measurements behind the flags and the flags raised: ``{"flags": [...], "measures": {...}}``
    (``measured_sharpness``: the photo's :func:`photo_sharpness` when already measured)."""
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
    }
    measures["sharpness"], measures["sharpness_mid"], measures["noise_sigma"] = (
        measured_sharpness if measured_sharpness is not None else sharpness(grey))
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
    if is_blurred(measures["sharpness"], measures["sharpness_mid"]):
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
