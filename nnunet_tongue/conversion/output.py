"""The output side: target checks, a staging folder that becomes the dataset in one rename, the files around the cases."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path

from batchgenerators.utilities.file_and_folder_operations import save_json
from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

from nnunet_tongue import __version__
from nnunet_tongue.conversion import CONVERSION_KEY
from nnunet_tongue.conversion.report import ERROR, WARNING, CaseRecord, ConversionReport, Problem

#: dataset.json key that records how photos were scaled; the segment command reads it from the model folder
CASES_CSV = "conversion_cases.csv"
REPORT_TXT = "conversion_report.txt"
REPORT_JSON = "conversion_report.json"
SPLITS_FILE = "splits_final.json"
CSV_COLUMNS = (
    "case_id",
    "subset",
    "source_image",
    "source_mask",
    "original_width",
    "original_height",
    "stored_width",
    "stored_height",
    "scale",
    "inverted",
    "specks",
    "notes",
)


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name, e.g. ``Dataset501_Tongue``."""
    return f"Dataset{dataset_id:03d}_{name}"


def resolve_output_root(output_root: str | os.PathLike | None) -> Path:
    """``output_root``, else ``$nnUNet_raw``; ValueError when neither is set."""
    if output_root is not None:
        return Path(output_root)
    if os.environ.get("nnUNet_raw"):
        return Path(os.environ["nnUNet_raw"])
    raise ValueError("no output folder: pass -o/--output-root or set nnUNet_raw")


def check_target(output_root: Path, dataset_id: int, name: str, overwrite: bool) -> list[Problem]:
    """Problems with writing the dataset folder into ``output_root``: it exists (without ``overwrite``), another
    dataset has the same id, and (a warning) preprocessed data of an earlier dataset of that name exists."""
    folder_name = dataset_folder_name(dataset_id, name)
    target = output_root / folder_name
    problems = []
    if target.exists() and not target.is_dir():
        problems.append(Problem(ERROR, str(target), "exists and is not a folder", "remove it, or choose another -o/--output-root"))
    elif target.exists() and not overwrite:
        problems.append(Problem(ERROR, str(target), "dataset already exists", "pass --overwrite to replace it (the old one stays until the new one is complete), or choose another --dataset-id"))
    if output_root.is_dir():
        for other in sorted(output_root.glob(dataset_folder_name(dataset_id, "*"))):
            if other.name != folder_name and other.is_dir():
                problems.append(Problem(ERROR, str(other), f"nnU-Net dataset id {dataset_id} is already used by {other.name}", "choose another --dataset-id, or remove that dataset"))
    preprocessed = os.environ.get("nnUNet_preprocessed")
    if preprocessed and (Path(preprocessed) / folder_name).is_dir():
        problems.append(
            Problem(
                WARNING,
                str(Path(preprocessed) / folder_name),
                "preprocessed data of an earlier dataset with this name exists; nnU-Net trains on it, not on the new raw data",
                f"delete it and run nnUNetv2_plan_and_preprocess again (a {SPLITS_FILE} there takes precedence over the new one)",
            )
        )
    return problems


class Staging:
    """A hidden folder beside the target; :meth:`commit` renames it into place, :meth:`discard` removes it."""

    def __init__(self, output_root: Path, folder_name: str, with_test: bool):
        self._created = [p for p in (output_root, *output_root.parents) if not p.exists()]  # deepest first
        output_root.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{folder_name}.", suffix=".partial", dir=output_root))
        for sub in ("imagesTr", "labelsTr") + (("imagesTs", "labelsTs") if with_test else ()):
            (self.path / sub).mkdir()

    def commit(self, target: Path) -> None:
        """Put the staged dataset at ``target``; an existing one is moved aside first and deleted last."""
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old") if target.exists() else None
        if old is not None:
            os.replace(target, old)
        try:
            os.replace(self.path, target)
        except OSError:
            if old is not None:
                os.replace(old, target)
            raise
        if old is not None:
            shutil.rmtree(old)

    def discard(self) -> None:
        """Remove the staging folder, and the output folders it had to create when they are left empty."""
        shutil.rmtree(self.path, ignore_errors=True)
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:
                break


def open_staging(output_root: Path, folder_name: str, with_test: bool) -> Staging | Problem:
    """A :class:`Staging` folder, or an error naming the output folder when it cannot be written."""
    try:
        return Staging(output_root, folder_name, with_test)
    except OSError as exc:
        return Problem(ERROR, str(output_root), f"output folder not writable ({exc.strerror or exc})", "choose another -o/--output-root, or fix its permissions")


def measure_tongue_extent(labels: Path) -> dict | None:
    """5th percentile, median and 95th percentile of the tongue's extent (longest side of its bounding box, in
    pixels) over the label PNGs in ``labels``; None when no label holds a tongue. ``segment`` brings photos'
    tongues into this range (docs/inference.md, "Scale")."""
    import numpy as np
    from PIL import Image

    extents = []
    for path in sorted(labels.glob("*.png")):
        with Image.open(path) as im:
            mask = np.asarray(im) > 0
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if rows.size:
            extents.append(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)
    if not extents:
        return None
    p5, median, p95 = np.percentile(extents, [5, 50, 95])
    return {"p5": round(float(p5), 1), "median": round(float(median), 1), "p95": round(float(p95), 1),
            "n_cases": len(extents)}


def write_dataset_json(folder: Path, num_training: int, dataset_name: str, layout: str, max_size: int | None) -> None:
    """dataset.json by nnU-Net's helper: RGB channels, labels background/tongue, PNG, plus :data:`CONVERSION_KEY`
    (training scale: ``max_size`` and the training tongues' extent, from ``folder/labelsTr``)."""
    generate_dataset_json(
        str(folder),
        channel_names={0: "R", 1: "G", 2: "B"},
        labels={"background": 0, "tongue": 1},
        num_training_cases=num_training,
        file_ending=".png",
        dataset_name=dataset_name,
        description=f"Tongue photographs ({layout} layout) converted by nnunet-tongue convert; see {CASES_CSV} and {REPORT_TXT}",
        overwrite_image_reader_writer="NaturalImage2DIO",
        license="as the source data",
        converted_by=f"nnunet-tongue convert {__version__}",
        **{CONVERSION_KEY: {"max_size": max_size, "tongue_extent_px": measure_tongue_extent(folder / "labelsTr"),
                            "converter_version": __version__}},
    )


def write_cases_csv(folder: Path, cases: list[CaseRecord]) -> None:
    """One row per case (columns :data:`CSV_COLUMNS`), notes joined with ``; ``."""
    with open(folder / CASES_CSV, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for case in cases:
            row = asdict(case)
            row["notes"] = "; ".join(case.notes)
            writer.writerow(row)


def write_report(folder: Path, report: ConversionReport) -> None:
    (folder / REPORT_TXT).write_text(report.to_text(), encoding="utf-8")
    (folder / REPORT_JSON).write_text(report.to_json(), encoding="utf-8")


def write_splits(folder: Path, splits: list[dict[str, list[str]]]) -> None:
    save_json(splits, str(folder / SPLITS_FILE), sort_keys=False)
