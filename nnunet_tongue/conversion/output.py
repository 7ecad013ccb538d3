"""The output side: a lock per dataset, leftovers of interrupted runs, target checks, a staging folder that becomes
the dataset in one rename, the files around the cases."""

from __future__ import annotations

import csv
import os
import shutil
import uuid
from dataclasses import asdict
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from batchgenerators.utilities.file_and_folder_operations import save_json
from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

from nnunet_tongue import __version__
from nnunet_tongue.conversion import CONVERSION_KEY, RGB_CHANNELS, TONGUE_LABELS
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
        problems.append(Problem(ERROR, str(target), "exists and is not a folder",
                                "remove it, or choose another -o/--output-root"))
    elif target.exists() and not overwrite:
        problems.append(Problem(ERROR, str(target), "dataset already exists",
                                "pass --overwrite to replace it (the old one stays until the new one is complete), "
                                "or choose another --dataset-id"))
    if output_root.is_dir():
        for other in sorted(output_root.glob(dataset_folder_name(dataset_id, "*"))):
            if other.name != folder_name and other.is_dir():
                problems.append(Problem(ERROR, str(other),
                                        f"nnU-Net dataset id {dataset_id} is already used by {other.name}",
                                        "choose another --dataset-id, or remove that dataset"))
    preprocessed = os.environ.get("nnUNet_preprocessed")
    if preprocessed and (Path(preprocessed) / folder_name).is_dir():
        problems.append(
            Problem(
                WARNING,
                str(Path(preprocessed) / folder_name),
                "preprocessed data of an earlier dataset with this name exists; "
                "nnU-Net trains on it, not on the new raw data",
                "delete it and run nnUNetv2_plan_and_preprocess again "
                f"(a {SPLITS_FILE} there takes precedence over the new one)",
            )
        )
    return problems


class OutputError(Exception):
    """The output folder cannot be used (not writable, or another convert is writing the dataset); nothing was
    written and the data was not read. ``problem`` names the folder and the fix."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


class OutputLock:
    """An exclusive ``flock`` on ``<output root>/.<dataset folder>.lock`` for the whole run, so that two converts of
    one dataset cannot overwrite each other's result: the second raises :class:`OutputError` at once.

    Creates the output root (and its missing parents); :meth:`release` removes the lock file, and those folders
    when they are left empty. :class:`OutputError` when the root cannot be created or written.
    """

    def __init__(self, output_root: Path, folder_name: str):
        self.root = output_root
        self.path = output_root / f".{folder_name}.lock"
        self._target = output_root / folder_name
        self._created = [p for p in (output_root, *output_root.parents) if not p.exists()]  # deepest first
        self._fd: int | None = None
        try:
            output_root.mkdir(parents=True, exist_ok=True)
            self._fd = self._lock()
        except OSError as exc:
            self._remove_created()
            raise OutputError(_unwritable(output_root, exc)) from None
        except BaseException:
            self._remove_created()
            raise

    def _lock(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            if fcntl is None:  # no flock (Windows): no protection against a concurrent run
                return fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip()
                os.close(fd)
                raise OutputError(
                    Problem(
                        ERROR,
                        str(self._target),
                        f"another convert is writing this dataset (it holds {self.path.name}"
                        + (f", process {holder}" if holder.isdigit() else "") + "); nothing was done",
                        "wait until it has finished (then rerun with --overwrite if you want to replace its result), "
                        "or choose another --dataset-id or -o/--output-root",
                    )
                ) from None
            except BaseException:
                os.close(fd)
                raise
            try:  # the previous holder removes the file when it is done: make sure we locked the file that is there
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        return fd

    def identity(self) -> tuple[int, int, int] | None:
        """``(fd, st_dev, st_ino)`` of the lock, so that forked workers can drop their inherited copy."""
        if self._fd is None:
            return None
        st = os.fstat(self._fd)
        return self._fd, st.st_dev, st.st_ino

    def release(self) -> None:
        """Remove the lock file (while still holding it), unlock, and remove the output folders this run created
        if they are empty."""
        if self._fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:
                break


def remove_leftovers(output_root: Path, folder_name: str) -> list[Problem]:
    """Clear what interrupted earlier runs of this dataset left in ``output_root`` (call it holding the
    :class:`OutputLock`), with a warning for each: staging folders (``.<name>.*.partial``) and deleted-dataset
    remains (``.<name>.*.trash``) are removed; a dataset an interrupted ``--overwrite`` had moved aside
    (``.<name>.*.old``) is put back when the dataset is missing, else removed."""
    target = output_root / folder_name
    problems = []
    for old in sorted(output_root.glob(f".{folder_name}.*.old"), key=lambda p: p.stat().st_mtime, reverse=True):
        if not target.exists():
            os.replace(old, target)
            problems.append(Problem(WARNING, str(target),
                                    f"put back from {old.name}, where an interrupted --overwrite run "
                                    "had moved it aside", "none needed"))
        else:
            shutil.rmtree(old, ignore_errors=True)
            problems.append(Problem(WARNING, str(old),
                                    "removed: a dataset an interrupted --overwrite run had moved aside",
                                    "none needed"))
    for pattern, what in (("partial", "staging folder of an earlier interrupted convert of this dataset "
                                      "(never published)"),
                          ("trash", "remains of a replaced dataset")):
        for leftover in sorted(output_root.glob(f".{folder_name}.*.{pattern}")):
            shutil.rmtree(leftover, ignore_errors=True)
            problems.append(Problem(WARNING, str(leftover), f"removed: {what}", "none needed"))
    return problems


def find_leftovers(output_root: Path, folder_name: str) -> list[Problem]:
    """Warnings for what :func:`remove_leftovers` would clear (for a dry run, which removes nothing)."""
    if not output_root.is_dir():
        return []
    found = sorted(p for suffix in ("partial", "old", "trash") for p in output_root.glob(f".{folder_name}.*.{suffix}"))
    return [Problem(WARNING, str(p), "left by an earlier interrupted convert of this dataset",
                    "none needed: the next convert of this dataset clears it") for p in found]


class Staging:
    """A hidden folder beside the target; :meth:`commit` renames it into place, :meth:`discard` removes it.

    Made like any new folder (mode ``0o777 & ~umask``), so the published dataset gets the usual permissions.
    """

    def __init__(self, output_root: Path, folder_name: str, with_test: bool):
        while True:
            path = output_root / f".{folder_name}.{uuid.uuid4().hex[:8]}.partial"
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        self.path = path
        for sub in ("imagesTr", "labelsTr") + (("imagesTs", "labelsTs") if with_test else ()):
            (self.path / sub).mkdir()

    def commit(self, target: Path) -> None:
        """Put the staged dataset at ``target``; an existing one is moved aside first and deleted last.

        Only between the two renames does ``.<name>.*.old`` exist; :func:`remove_leftovers` puts it back if a
        run dies there.
        """
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
            trash = old.with_suffix(".trash")
            os.replace(old, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def discard(self) -> None:
        """Remove the staging folder."""
        shutil.rmtree(self.path, ignore_errors=True)


def open_staging(output_root: Path, folder_name: str, with_test: bool) -> Staging | Problem:
    """A :class:`Staging` folder, or an error naming the output folder when it cannot be written."""
    try:
        return Staging(output_root, folder_name, with_test)
    except OSError as exc:
        return _unwritable(output_root, exc)


def _unwritable(output_root: Path, exc: OSError) -> Problem:
    return Problem(
        ERROR,
        str(output_root),
        f"output folder cannot be created or written ({exc.strerror or exc}); nothing was written",
        "choose another -o/--output-root, or fix its permissions (--dry-run checks the data without writing)",
    )


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
        channel_names=RGB_CHANNELS,
        labels=TONGUE_LABELS,
        num_training_cases=num_training,
        file_ending=".png",
        dataset_name=dataset_name,
        description=f"Tongue photographs ({layout} layout) converted by nnunet-tongue convert; "
                    f"see {CASES_CSV} and {REPORT_TXT}",
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
