"""Photo and mask files: which files count, in what order, and how a photo is read.

One reader for the whole package: ``convert`` reads the training photos, ``segment`` and the app read
the photos to segment, ``evaluate`` finds masks and photos, all through this module, so a photo reaches
the network the way the training photos did. Reading = open and fully decode the file (truncated files
fail here), apply its EXIF orientation (outputs are in the *displayed* orientation), bring every pixel
format to 8-bit RGB (transparency dropped, not composited).
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: photo files a folder is searched for (any case)
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: mask files ``convert`` accepts (lossy ones with a warning)
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif", ".jpg", ".jpeg")
#: mask files ``evaluate`` scores: lossless only (JPEG would blur the labels)
LOSSLESS_MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
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
        raise BadInput("not an image Pillow can read",
                       "check that it really is a photo/mask, re-export it as PNG or JPEG, or remove it") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as exc:
        raise BadInput(f"truncated or corrupt image ({exc})",
                       "copy or export it again from the original, or remove it") from None
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
            Finding("16-bit greyscale photo: scaled to 8 bits (value / 257) and copied into R, G and B", True,
                    "use colour photos if you have them")
        ]
    findings = []
    if high_bit_depth:
        findings.append(Finding("16-bit-per-channel photo: reduced to 8 bits per channel", True,
                                "none needed if the photo looks right"))
    if mode in _GREY:
        findings.append(Finding(f"greyscale photo (mode {mode}): copied into R, G and B", True,
                                "use colour photos if you have them"))
    elif mode in _ALPHA:
        findings.append(Finding(f"photo has an alpha channel (mode {mode}): transparency dropped", True,
                                "none needed if the photo looks right"))
    elif mode == "P":
        findings.append(Finding("palette (indexed-colour) photo: converted to RGB", True,
                                "use the original photo if you have it"))
    elif mode in _OTHER_COLOUR:
        findings.append(Finding(f"{mode} photo: converted to RGB by Pillow (no colour management)", True,
                                "export it as RGB if the colours look wrong"))
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


class PhotoError(Exception):
    """A photo that cannot be read (missing, empty, corrupt, truncated, not an image, unsupported format)."""


def natural_key(name: str) -> list[int | str]:
    """Sort key that puts ``2`` before ``10`` (case-blind)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_photos(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files and folders -> photo paths, in the given order; a folder gives its photos (not recursive), 1, 2, 10 order.

    A file named explicitly is taken whatever its ending (and reported later if it is no photo); a folder
    gives its files ending in one of :data:`PHOTO_SUFFIXES` (any case). Raises :class:`FileNotFoundError`
    for an input that does not exist. Duplicates are dropped.
    """
    photos: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES),
                           key=lambda p: natural_key(p.name))
        elif path.exists():
            found = [path]
        else:
            raise FileNotFoundError(f"input not found: {path} (check the path; give photos or folders of photos, "
                                    f"ending in {', '.join(PHOTO_SUFFIXES)})")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                photos.append(p)
    return photos


def load_photo(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a photo fully, in displayed orientation -> ``(uint8 RGB [H, W, 3], EXIF orientation (1 = none))``.

    Raises :class:`PhotoError` with the reason and the fix when the file cannot be used.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise BadInput("file not found", "check the path")
        im, high_bit_depth = open_image(path)
        with im:
            im, orientation = apply_exif_orientation(im)
            rgb, _ = photo_to_rgb(im, high_bit_depth)
    except BadInput as e:
        raise PhotoError(f"{e.message} ({e.fix})") from None
    except (OSError, ValueError, MemoryError) as e:  # anything the reader above does not name
        raise PhotoError(f"cannot read: {e.__class__.__name__}: {e}") from None
    return np.ascontiguousarray(rgb, dtype=np.uint8), orientation
