"""LabelMe annotations: read the JSON, find its photo (file beside it or embedded imageData), draw the tongue
polygons."""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from nnunet_tongue.photos import PHOTO_SUFFIXES, BadInput, Finding


def load_labelme(path: Path) -> dict:
    """The parsed LabelMe document; :class:`BadInput` when it is not readable JSON or not LabelMe."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"not readable JSON ({exc})", "save it again from LabelMe, or remove it") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise BadInput("not a LabelMe annotation (no 'shapes' list)",
                       "move files that are not LabelMe annotations out of the folder")
    return doc


def photo_file(doc: dict, json_path: Path, root: Path) -> Path | None:
    """The photo file the annotation belongs to: ``imagePath`` (relative to the JSON) when it lies inside the
    project folder ``root``, else a photo of that name or of the JSON's stem beside the JSON; ``None`` when there
    is none (the photo may be embedded as imageData).

    An ``imagePath`` that leads out of ``root`` is never followed: :class:`BadInput` when it is the only way to
    the photo (no photo beside the JSON, nothing embedded), as that photo would not travel with the project.
    """
    image_path = doc.get("imagePath")
    outside = False
    names = []
    if isinstance(image_path, str) and image_path:
        image_path = image_path.replace("\\", "/")
        candidate = Path(os.path.normpath(json_path.parent.absolute() / image_path))
        outside = not _inside(candidate, root)
        if not outside and candidate.is_file():
            return candidate
        names.append(Path(image_path).name)
    names += ([json_path.stem + suffix for suffix in PHOTO_SUFFIXES]
              + [json_path.stem + suffix.upper() for suffix in PHOTO_SUFFIXES])
    for name in names:
        candidate = json_path.parent / name
        if name and candidate.is_file():
            return candidate
    if outside and not doc.get("imageData"):
        raise BadInput(
            f"imagePath {doc['imagePath']!r} points outside the project folder {root}",
            "put the photo in the project folder (beside the JSON), or save the annotation with image data "
            "(imageData) in LabelMe",
        )
    return None


def embedded_photo(doc: dict) -> bytes | None:
    """The photo embedded as base64 ``imageData``, or ``None``; :class:`BadInput` when it is not base64."""
    data = doc.get("imageData")
    if not data:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise BadInput("imageData is not valid base64", "save the annotation again from LabelMe") from None


def draw_tongue(doc: dict, size: tuple[int, int], label: str) -> tuple[np.ndarray, list[Finding]]:
    """Mask (tongue = True) of the polygons labelled ``label`` (case-insensitive), drawn as LabelMe draws them.

    ``size`` is the photo's (W, H) after EXIF orientation; it must match imageWidth/imageHeight.
    """
    declared = (doc.get("imageWidth"), doc.get("imageHeight"))
    if None not in declared and tuple(declared) != size:
        raise BadInput(
            f"annotation is for a {declared[0]}x{declared[1]} image but the photo is {size[0]}x{size[1]}",
            "annotate the photo as it is now (or restore the photo that was annotated)",
        )
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    ignored: set[str] = set()
    tongue_shapes = 0
    for shape in doc["shapes"]:
        name = str(shape.get("label", "")).strip()
        if name.casefold() != label.casefold():
            ignored.add(name)
            continue
        shape_type = shape.get("shape_type") or "polygon"
        points = shape.get("points") or []
        if shape_type != "polygon":
            raise BadInput(f"a '{name}' shape is a {shape_type}, not a polygon", "redraw it as a polygon in LabelMe")
        if len(points) < 3:
            raise BadInput(f"a '{name}' polygon has {len(points)} point(s)",
                           "redraw it with at least 3 points, or delete it")
        try:
            xy = [(float(x), float(y)) for x, y in points]
        except (TypeError, ValueError):
            raise BadInput(f"a '{name}' polygon has malformed points",
                           "save the annotation again from LabelMe") from None
        draw.polygon(xy, fill=1, outline=1)
        tongue_shapes += 1
    if not tongue_shapes and ignored:
        found = ", ".join(repr(n) for n in sorted(ignored))
        example = next(iter(ignored)) if len(ignored) == 1 else "NAME"
        raise BadInput(
            f"no shape labelled '{label}' (labels found: {found}): the tongue would be missing",
            f"pass --labelme-label {example} if that is the tongue's label, or relabel the tongue shapes '{label}' "
            "in LabelMe (delete the other shapes if the photo shows no tongue)",
        )
    findings = []
    if ignored:
        names = ", ".join(repr(n) for n in sorted(ignored))
        findings.append(Finding(f"shapes not labelled '{label}' ignored: {names}", True,
                                f"relabel tongue shapes '{label}' or pass --labelme-label"))
    return np.asarray(canvas) > 0, findings


def _inside(path: Path, root: Path) -> bool:
    """``path`` (absolute, normalised) lies in ``root`` or below, by name (links are not followed)."""
    base = os.path.normpath(root.absolute())
    return os.path.commonpath([base, str(path)]) == base
