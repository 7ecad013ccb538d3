"""What ``segment`` makes from a photo and its tongue mask: mask image, cut-out, overlay, numbers."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

#: overlay: tongue tinted with this colour at this opacity, outlined in the same colour
OVERLAY_COLOUR = (0, 255, 255)
OVERLAY_OPACITY = 0.15


def mask_image(mask: np.ndarray) -> Image.Image:
    """bool [H, W] -> 8-bit greyscale PNG-ready image, tongue 255, background 0."""
    return Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8))


def bounding_box(mask: np.ndarray) -> dict | None:
    """Tight box around the tongue in photo pixels: x, y of the top-left pixel, width, height (None when empty)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return {"x": int(cols[0]), "y": int(rows[0]), "width": int(cols[-1] - cols[0] + 1),
            "height": int(rows[-1] - rows[0] + 1)}


def cutout_image(photo: np.ndarray, mask: np.ndarray) -> Image.Image:
    """RGBA cut-out: the photo's pixels inside the tongue, transparent outside, cropped to the bounding box.

    An empty mask gives a fully transparent image of the photo's size.
    """
    mask = np.asarray(mask, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        return Image.new("RGBA", (photo.shape[1], photo.shape[0]), (0, 0, 0, 0))
    ys = slice(box["y"], box["y"] + box["height"])
    xs = slice(box["x"], box["x"] + box["width"])
    rgb = photo[ys, xs] if photo.ndim == 3 else np.repeat(photo[ys, xs, None], 3, axis=2)
    alpha = np.where(mask[ys, xs], 255, 0).astype(np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]))


def overlay_image(photo: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = OVERLAY_COLOUR,
                  opacity: float = OVERLAY_OPACITY) -> Image.Image:
    """The photo with the tongue tinted and outlined (outline about 1/400 of the longest side, at least 1 pixel)."""
    mask = np.asarray(mask, dtype=bool)
    base = Image.fromarray(photo).convert("RGB")
    solid = Image.new("RGB", base.size, colour)
    out = Image.composite(Image.blend(base, solid, opacity), base, mask_image(mask))
    thickness = max(1, round(max(mask.shape) / 400))
    inner = ndimage.minimum_filter(mask, size=2 * thickness + 1, mode="constant", cval=False)
    out.paste(solid, (0, 0), mask_image(mask & ~inner))
    return out


#: sRGB -> CIE XYZ (D65) and the D65 white point, as scikit-image's ``rgb2lab`` uses them
_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]])
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_SRGB = np.arange(256) / 255.0
#: per channel, 8-bit sRGB value -> its XYZ contribution relative to white (linear light x matrix column)
_XYZ_TABLES = [(np.where(_SRGB > 0.04045, ((_SRGB + 0.055) / 1.055) ** 2.4, _SRGB / 12.92)[:, None]
                * _XYZ_FROM_RGB[:, c] / _D65_WHITE).astype(np.float32) for c in range(3)]


def srgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65, 2 degree observer) of 8-bit sRGB pixels (N x 3 uint8 -> N x 3 float32), the values
    scikit-image's ``rgb2lab`` gives (to 1e-4). Table lookups and sums, no matrix product: a BLAS thread pool woken
    here keeps spinning and slows the next network pass by a third on 2 cores."""
    xyz = _XYZ_TABLES[0][pixels[:, 0]] + _XYZ_TABLES[1][pixels[:, 1]] + _XYZ_TABLES[2][pixels[:, 2]]
    f = np.where(xyz > 0.008856, np.cbrt(xyz), np.float32(7.787) * xyz + np.float32(16 / 116))
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def tongue_stats(photo: np.ndarray, mask: np.ndarray) -> dict:
    """Area (pixels, fraction of the photo), bounding box and mean colour of the tongue.

    Mean colour: RGB (0-255) of the tongue's pixels as stored in the photo, and the mean of the pixels'
    CIE L*a*b* values (sRGB, D65, :func:`srgb_to_lab`); both None when no tongue was found.
    """
    mask = np.asarray(mask, dtype=bool)
    area = int(mask.sum())
    stats = {"tongue_area_px": area, "tongue_area_fraction": round(area / mask.size, 6),
             "bbox": bounding_box(mask), "mean_rgb": None, "mean_lab": None}
    if area:
        pixels = photo[mask] if photo.ndim == 3 else np.repeat(photo[mask][:, None], 3, axis=1)
        stats["mean_rgb"] = [round(float(v), 2) for v in pixels.mean(axis=0, dtype=np.float64)]
        lab = srgb_to_lab(pixels)
        stats["mean_lab"] = [round(float(v), 2) for v in lab.mean(axis=0, dtype=np.float64)]
    return stats
