"""``nnunet-tongue evaluate``: predicted vs ground-truth masks -> Dice, IoU, HD95, ASSD and a report.

Python: :func:`evaluate_folders`. Outputs, metrics and conventions: docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from nnunet_tongue.evaluation import figures, report
from nnunet_tongue.evaluation.cases import EvaluationError, find_photos, list_masks, match_cases
from nnunet_tongue.evaluation.metrics import METRICS
from nnunet_tongue.evaluation.scoring import CaseJob, load_pair, score_case
from nnunet_tongue.interrupts import ignore_sigint_in_worker, interrupted_by, sigterm_as_interrupt, stopped

#: Report files, by summary key; an existing one is never overwritten without ``overwrite``.
REPORT_FILES: dict[str, str] = {
    "per_case_csv": "per_case.csv",
    "summary_json": "summary.json",
    "worst_cases_png": "worst_cases.png",
    "dice_histogram_png": "dice_histogram.png",
}
#: Below this many cases no progress bar is shown.
_PROGRESS_MIN_CASES = 50


def default_workers() -> int:
    """CPU cores available to this process."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _score_all(jobs: list[CaseJob], workers: int) -> Iterator[dict[str, object]]:
    bar = dict(total=len(jobs), desc="evaluate", unit="case", disable=True if len(jobs) < _PROGRESS_MIN_CASES else None)
    if workers == 1 or len(jobs) == 1:
        yield from tqdm(map(score_case, jobs), **bar)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), initializer=ignore_sigint_in_worker) as pool:
        chunks = max(1, len(jobs) // (workers * 8))
        yield from tqdm(pool.map(score_case, jobs, chunksize=chunks), **bar)


def _check_output(out_dir: Path, overwrite: bool, inputs: tuple[Path, ...]) -> None:
    if any(out_dir.resolve() == folder.resolve() for folder in inputs):
        raise EvaluationError(f"output folder {out_dir} is an input folder; write the report to a folder of its own")
    # without summary.json (written last) the files are what an interrupted run left: replaced, not protected
    existing = [name for name in REPORT_FILES.values() if (out_dir / name).exists()]
    if existing and not overwrite and (out_dir / REPORT_FILES["summary_json"]).exists():
        raise EvaluationError(
            f"{out_dir} already holds a report ({', '.join(existing)}); pass --overwrite (overwrite=True) "
            "to replace it, or choose another output folder"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise EvaluationError(f"output {out_dir} exists and is not a folder")
    try:  # fail now, not after scoring every case
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as error:
        raise EvaluationError(f"cannot write the report to {out_dir} ({error.strerror or error}); choose another "
                              "output folder (-o) or fix its permissions") from None


def _match_photos(images_dir: Path, cases: list[str]) -> dict[str, Path]:
    photos = find_photos(images_dir, cases)
    if not photos:
        raise EvaluationError(
            f"no photo in {images_dir} matches a case (looked for <case>.<ext> and <case>_0000.<ext>, e.g. "
            f"{cases[0]}.jpg); check --images (images_dir) or leave it out to draw over grey"
        )
    return photos


def _worst_tiles(worst_rows: Iterable[dict[str, object]], jobs: dict[str, CaseJob], photos: dict) -> list[figures.Tile]:
    return [figures.Tile.of_case(row["case"], row["dice"], row["hd95"], *load_pair(jobs[row["case"]]),
                                 photos.get(row["case"])) for row in worst_rows]


def _conventions(label: int | None, resize_to_gt: bool) -> dict[str, object]:
    return {
        "foreground": f"value == {label}" if label is not None else "value > 0",
        "distance_unit": "pixel",
        "one_mask_empty": "dice = iou = 0, hd95 = assd = image diagonal",
        "both_masks_empty": "dice = iou = 1, hd95 = assd = 0",
        "resized_to_gt": resize_to_gt,
    }


def evaluate_folders(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    images_dir: str | os.PathLike | None = None,
    worst: int = 8,
    workers: int | None = None,
    overwrite: bool = False,
    *,
    label: int | None = None,
    ignore_missing: bool = False,
    resize_to_gt: bool = False,
) -> dict[str, object]:
    """Score every prediction in ``pred_dir`` against the mask of the same name in ``gt_dir``.

    Writes per_case.csv, summary.json, dice_histogram.png and (``worst`` > 0) worst_cases.png, the
    ``worst`` lowest-Dice cases drawn over their photos from ``images_dir`` (grey without). Returns
    the summary dict written to summary.json. ``workers``: processes (default: all cores).
    ``label``: foreground value (default: any value > 0). ``ignore_missing``: score only the
    ground-truth cases that have a prediction. ``resize_to_gt``: resize predictions of another size
    (same aspect ratio) to the ground truth with nearest neighbour instead of failing.
    Raises :class:`EvaluationError` on missing or mismatched inputs and on an existing report.
    """
    pred_dir, gt_dir, out_dir = Path(pred_dir), Path(gt_dir), Path(out_dir)
    if worst < 0:
        raise EvaluationError(f"worst must be 0 or more, got {worst}")
    if label is not None and label < 1:
        raise EvaluationError(f"label must be a positive mask value, got {label}")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise EvaluationError(f"workers must be 1 or more, got {workers}")
    preds, gts = list_masks(pred_dir, "prediction"), list_masks(gt_dir, "ground-truth")
    cases, skipped = match_cases(preds, gts, ignore_missing)
    photos = _match_photos(Path(images_dir), cases) if images_dir is not None else {}
    _check_output(out_dir, overwrite, (pred_dir, gt_dir))
    jobs = {case: CaseJob(case, preds[case], gts[case], label, resize_to_gt) for case in cases}

    rows = list(_score_all(list(jobs.values()), workers))
    errors = [row["error"] for row in rows if "error" in row]
    if errors:
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise EvaluationError(f"{len(errors)} case(s) cannot be scored:\n  " + "\n  ".join(errors[:10]) + more)

    for name in REPORT_FILES.values():  # the folder exists: _check_output made it
        (out_dir / name).unlink(missing_ok=True)
    files = {key: name for key, name in REPORT_FILES.items() if key != "worst_cases_png" or worst > 0}
    ranked = report.rank_worst(rows)[:worst]
    summary = {
        "n_cases": len(rows),
        "metrics": {metric: report.metric_stats(rows, metric) for metric in METRICS},
        "worst_cases": [report.case_metrics(row) for row in ranked],
        "empty_masks": report.empty_cases(rows),
        "skipped_without_prediction": skipped,
        "conventions": _conventions(label, resize_to_gt),
        "inputs": {
            "pred_dir": str(pred_dir),
            "gt_dir": str(gt_dir),
            "images_dir": None if images_dir is None else str(images_dir),
            "photos_matched": len(photos),
        },
        "files": files,
    }
    try:
        report.write_csv(rows, out_dir / files["per_case_csv"])
        if worst > 0:
            title = f"{len(ranked)} lowest-Dice case(s) of {len(rows)}: {_shown(pred_dir)}"
            figures.contact_sheet(_worst_tiles(ranked, jobs, photos), out_dir / files["worst_cases_png"], title)
        figures.dice_histogram([row["dice"] for row in rows], out_dir / files["dice_histogram_png"])
        report.write_json(summary, out_dir / files["summary_json"])  # last: a report without it is unfinished
    except OSError as error:  # a full or read-only disk: no half-written report stays behind
        for name in files.values():
            with contextlib.suppress(OSError):
                (out_dir / name).unlink(missing_ok=True)
        raise EvaluationError(f"cannot write the report in {out_dir} ({error.strerror or error}); nothing was "
                              "kept there: free space on that disk or choose another output folder (-o), then "
                              "run the command again") from None
    return summary


def _shown(folder: Path) -> str:
    """``folder`` as a sheet title names it: relative to the working directory when it lies under it, so that a
    shared sheet does not carry this machine's absolute paths."""
    try:
        return str(folder.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunet-tongue evaluate",
        description="Score predicted tongue masks against ground-truth masks of the same name: per-case CSV, "
        "summary JSON with Dice, IoU, HD95 and ASSD (pixels), a contact sheet of the worst cases and a Dice "
        "histogram. Masks: PNG/BMP/TIFF, 0/255 or 0/1 (nnU-Net predictions).",
    )
    parser.add_argument("-p", "--pred", required=True, type=Path, help="folder of predicted masks")
    parser.add_argument("-g", "--gt", required=True, type=Path, help="folder of ground-truth masks (same file stems)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="report folder (created if needed)")
    parser.add_argument("--images", type=Path, help="photos for the contact sheet, matched by stem (or stem_0000)")
    parser.add_argument("--worst", type=int, default=8, help="cases on the contact sheet (default 8; 0: no sheet)")
    parser.add_argument("-j", "--workers", type=int, help="worker processes (default: all cores)")
    parser.add_argument("--label", type=int, help="foreground value in both mask sets (default: any value > 0)")
    parser.add_argument(
        "--ignore-missing", action="store_true", help="score only the ground-truth cases that have a prediction"
    )
    parser.add_argument(
        "--resize-to-gt", action="store_true", help="resize predictions of another size to the ground truth (nearest)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report in the output folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():
            summary = evaluate_folders(
                args.pred,
                args.gt,
                args.output,
                images_dir=args.images,
                worst=args.worst,
                workers=args.workers,
                overwrite=args.overwrite,
                label=args.label,
                ignore_missing=args.ignore_missing,
                resize_to_gt=args.resize_to_gt,
            )
    except EvaluationError as error:
        print(f"nnunet-tongue evaluate: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        return stopped("nnunet-tongue evaluate", f"{interrupted_by(interrupt)}; no report was finished in "
                       f"{args.output} (summary.json is written last). Run the same command again", interrupt)
    print(report.format_summary(summary))
    print(f"report: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
