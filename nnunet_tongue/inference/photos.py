"""Reading photos for ``segment`` exactly as ``convert`` read the training photos.

A phone stores a portrait photo as landscape pixels plus an EXIF ``Orientation`` tag; viewers rotate it
on display. Every output of ``segment`` is in the *displayed* orientation. Decoding, orientation and the
turning of greyscale, palette, 16-bit, CMYK and transparent images into 8-bit RGB are the converter's
own functions (:mod:`nnunet_tongue.dataset_conversion.images`), so a photo reaches the network the way
the training photos did (for example: transparency is dropped, not composited).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from nnunet_tongue.dataset_conversion.images import (
    PHOTO_SUFFIXES,
    BadInput,
    apply_exif_orientation,
    open_image,
    photo_to_rgb,
)

__all__ = ["PHOTO_SUFFIXES", "PhotoError", "list_photos", "load_photo", "as_model_channels"]


class PhotoError(Exception):
    """A photo that cannot be read (missing, empty, corrupt, truncated, not an image, unsupported format)."""


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


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
                           key=_natural_key)
        elif path.exists():
            found = [path]
        else:
            raise FileNotFoundError(f"input not found: {path}")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                photos.append(p)
    return photos


def load_photo(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a photo fully, in displayed orientation -> ``(uint8 RGB [H, W, 3], EXIF orientation (1 = none))``.

    Raises :class:`PhotoError` with the reason when the file cannot be used.
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
    except (OSError, ValueError, MemoryError) as e:  # anything the converter's reader does not name
        raise PhotoError(f"cannot read: {e.__class__.__name__}: {e}") from None
    return np.ascontiguousarray(rgb, dtype=np.uint8), orientation


def as_model_channels(image: np.ndarray, channels: int = 3) -> np.ndarray:
    """An in-memory image -> what the network takes: uint8 [H, W, 3] (RGB model) or [H, W] (greyscale model).

    Accepts (H, W), (H, W, 1), (H, W, 3) and (H, W, 4) (alpha dropped, as ``convert`` does), uint8 or
    other numbers (floats in [0, 1] are taken as fractions of 255).
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if channels == 3:
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr)
    if channels == 1:
        return arr if arr.ndim == 2 else np.asarray(Image.fromarray(arr).convert("L"))
    raise ValueError(f"models with {channels} input channels are not supported (1 = greyscale, 3 = RGB)")
