"""Finding, matching and reading the masks and photos of an evaluation.

Cases are matched by file stem: ``pred/12.png`` is scored against ``gt/12.png``. A photo for case
``12`` is ``12.<ext>`` or nnU-Net's ``12_0000.<ext>`` in the photo folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from nnunet_tongue.photos import LOSSLESS_MASK_SUFFIXES, PHOTO_SUFFIXES, natural_key

#: How many file names an error message lists before it summarises the rest.
_LIST_LIMIT = 10


class EvaluationError(Exception):
    """A problem with the inputs of an evaluation; the message names the files and the fix."""


def name_list(names: list[str]) -> str:
    """``a, b, c`` with at most a few names, then ``... and N more``."""
    shown = ", ".join(names[:_LIST_LIMIT])
    return shown if len(names) <= _LIST_LIMIT else f"{shown} ... and {len(names) - _LIST_LIMIT} more"


def _files_by_stem(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise EvaluationError(f"{what} folder {folder} does not exist")
    found: dict[str, Path] = {}
    clashes: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            if path.stem in found:
                clashes.append(f"{found[path.stem].name} / {path.name}")
            found[path.stem] = path
    if clashes:
        raise EvaluationError(
            f"{what} folder {folder} has more than one file per case: {name_list(clashes)}; keep one per case"
        )
    return found


def list_masks(folder: Path, what: str) -> dict[str, Path]:
    """Case id -> mask file in ``folder``; ``what`` ("prediction" / "ground-truth") goes in errors."""
    masks = _files_by_stem(folder, LOSSLESS_MASK_SUFFIXES, what)
    if not masks:
        raise EvaluationError(f"no {what} masks in {folder} (looked for {', '.join(LOSSLESS_MASK_SUFFIXES)})")
    return masks


def match_cases(
    preds: dict[str, Path], gts: dict[str, Path], ignore_missing: bool = False
) -> tuple[list[str], list[str]]:
    """``(cases to score, ground-truth cases skipped for lack of a prediction)``, naturally sorted.

    Predictions without ground truth are always an error; ground truth without a prediction is one
    unless ``ignore_missing`` (scoring a test split against a folder holding every mask).
    """
    extra = sorted(set(preds) - set(gts), key=natural_key)
    if extra:
        names = [preds[c].name for c in extra]
        raise EvaluationError(
            f"{len(extra)} prediction(s) have no ground truth of the same name in {next(iter(gts.values())).parent}: "
            f"{name_list(names)}. Remove them from the prediction folder, or point --gt (gt_dir) at the folder "
            "that holds their masks."
        )
    missing = sorted(set(gts) - set(preds), key=natural_key)
    if missing and not ignore_missing:
        names = [gts[c].name for c in missing]
        raise EvaluationError(
            f"{len(missing)} ground-truth case(s) have no prediction in {next(iter(preds.values())).parent}: "
            f"{name_list(names)}. Predict them, or pass --ignore-missing (ignore_missing=True) to score only "
            "the predicted cases."
        )
    return sorted(preds, key=natural_key), missing


def find_photos(folder: Path, cases: list[str]) -> dict[str, Path]:
    """Case id -> photo in ``folder`` (``<case>.<ext>`` or ``<case>_0000.<ext>``); cases without one are left out."""
    photos = _files_by_stem(folder, PHOTO_SUFFIXES, "photo")
    found = {}
    for case in cases:
        photo = photos.get(case) or photos.get(f"{case}_0000")
        if photo is not None:
            found[case] = photo
    return found


def read_mask(path: Path, label: int | None = None) -> np.ndarray:
    """Boolean mask from an image file: foreground = value > 0, or value == ``label`` when given.

    Grey, palette and 16-bit images are read as they are; an RGB(A) mask must be grey (R = G = B).
    """
    try:
        with Image.open(path) as image:
            values = np.asarray(image)
    except OSError as error:
        raise EvaluationError(f"cannot read mask {path}: {error}") from error
    if values.ndim == 3:
        colour = values[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])):
            raise EvaluationError(f"mask {path} is a colour image; save masks as single-channel label images")
        values = colour[..., 0]
    if label is None:
        return values > 0
    mask = values == label
    if not mask.any() and values.any():  # scoring it would count a tongue drawn with another value as empty
        found = ", ".join(map(str, np.unique(values[values > 0])[:5]))
        raise EvaluationError(f"mask {path} has no pixel of value {label} (--label) but other non-zero values "
                              f"({found}): its tongue is coded with another value; leave --label out to take any "
                              "value > 0 as tongue")
    return mask


def read_photo(path: Path, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 array of the photo at ``size`` (W, H), resized for display when it differs."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        if rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(rgb)
