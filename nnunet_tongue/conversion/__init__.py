"""Tongue photos + masks / LabelMe / BioHit -> an nnU-Net raw dataset (``nnunet-tongue convert``).

``convert.py`` is the API and the command; ``layouts.py`` finds the cases, ``cases.py`` converts one,
``masks.py`` binarises masks, ``labelme.py`` reads annotations, ``splits.py`` decides train/test,
``naming.py`` makes case ids, ``output.py`` writes the dataset, ``report.py`` collects problems.
Photos are read by :mod:`nnunet_tongue.photos`. Rules: docs/conversion.md.
"""

from __future__ import annotations

#: key the converter adds to dataset.json; nnU-Net copies dataset.json into every model folder, so
#: ``segment`` reads the training scale back from there
CONVERSION_KEY = "nnunet_tongue_conversion"
#: dataset.json's channels and labels for every tongue dataset the package writes (RGB photo, tongue = 1)
RGB_CHANNELS = {0: "R", 1: "G", 2: "B"}
TONGUE_LABELS = {"background": 0, "tongue": 1}


def training_max_size(dataset_json: dict) -> int | None:
    """Longest side the training photos were downscaled to at conversion (None: kept at full size)."""
    value = (dataset_json.get(CONVERSION_KEY) or {}).get("max_size")
    return int(value) if value else None


def segment_max_size(dataset_json: dict) -> int | None:
    """Longest side ``segment`` brings photos to by default: the size recorded for the model
    (``segment_max_size``; the bundled model's is larger than its training photos, measured better on held-out
    photos), else the training photos' (:func:`training_max_size`)."""
    value = (dataset_json.get(CONVERSION_KEY) or {}).get("segment_max_size")
    return int(value) if value else training_max_size(dataset_json)


def training_tongue_extent(dataset_json: dict) -> dict | None:
    """5th percentile, median and 95th percentile (``p5``, ``median``, ``p95``) of the training tongues' extent
    in pixels at the training resolution (None: not recorded, e.g. converted before 0.2)."""
    return (dataset_json.get(CONVERSION_KEY) or {}).get("tongue_extent_px")
