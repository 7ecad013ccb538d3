"""Masks: pixel values -> tongue yes/no (the binarisation rule), inverted-mask detection, stray specks."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from nnunet_tongue.photos import BadInput, Finding

#: pixels that touch at an edge or a corner belong to the same region
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)

#: inverted-mask rule (see docs/conversion.md): the "tongue" covers at least this share of the image frame ...
INVERTED_MIN_FRAME_SHARE = 0.75
#: ... and the "background" is one blob (this share of it) ...
INVERTED_MIN_BLOB_SHARE = 0.9
#: ... of at least this share of the image ...
INVERTED_MIN_BLOB_AREA = 0.01
#: ... that touches at most this many sides of the image.
INVERTED_MAX_BLOB_SIDES = 1

#: lossy / anti-aliased two-level masks: values within 10 % of either end must cover this share of the mask,
#: and values in between must take at least this many levels (fewer is a third label, not noise)
NEAR_BINARY_SHARE = 0.95
NEAR_BINARY_MIN_LEVELS = 3


def mask_levels(im: Image.Image) -> tuple[np.ndarray, int, list[Finding]]:
    """Integer pixel values of a decoded mask, the full-scale value of its format, and notes.

    1-bit -> 0/1; 8-bit grey -> 0..255; 16-bit grey -> 0..65535; palette -> grey values when every used
    palette entry is grey, else the palette indices; colour -> luminance (alpha is ignored).
    """
    mode = im.mode
    if mode == "1":
        return np.asarray(im).astype(np.uint8), 1, []
    if mode == "L":
        return np.asarray(im), 255, []
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return np.asarray(im).astype(np.int64), 65535, []
    if mode in ("P", "PA"):
        indices = np.asarray(im.convert("P") if mode == "PA" else im)
        palette = np.asarray(im.getpalette() or [], dtype=np.int64).reshape(-1, 3)
        used = np.unique(indices)
        if used.max() < len(palette) and (palette[used] == palette[used, :1]).all():
            return np.asarray(im.convert("L")), 255, []
        return indices, 255, [Finding("coloured palette mask: palette indices used as mask values")]
    if mode in ("RGB", "RGBA", "RGBX", "LA", "CMYK", "YCbCr"):
        rgb = np.asarray(im.convert("RGB"))
        if not ((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])).all():
            return np.asarray(im.convert("L")), 255, [Finding(f"colour mask (mode {mode}): reduced to luminance")]
        return rgb[..., 0], 255, []
    raise BadInput(f"unsupported mask pixel format (Pillow mode {mode})",
                   "save the mask as an 8-bit greyscale PNG (0 = background, 255 = tongue)")


def binarise(values: np.ndarray, full_scale: int, mapping: dict[int, int] | None) -> tuple[np.ndarray, list[Finding]]:
    """Tongue yes/no per pixel (the binarisation rule, in this order):

    1. ``mapping`` (``--mask-values``) given: value -> label 0/1; a value missing from it is an error.
    2. one value: tongue where it is non-zero (empty or full mask).
    3. two values: the higher is tongue (0/1, 0/255, 1-bit, any two-level mask).
    4. more, but both ends of the scale present, >= 95 % of pixels within 10 % of either end, and the
       values in between (if any) spread over at least 3 levels (a JPEG or anti-aliased two-level mask,
       not a third label): tongue where value >= half scale (128 for 8 bits), with a warning.
    5. otherwise: multi-valued mask, an error.
    """
    levels = np.unique(values)
    if mapping is not None:
        unknown = [int(v) for v in levels if int(v) not in mapping]
        if unknown:
            raise BadInput(f"mask values {_preview(unknown)} are not in --mask-values",
                           "add every value the masks use to --mask-values")
        return np.isin(values, [v for v, label in mapping.items() if label == 1]), []
    if len(levels) == 1:
        return values > 0, []
    if len(levels) == 2:
        low, high = int(levels[0]), int(levels[1])
        if low != 0:
            return values == high, [Finding(f"two-valued mask {low}/{high} without 0: {high} taken as tongue", True,
                                            "check the mask; pass --mask-values to say otherwise")]
        return values == high, ([] if high in (1, full_scale)
                                else [Finding(f"mask values 0/{high}: {high} taken as tongue")])
    low_band = values <= full_scale * 0.1
    high_band = values >= full_scale * 0.9
    between = values[~(low_band | high_band)]
    noise_like = between.size == 0 or len(np.unique(between)) >= NEAR_BINARY_MIN_LEVELS
    if low_band.any() and high_band.any() and between.size <= (1 - NEAR_BINARY_SHARE) * values.size and noise_like:
        threshold = (full_scale + 1) // 2
        in_between = int(between.size)
        return values >= threshold, [
            Finding(
                f"mask has {len(levels)} grey levels ({in_between} px in between; lossy or anti-aliased): "
                f"tongue = value >= {threshold}",
                True,
                "save masks as lossless PNG with exactly two values",
            )
        ]
    raise BadInput(
        f"multi-valued mask: {len(levels)} values {_preview(levels.tolist())}, not two",
        "say which values are tongue with --mask-values, e.g. --mask-values 0:0,128:1,255:1",
    )


def looks_inverted(tongue: np.ndarray) -> bool:
    """True when the tongue is probably stored as background (rule in docs/conversion.md).

    The "tongue" covers at least 75 % of the image's one-pixel frame, and the "background" is a single
    blob (its largest 8-connected region holds >= 90 % of it and >= 1 % of the image) touching at most
    one side of the image, the way a real tongue sits in a photo.
    """
    frame = np.concatenate([tongue[0], tongue[-1], tongue[1:-1, 0], tongue[1:-1, -1]])
    if frame.mean() < INVERTED_MIN_FRAME_SHARE:
        return False
    background = ~tongue
    labels, n = ndimage.label(background, EIGHT_CONNECTED)
    if n == 0:
        return False
    sizes = np.bincount(labels.ravel())[1:]
    biggest = int(sizes.argmax())
    if (sizes[biggest] < INVERTED_MIN_BLOB_SHARE * background.sum()
            or sizes[biggest] < INVERTED_MIN_BLOB_AREA * tongue.size):
        return False
    blob = labels == biggest + 1
    sides = int(blob[0].any()) + int(blob[-1].any()) + int(blob[:, 0].any()) + int(blob[:, -1].any())
    return sides <= INVERTED_MAX_BLOB_SIDES


def stray_regions(tongue: np.ndarray, drop_below: int | None = None) -> tuple[np.ndarray, list[int], list[int]]:
    """Tongue regions besides the largest one (8-connected).

    Returns the mask (with strays smaller than ``drop_below`` px removed, when given), the sizes of all
    stray regions found, and the sizes of those removed.
    """
    labels, n = ndimage.label(tongue, EIGHT_CONNECTED)
    if n <= 1:
        return tongue, [], []
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    main = int(sizes.argmax())
    strays = [i for i in range(1, n + 1) if i != main]
    found = sorted(int(sizes[i]) for i in strays)
    if drop_below is None:
        return tongue, found, []
    dropped = [i for i in strays if sizes[i] < drop_below]
    if dropped:
        tongue = tongue & ~np.isin(labels, dropped)
    return tongue, found, sorted(int(sizes[i]) for i in dropped)


def resize_mask(tongue: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Mask resized to ``size`` (W, H): bilinear on 0/255, tongue where >= 128."""
    return np.asarray(Image.fromarray(tongue.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)) >= 128


def _preview(values: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"
