"""One case: read photo and mask, check and repair the mask, resize, write ``<case>_0000.png`` + ``<case>.png``.

:func:`convert_case` runs in worker processes; everything it needs travels in its (picklable) arguments.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nnunet_tongue.photos import (
    BadInput,
    Finding,
    apply_exif_orientation,
    open_image,
    photo_to_rgb,
    resize_photo,
    scaled_size,
)
from nnunet_tongue.conversion.labelme import draw_tongue, embedded_photo, load_labelme
from nnunet_tongue.conversion.layouts import CaseSource
from nnunet_tongue.conversion.masks import binarise, looks_inverted, mask_levels, resize_mask, stray_regions
from nnunet_tongue.conversion.report import ERROR, WARNING, CaseRecord, Problem, display_path
from nnunet_tongue.conversion.splits import TEST

ON_INVERTED = ("fix", "fail", "keep")


class OutputFull(Exception):
    """The output's file system is full (or over quota): no later case can be written either, so the run stops.
    Carries the case's error (:class:`Problem`)."""

    def __init__(self, problem: Problem):
        super().__init__(problem)  # the only argument: pickled back from a worker process as it was
        self.problem = problem
#: EXIF orientations (tag 0x0112) and what they do to the stored pixels
EXIF_TURNS = {
    2: "mirrored",
    3: "turned 180°",
    4: "flipped upside down",
    5: "mirrored and turned 90° counter-clockwise",
    6: "turned 90° clockwise",
    7: "mirrored and turned 90° clockwise",
    8: "turned 90° counter-clockwise",
}
#: PNG zlib level: 1 writes several times faster than the default 6 for a few % larger files
PNG_COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class CaseOptions:
    """Conversion settings shared by all cases."""

    root: Path  # problems name files relative to this folder
    max_size: int | None = None
    on_inverted: str = "fix"
    mask_values: dict[int, int] | None = None
    clean_specks: int | None = None
    labelme_label: str = "tongue"


@dataclass(frozen=True)
class CaseTask:
    case_id: str
    subset: str
    source: CaseSource


class _Findings:
    """Problems and CSV notes of one case."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.notes: list[str] = []

    def error(self, file: str, message: str, fix: str) -> None:
        self.problems.append(Problem(ERROR, file, message, fix))

    def warn(self, file: str, message: str, fix: str) -> None:
        self.problems.append(Problem(WARNING, file, message, fix))
        self.notes.append(message)

    def add(self, file: str, findings: list[Finding]) -> None:
        for f in findings:
            if f.warning:
                self.warn(file, f.message, f.fix)
            else:
                self.notes.append(f.message)

    @property
    def failed(self) -> bool:
        return any(p.severity == ERROR for p in self.problems)


def convert_case_safely(task: CaseTask, options: CaseOptions,
                        out_dir: Path | None) -> tuple[CaseRecord | None, list[Problem]]:
    """:func:`convert_case`, with an unexpected exception (a bug, memory) turned into an error naming the case's
    files, so that one bad case cannot end the run without the report."""
    try:
        return convert_case(task, options, out_dir)
    except OutputFull:
        raise
    except Exception as exc:  # noqa: BLE001 -- reported, with the file, as an error of this case
        src = task.source
        name = display_path(src.image if src.image is not None else src.labelme, options.root)
        other = src.labelme or src.mask
        pair = f" and {display_path(other, options.root)}" if other is not None and src.image is not None else ""
        return None, [
            Problem(
                ERROR,
                name,
                f"unexpected error while converting case {task.case_id} ({type(exc).__name__}: {exc})",
                f"check this photo{pair} (open them, export them again); if they look fine, report the error "
                "with the files",
            )
        ]


def convert_case(task: CaseTask, options: CaseOptions, out_dir: Path | None) -> tuple[CaseRecord | None, list[Problem]]:
    """Convert one case into ``out_dir`` (or only check it when ``out_dir`` is None).

    Returns its record (None when it has errors) and every problem found in it.
    """
    src, found = task.source, _Findings()
    mask_name = display_path(src.labelme or src.mask, options.root)
    photo_name = display_path(src.image, options.root) if src.image is not None else f"{mask_name}#imageData"
    try:
        doc = load_labelme(src.labelme) if src.labelme is not None else None
    except BadInput as bad:
        found.error(mask_name, bad.message, bad.fix)
        return None, found.problems

    photo = _read_photo(src.image if src.image is not None else doc, photo_name, found)
    if doc is not None:
        tongue = _draw_labelme(doc, photo, options.labelme_label, mask_name, found) if photo is not None else None
    else:
        tongue = _read_mask(src.mask, options.mask_values, mask_name, found)
    if photo is None or tongue is None:
        return None, found.problems
    rgb, raw_size, orientation = photo
    if tongue.shape != rgb.shape[:2]:
        found.error(mask_name, *_size_mismatch(tongue.shape, rgb.shape, raw_size, photo_name))
        return None, found.problems
    if doc is None and (orientation in (2, 3, 4) or (orientation in EXIF_TURNS and raw_size[0] == raw_size[1])):
        found.warn(mask_name, *_unverifiable_orientation(orientation, photo_name, task))

    tongue, inverted, specks = _check_mask(tongue, options, mask_name, found)
    if found.failed:
        return None, found.problems

    height, width = tongue.shape
    new_width, new_height, scale = scaled_size(width, height, options.max_size)
    if scale != 1.0:
        rgb = resize_photo(rgb, (new_width, new_height))
        tongue = resize_mask(tongue, (new_width, new_height))
        found.notes.append(f"resized {width}x{height} -> {new_width}x{new_height}")
    if out_dir is not None and not _write(out_dir, task, rgb, tongue, found):
        return None, found.problems

    record = CaseRecord(
        case_id=task.case_id,
        subset=task.subset,
        source_image=photo_name,
        source_mask=mask_name,
        original_width=width,
        original_height=height,
        stored_width=new_width,
        stored_height=new_height,
        scale=scale,
        inverted=inverted,
        specks=specks,
        notes=found.notes,
    )
    return record, found.problems


def _read_photo(source: Path | dict, name: str, found: _Findings) -> tuple[np.ndarray, tuple[int, int], int] | None:
    """8-bit RGB photo (EXIF-oriented), its stored size before orientation, and its EXIF orientation (1 = none);
    None after an error.

    ``source`` is the photo file or the LabelMe document embedding it.
    """
    try:
        im, high_bit_depth = open_image(embedded_photo(source) if isinstance(source, dict) else source)
        raw_size = im.size
        im, orientation = apply_exif_orientation(im)
        if orientation != 1:
            found.notes.append(f"photo EXIF orientation {orientation} applied")
        rgb, findings = photo_to_rgb(im, high_bit_depth)
    except BadInput as bad:
        found.error(name, bad.message, bad.fix)
        return None
    except OSError as exc:  # vanished since the folder was listed, a broken link, no permission, an I/O error
        found.error(name, *_unreadable(exc))
        return None
    found.add(name, findings)
    return rgb, raw_size, orientation


def _read_mask(path: Path, mask_values: dict[int, int] | None, name: str, found: _Findings) -> np.ndarray | None:
    """Tongue yes/no of a mask file (its own EXIF orientation applied); None after an error."""
    try:
        im, _ = open_image(path)
        im, orientation = apply_exif_orientation(im)
        if orientation != 1:
            found.notes.append(f"mask's own EXIF orientation {orientation} applied")
        values, full_scale, level_findings = mask_levels(im)
        tongue, findings = binarise(values, full_scale, mask_values)
    except BadInput as bad:
        found.error(name, bad.message, bad.fix)
        return None
    except OSError as exc:
        found.error(name, *_unreadable(exc))
        return None
    found.add(name, level_findings + findings)
    return tongue


def _draw_labelme(doc: dict, photo: tuple[np.ndarray, tuple[int, int], int], label: str, name: str,
                  found: _Findings) -> np.ndarray | None:
    """Tongue yes/no drawn from a LabelMe document at the photo's size; None after an error."""
    rgb = photo[0]
    try:
        tongue, findings = draw_tongue(doc, (rgb.shape[1], rgb.shape[0]), label)
    except BadInput as bad:
        found.error(name, bad.message, bad.fix)
        return None
    found.add(name, findings)
    return tongue


def _write(out_dir: Path, task: CaseTask, rgb: np.ndarray, tongue: np.ndarray, found: _Findings) -> bool:
    """Write ``<case>_0000.png`` and ``<case>.png`` into the train or test folders; False after an error."""
    suffix = "Ts" if task.subset == TEST else "Tr"
    image_file = out_dir / f"images{suffix}" / f"{task.case_id}_0000.png"
    label_file = out_dir / f"labels{suffix}" / f"{task.case_id}.png"
    try:
        Image.fromarray(rgb).save(image_file, compress_level=PNG_COMPRESS_LEVEL)
        Image.fromarray(tongue.astype(np.uint8)).save(label_file, compress_level=PNG_COMPRESS_LEVEL)
    except OSError as exc:
        problem = Problem(ERROR, str(out_dir), f"cannot write case {task.case_id} ({exc})",
                          "free disk space, or choose another output folder")
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputFull(problem) from None
        found.problems.append(problem)
        return False
    return True


def _check_mask(tongue: np.ndarray, options: CaseOptions, mask_name: str,
                found: _Findings) -> tuple[np.ndarray, bool, int]:
    """Inverted-mask rule, stray specks, empty and full masks. Returns the mask, inverted?, number of specks."""
    inverted = looks_inverted(tongue)
    if inverted and options.on_inverted == "fail":
        found.error(mask_name, "inverted mask: the tongue is stored as background",
                    "fix the mask (tongue = white/1), or rerun with --on-inverted fix")
    elif inverted and options.on_inverted == "fix":
        tongue = ~tongue
        found.warn(mask_name, "inverted mask (tongue stored as background): tongue and background swapped",
                   "none needed; check the mask, or use --on-inverted keep if it was right")
    elif inverted:
        found.warn(mask_name, "mask looks inverted (tongue stored as background): kept as given (--on-inverted keep)",
                   "check the mask")

    tongue, strays, dropped = stray_regions(tongue, options.clean_specks)
    if strays:
        sizes = ", ".join(str(s) for s in strays[:10]) + (", ..." if len(strays) > 10 else "")
        if options.clean_specks is None:
            found.warn(mask_name, f"{len(strays)} stray region(s) besides the tongue ({sizes} px): kept",
                       "check the mask; --clean-specks PX removes regions smaller than PX pixels")
        else:
            found.warn(mask_name,
                       f"{len(strays)} stray region(s) besides the tongue ({sizes} px): removed the {len(dropped)} "
                       f"smaller than {options.clean_specks} px",
                       "none needed")

    if not tongue.any():
        found.warn(mask_name, "empty mask (no tongue pixels): kept as a photo without tongue",
                   "draw the tongue, or remove the case if the photo shows one")
    elif tongue.all():
        found.warn(mask_name, "mask covers the whole image", "check the mask")
    return tongue, inverted, len(strays)


def _size_mismatch(mask_shape: tuple[int, ...], photo_shape: tuple[int, ...], raw_size: tuple[int, int],
                   photo_name: str) -> tuple[str, str]:
    """Message and fix for a mask whose size differs from its photo's (after the photo's EXIF orientation)."""
    message = (f"size mismatch: mask is {mask_shape[1]}x{mask_shape[0]} but photo {photo_name} is "
               f"{photo_shape[1]}x{photo_shape[0]}")
    if (mask_shape[1], mask_shape[0]) == raw_size:
        return (
            message + " after its EXIF orientation; the mask fits the unrotated photo "
            "(the annotation tool ignored EXIF)",
            "rotate the mask the way the photo's EXIF orientation says, or save the photo without the EXIF "
            "orientation tag",
        )
    return message, "re-export the mask at the photo's size, or pair it with the right photo"


def _unverifiable_orientation(orientation: int, photo_name: str, task: CaseTask) -> tuple[str, str]:
    """Message and fix for a photo whose EXIF orientation keeps its size (a flip or 180°, or 90° of a square photo):
    a mask drawn on the stored, unturned pixels fits it just as well, so its orientation cannot be checked."""
    suffix = "Ts" if task.subset == TEST else "Tr"
    return (
        f"photo {photo_name} has EXIF orientation {orientation} ({EXIF_TURNS[orientation]}), applied; the mask has the "
        "photo's size either way, so whether it was drawn on the photo as shown cannot be checked",
        f"look at labels{suffix}/{task.case_id}.png over images{suffix}/{task.case_id}_0000.png (an overlay): "
        "if the mask is off, turn it the way the photo's EXIF orientation says, or save the photo without the "
        "orientation tag",
    )


def _unreadable(exc: OSError) -> tuple[str, str]:
    return (
        f"cannot read the file ({exc.strerror or exc})",
        "check that it exists and is readable (not a broken link), or remove it",
    )
