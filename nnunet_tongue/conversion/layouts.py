"""Finding the cases: which layout a source folder has, and which photo goes with which mask or annotation."""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_tongue.conversion.labelme import embedded_photo, load_labelme, photo_file
from nnunet_tongue.conversion.report import ERROR, WARNING, Problem, display_path
from nnunet_tongue.photos import MASK_SUFFIXES, PHOTO_SUFFIXES, BadInput

LAYOUTS = ("auto", "paired", "biohit", "labelme")
#: folder names (case-insensitive) that auto-detection takes for photos and for masks
IMAGE_FOLDER_NAMES = ("images", "image", "imgs", "img", "photos", "photo")
MASK_FOLDER_NAMES = ("masks", "mask", "labels", "label", "gt", "groundtruth", "ground_truth", "annotations",
                     "segmentations")
#: a mask named ``<photo stem><suffix>`` also matches, e.g. ``a_mask.png`` for ``a.jpg``
MASK_STEM_SUFFIXES = ("_mask", "-mask", "_masks", "_label", "-label", "_labels", "_gt", "_seg", "_segmentation")


@dataclass(frozen=True)
class CaseSource:
    """Where one case comes from. ``source_id`` is the photo's (or annotation's) file stem."""

    source_id: str
    image: Path | None  # None: the photo is embedded in the LabelMe JSON
    mask: Path | None = None
    labelme: Path | None = None


@dataclass
class Discovery:
    """The cases of a source, its layout, and the problems met while pairing files."""

    layout: str
    root: Path  # problems name files relative to this folder
    cases: list[CaseSource] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def discover(source: Path | None, layout: str = "auto", images: Path | None = None,
             masks: Path | None = None) -> Discovery:
    """All cases of ``source`` (or of the explicit ``images``/``masks`` folders) in the given or detected layout."""
    if images is not None or masks is not None:
        if images is None or masks is None:
            raise ValueError("--images and --masks go together: give both folders")
        if layout not in ("auto", "paired"):
            raise ValueError(f"--images and --masks mean the paired layout, not {layout!r}")
        root = (Path(source) if source is not None
                else Path(os.path.commonpath([Path(images).absolute(), Path(masks).absolute()])))
        return _paired(Path(images), Path(masks), root, "paired")
    if source is None:
        raise ValueError("give a source folder, or both --images and --masks")
    root = Path(source)
    if not root.is_dir():
        return _failed(layout, root, "source folder not found", "check the path")
    if layout == "auto":
        layout, problem = _detect(root)
        if problem is not None:
            return Discovery(layout, root, problems=[problem])
    if layout == "paired":
        return _paired_in(root)
    if layout == "biohit":
        return _biohit(root)
    if layout == "labelme":
        return _labelme(root)
    raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def _detect(root: Path) -> tuple[str, Problem | None]:
    folders = _subfolders(root)
    if "dataset" in folders and "groundtruth" in folders:
        return "biohit", None
    if any(n in folders for n in IMAGE_FOLDER_NAMES) and any(n in folders for n in MASK_FOLDER_NAMES):
        return "paired", None
    if any(p.suffix.lower() == ".json" for p in _visible_files(root)):
        return "labelme", None
    return "auto", Problem(
        ERROR,
        str(root),
        "cannot tell the layout: no images/ + masks/ (or labels/) folders, no BioHit dataset/ + groundtruth/, "
        "no LabelMe *.json",
        "pass --layout, or --images DIR --masks DIR",
    )


def _paired_in(root: Path) -> Discovery:
    folders = _subfolders(root)
    found_images = [folders[n] for n in IMAGE_FOLDER_NAMES if n in folders]
    found_masks = [folders[n] for n in MASK_FOLDER_NAMES if n in folders]
    for kind, found, option in (("photo", found_images, "--images"), ("mask", found_masks, "--masks")):
        if len(found) != 1:
            what = "no" if not found else "several: " + ", ".join(f.name for f in found)
            return _failed("paired", root, f"{what} {kind} folders", f"pass {option} DIR")
    return _paired(found_images[0], found_masks[0], root, "paired")


def _biohit(root: Path) -> Discovery:
    """The original BioHit release: ``dataset/N.bmp`` + ``groundtruth/mask1/N.bmp`` (or ``groundtruth/mask/``)."""
    folders = _subfolders(root)
    truth = _subfolders(folders["groundtruth"]) if "groundtruth" in folders else {}
    mask_folder = truth.get("mask1") or truth.get("mask")
    if "dataset" not in folders or mask_folder is None:
        return _failed("biohit", root,
                       "not the BioHit release: needs dataset/ and groundtruth/mask1/ (or groundtruth/mask/)",
                       "pass --layout paired, or --images DIR --masks DIR")
    found = _paired(folders["dataset"], mask_folder, root, "biohit")
    if "mask1" in truth and "mask" in truth:
        found.problems.append(
            Problem(WARNING, display_path(truth["mask"], root),
                    "both groundtruth/mask1/ and groundtruth/mask/ exist: using mask1",
                    "pass --images and --masks to choose")
        )
    return found


def _paired(images: Path, masks: Path, root: Path, layout: str) -> Discovery:
    """Photos in ``images`` matched with masks in ``masks`` by file stem (case-insensitive)."""
    found = Discovery(layout, root)
    for folder in (images, masks):
        if not folder.is_dir():
            found.problems.append(Problem(ERROR, display_path(folder, root), "folder not found", "check the path"))
    if found.problems:
        return found
    photos = _by_stem(images, PHOTO_SUFFIXES, "photo", root, found.problems)
    mask_files: dict[str, list[Path]] = {}
    for key, files in _by_stem(masks, MASK_SUFFIXES, "mask", root, found.problems).items():
        if key not in photos:  # "a_mask" belongs to photo "a" unless a photo "a_mask" exists
            key = next((key[: -len(s)] for s in MASK_STEM_SUFFIXES
                        if key.endswith(s) and key[: -len(s)] in photos), key)
        mask_files.setdefault(key, []).extend(files)
    images_name, masks_name = display_path(images, root) + "/", display_path(masks, root) + "/"
    for key in sorted(set(photos) | set(mask_files)):
        these_photos, these_masks = photos.get(key, []), mask_files.get(key, [])
        for kind, files in (("photos", these_photos), ("masks", these_masks)):
            if len(files) > 1:
                names = ", ".join(display_path(f, root) for f in files)
                found.problems.append(
                    Problem(ERROR, display_path(files[0], root),
                            f"{len(files)} {kind} share the stem '{files[0].stem}': {names}",
                            "rename or remove all but one (photos and masks are matched by file stem)")
                )
        if len(these_photos) > 1 or len(these_masks) > 1:
            continue
        if not these_masks:
            found.problems.append(
                Problem(ERROR, display_path(these_photos[0], root),
                        f"missing mask: no mask with the stem '{these_photos[0].stem}' in {masks_name}",
                        "add its mask, or remove the photo")
            )
        elif not these_photos:
            found.problems.append(
                Problem(ERROR, display_path(these_masks[0], root),
                        f"orphan mask: no photo with a matching stem in {images_name}",
                        "add its photo, or remove the mask (or fix the file name)")
            )
        else:
            found.cases.append(CaseSource(these_photos[0].stem, these_photos[0], mask=these_masks[0]))
    return found


def _labelme(root: Path) -> Discovery:
    """LabelMe: ``*.json`` in ``root``, each with its photo in ``root`` or embedded; every photo needs exactly one."""
    found = Discovery("labelme", root)
    claimed: dict[Path, list[Path]] = {}  # photo -> the annotations that name it
    by_key: dict[str, list[Path]] = {}
    for path in _visible_files(root):
        if path.suffix.lower() == ".json":
            by_key.setdefault(_key(path.stem), []).append(path)
    for key, jsons in sorted(by_key.items()):
        if len(jsons) > 1:
            names = ", ".join(display_path(j, root) for j in jsons)
            found.problems.append(Problem(ERROR, display_path(jsons[0], root),
                                          f"{len(jsons)} annotations share the stem '{jsons[0].stem}': {names}",
                                          "rename or remove all but one"))
            continue
        json_path = jsons[0]
        try:
            doc = load_labelme(json_path)
            photo = photo_file(doc, json_path, root)
            if photo is None and embedded_photo(doc) is None:
                raise BadInput(
                    f"no photo: imagePath {doc.get('imagePath')!r} not found beside it and no imageData embedded",
                    "put the photo beside the JSON, or save the annotation with image data",
                )
        except BadInput as bad:
            found.problems.append(Problem(ERROR, display_path(json_path, root), bad.message, bad.fix))
            continue
        if photo is not None:
            claimed.setdefault(photo.resolve(), []).append(json_path)
        found.cases.append(CaseSource(json_path.stem, photo, labelme=json_path))
    for photo, jsons in sorted(claimed.items()):
        if len(jsons) > 1:  # one photo twice: it could land in training and test at once
            names = " and ".join(display_path(j, root) for j in jsons)
            found.problems.append(
                Problem(ERROR, display_path(photo, root), f"{len(jsons)} annotations name this photo: {names}",
                        "keep one annotation per photo: remove the extra one, or correct its imagePath")
            )
    for path in _visible_files(root):
        if path.suffix.lower() in PHOTO_SUFFIXES and path.resolve() not in claimed:
            found.problems.append(Problem(ERROR, display_path(path, root),
                                          "missing annotation: no LabelMe JSON refers to this photo",
                                          f"annotate it (save {path.stem}.json beside it), or move it out"))
    return found


def _by_stem(folder: Path, suffixes: tuple[str, ...], kind: str, root: Path,
             problems: list[Problem]) -> dict[str, list[Path]]:
    """Files of ``folder`` grouped by stem (NFC, case-folded); subfolders and other file types are reported and
    skipped."""
    grouped: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            problems.append(Problem(WARNING, display_path(path, root),
                                    "subfolder ignored (subfolders are not searched)",
                                    "move its files up if they belong to the dataset"))
        elif path.suffix.lower() not in suffixes:
            problems.append(Problem(WARNING, display_path(path, root),
                                    f"ignored: not a {kind} file type ({', '.join(suffixes)})",
                                    "convert it to PNG or JPEG if it belongs to the dataset"))
        else:
            grouped.setdefault(_key(path.stem), []).append(path)
    return grouped


def _key(stem: str) -> str:
    return unicodedata.normalize("NFC", stem).casefold()


def _subfolders(folder: Path) -> dict[str, Path]:
    return {p.name.casefold(): p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def _visible_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]


def _failed(layout: str, root: Path, message: str, fix: str) -> Discovery:
    return Discovery(layout, root, problems=[Problem(ERROR, str(root), message, fix)])
