"""Reading photos: open and fully decode any file, apply EXIF orientation, bring every pixel format to 8-bit RGB."""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp")
EXIF_ORIENTATION = 0x0112

_GREY = ("L", "LA", "1")
_ALPHA = ("RGBA", "RGBa", "LA", "PA")
_OTHER_COLOUR = ("CMYK", "YCbCr", "LAB", "HSV")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class BadInput(Exception):
    """A file cannot be used: ``message`` says why, ``fix`` what to do."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass(frozen=True)
class Finding:
    """Something done to or noticed about a file. Warnings go into the report, notes only into the CSV."""

    message: str
    warning: bool = False
    fix: str = ""


def open_image(source: Path | bytes) -> tuple[Image.Image, bool]:
    """Open and fully decode an image file (or its bytes), so that truncated files fail here.

    Returns the image and whether the file stored more than 8 bits per channel (Pillow reduces
    16-bit RGB to 8 bits on its own, so this is only visible before decoding). Raises
    :class:`BadInput` for empty, truncated, corrupt and non-image files.
    """
    data_len = len(source) if isinstance(source, bytes) else source.stat().st_size
    if data_len == 0:
        raise BadInput("file is empty (0 bytes)", "copy or export it again, or remove it")
    try:
        im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        high_bit_depth = any(";16" in str(tile.args) for tile in im.tile)
        im.load()
    except UnidentifiedImageError:
        raise BadInput("not an image Pillow can read", "check that it really is a photo/mask, re-export it as PNG or JPEG, or remove it") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as exc:
        raise BadInput(f"truncated or corrupt image ({exc})", "copy or export it again from the original, or remove it") from None
    return im, high_bit_depth


def apply_exif_orientation(im: Image.Image) -> tuple[Image.Image, int]:
    """Rotate/flip ``im`` as its own EXIF Orientation tag says; returns the image and the tag (1 = none)."""
    orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
    if orientation == 1:
        return im, 1
    return ImageOps.exif_transpose(im), orientation


def photo_to_rgb(im: Image.Image, high_bit_depth: bool = False) -> tuple[np.ndarray, list[Finding]]:
    """8-bit RGB pixels ``[H, W, 3]`` of a decoded photo, with a warning for every non-RGB format converted."""
    mode = im.mode
    if mode in _SIXTEEN_BIT:
        grey = np.asarray(im).astype(np.float64)
        grey8 = np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey8[..., None], 3, axis=2), [
            Finding("16-bit greyscale photo: scaled to 8 bits (value / 257) and copied into R, G and B", True, "use colour photos if you have them")
        ]
    findings = []
    if high_bit_depth:
        findings.append(Finding("16-bit-per-channel photo: reduced to 8 bits per channel", True, "none needed if the photo looks right"))
    if mode in _GREY:
        findings.append(Finding(f"greyscale photo (mode {mode}): copied into R, G and B", True, "use colour photos if you have them"))
    elif mode in _ALPHA:
        findings.append(Finding(f"photo has an alpha channel (mode {mode}): transparency dropped", True, "none needed if the photo looks right"))
    elif mode == "P":
        findings.append(Finding("palette (indexed-colour) photo: converted to RGB", True, "use the original photo if you have it"))
    elif mode in _OTHER_COLOUR:
        findings.append(Finding(f"{mode} photo: converted to RGB by Pillow (no colour management)", True, "export it as RGB if the colours look wrong"))
    elif mode not in ("RGB", "RGBX"):
        raise BadInput(f"unsupported pixel format (Pillow mode {mode})", "export it as an 8-bit RGB JPEG or PNG")
    return np.asarray(im.convert("RGB")), findings


def scaled_size(width: int, height: int, max_size: int | None) -> tuple[int, int, float]:
    """Size after shrinking so that the longest side is at most ``max_size`` (never enlarged): ``(w, h, scale)``.

    The segment command uses the same rule to bring photos to the training resolution and back.
    """
    longest = max(width, height)
    if max_size is None or longest <= max_size:
        return width, height, 1.0
    scale = max_size / longest
    return max(1, math.floor(width * scale + 0.5)), max(1, math.floor(height * scale + 0.5)), scale


def resize_photo(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Photo resized to ``size`` (W, H) with Lanczos filtering."""
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
