"""``nnunet-tongue segment``: photos + a trained nnU-Net model -> mask, cut-out, overlay and a JSON line per photo.

For every photo (JPEG, PNG, BMP, TIFF, WebP; any size; EXIF orientation honoured) it writes, under the
output folder::

    masks/<name>.png      tongue 255, background 0, at the photo's displayed size
    cutouts/<name>.png    RGBA, the tongue's pixels, transparent elsewhere, cropped to the bounding box
    overlays/<name>.jpg   the photo with the tongue tinted and outlined
    segment.jsonl         one line per photo: area, bounding box, mean colour (RGB, L*a*b*), quality flags
                          (photos to look at again or retake, also written on the overlay), or the error

The model runs in-process through stock nnU-Net's predictor (see :mod:`nnunet_tongue.inference.segmenter`).
A photo that cannot be read or segmented is reported by name and skipped; the others are still done and
the exit status is 1 at the end. Existing outputs are refused up front unless ``--overwrite``, which also
removes the outputs an earlier run listed in its JSONL and this run does not write again.

Nothing half-written: a photo's three files appear together (written beside their targets, then renamed),
and ``segment.jsonl`` appears when the run ends (``.segment.jsonl.partial`` until then). Ctrl-C or SIGTERM
stop it between two files; running the same command again redoes what the interrupted run listed.

Python: :func:`segment_photos` (one call for a batch) and
:class:`~nnunet_tongue.inference.segmenter.TongueSegmenter` (load once, segment arrays).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from nnunet_tongue.inference.outputs import cutout_image, mask_image, overlay_image, tongue_stats
from nnunet_tongue.inference.quality import draw_flags, quality
from nnunet_tongue.inference.segmenter import (
    DEFAULT_CHECKPOINT,
    DEFAULT_CONFIGURATION,
    DEFAULT_PLANS,
    DEFAULT_POSTPROCESS,
    DEFAULT_RESCALE,
    DEFAULT_TILE_STEP_SIZE,
    DEFAULT_TRAINER,
    ModelError,
    TongueSegmenter,
    model_folder_from_dataset,
)
from nnunet_tongue.interrupts import interrupted_by, sigterm_as_interrupt, stopped
from nnunet_tongue.models.store import find_model
from nnunet_tongue.photos import PHOTO_SUFFIXES, PhotoError, list_photos, load_photo

__all__ = ["segment_photos", "SegmentReport", "Failure", "OutputExistsError", "OutputFolderError", "OutputFullError",
           "TongueSegmenter", "main"]

JSONL_NAME = "segment.jsonl"
OUTPUT_KINDS = {"mask": ("masks", ".png"), "cutout": ("cutouts", ".png"), "overlay": ("overlays", ".jpg")}
OVERLAY_JPEG_QUALITY = 90
#: zlib level for the RGBA cut-out: a BioHit tongue's cut-out takes 16 ms and 162 KB at 1, 23 ms and 157 KB at 3,
#: 66 ms and 143 KB at the default 6 (2026-12-01, 2 cores)
CUTOUT_PNG_COMPRESS_LEVEL = 1


class OutputFolderError(ValueError):
    """The output folder cannot be used (a file, not writable)."""


class OutputFullError(OSError):
    """The output disk filled up (or became read-only) during the run: the batch stops; what was done is kept
    whole and the same command finishes the job (:attr:`done`: photos finished before)."""

    def __init__(self, output_dir: Path, error: OSError, done: int):
        self.done = done
        super().__init__(error.errno, f"{error.strerror} while writing to {output_dir}: stopped after {done} "
                                      "photo(s), each with all its outputs. Free space (or make the folder writable) "
                                      "and run the same command again: it finishes the unfinished photos")


#: errors of the output's file system that no later photo can escape: stop instead of failing every photo
_OUTPUT_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


class OutputExistsError(FileExistsError):
    """Outputs of this run already exist and ``overwrite`` is off; ``clashes`` lists them."""

    def __init__(self, clashes: list[Path]):
        self.clashes = clashes
        shown = "\n  ".join(map(str, clashes[:20]))
        more = f"\n  ... and {len(clashes) - 20} more" if len(clashes) > 20 else ""
        super().__init__(f"{len(clashes)} output file(s) already exist (use --overwrite to replace them):\n  "
                         f"{shown}{more}")


@dataclass
class Failure:
    photo: str
    error: str


@dataclass
class SegmentReport:
    """Outcome of :func:`segment_photos`: one record per segmented photo (as written to the JSONL), the failures."""

    output_dir: Path
    jsonl: Path
    records: list[dict] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    model: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def n_photos(self) -> int:
        return len(self.records) + len(self.failures)


def output_paths(photo: Path, output_dir: Path) -> dict[str, Path]:
    return {kind: output_dir / folder / f"{photo.stem}{suffix}" for kind, (folder, suffix) in OUTPUT_KINDS.items()}


def plan_outputs(photos: list[Path], output_dir: Path, jsonl_name: str = JSONL_NAME) -> dict[Path, dict[str, Path]]:
    """photo -> its output files. Two photos with the same name (stem) would write the same files: refused."""
    by_stem: dict[str, list[Path]] = {}
    for p in photos:
        by_stem.setdefault(p.stem, []).append(p)
    same = {stem: ps for stem, ps in by_stem.items() if len(ps) > 1}
    if same:
        listing = "; ".join(f"{stem}: {', '.join(map(str, ps))}" for stem, ps in list(same.items())[:10])
        raise ValueError(f"photos with the same name would write the same outputs, segment them separately: {listing}")
    return {p: output_paths(p, output_dir) for p in photos}


def existing_outputs(plan: dict[Path, dict[str, Path]], jsonl: Path) -> list[Path]:
    clashes = [jsonl] if jsonl.exists() else []
    clashes += [path for outputs in plan.values() for path in outputs.values() if path.exists()]
    return clashes


def _partial(jsonl: Path) -> Path:
    """Where a run keeps its JSON lines until it has finished (then renamed to ``jsonl``)."""
    return jsonl.with_name(f".{jsonl.name}.partial")


def listed_outputs(jsonl: Path, output_dir: Path) -> list[Path]:
    """The output files a JSONL (finished or partial) lists, inside ``output_dir`` only."""
    if not jsonl.exists():
        return []
    found = []
    root = output_dir.resolve()
    for line in jsonl.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the last line of an interrupted run
            continue
        for kind in OUTPUT_KINDS:
            if isinstance(record, dict) and isinstance(record.get(kind), str):
                path = (output_dir / record[kind]).resolve()
                if path.is_relative_to(root):
                    found.append(path)
    return found


def check_output_folder(output_dir: Path) -> None:
    """Create the output folders and prove they are writable, before any model is loaded (OSError names the fix)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputFolderError(f"output {output_dir} is a file, not a folder: choose a folder for -o")
    try:
        for folder, _ in OUTPUT_KINDS.values():
            (output_dir / folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as error:
        raise OutputFolderError(f"cannot write to {output_dir} ({error.strerror or error}): choose another output "
                                "folder (-o) or fix its permissions") from None


def _write_all(images: dict[Path, tuple]) -> None:
    """Write every image to a hidden temporary file beside its target, then rename them all: a photo's outputs
    appear together or not at all (a failure or an interrupt leaves no partial file)."""
    written: list[tuple[Path, Path]] = []
    try:
        for target, (image, options) in images.items():
            temporary = target.with_name(f".{target.name}.partial")
            written.append((temporary, target))
            image.save(temporary, format=Image.registered_extensions()[target.suffix.lower()], **options)
        for temporary, target in written:
            os.replace(temporary, target)
    finally:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)


def _write_line(file, line: str) -> None:
    """Write all of ``line`` to an unbuffered binary file (a raw write may write only part of it)."""
    data = memoryview(line.encode("utf-8"))
    while data:
        data = data[file.write(data):]


def _segment_one(segmenter: TongueSegmenter, photo: Path, outputs: dict[str, Path], output_dir: Path) -> dict:
    t0 = time.perf_counter()
    image, orientation = load_photo(photo)
    t1 = time.perf_counter()
    prediction = segmenter.predict(image)
    mask = prediction.mask
    t2 = time.perf_counter()
    checked = quality(image, prediction.probability, mask, prediction.sharpness)
    _write_all({outputs["mask"]: (mask_image(mask), {}),
                outputs["cutout"]: (cutout_image(image, mask), {"compress_level": CUTOUT_PNG_COMPRESS_LEVEL}),
                outputs["overlay"]: (draw_flags(overlay_image(image, mask), checked["flags"]),
                                     {"quality": OVERLAY_JPEG_QUALITY})})
    record = {
        "photo": str(photo),
        "name": photo.stem,
        "status": "ok",
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "exif_orientation": orientation,
        "inference_width": int(prediction.inference_shape[1]),
        "inference_height": int(prediction.inference_shape[0]),
        "postprocess": segmenter.postprocess,
        "rescale_factor": round(prediction.rescale_factor, 4),
        **tongue_stats(image, mask),
        "flags": checked["flags"],
        "quality": checked["measures"],
        **{kind: path.relative_to(output_dir).as_posix() for kind, path in outputs.items()},
    }
    record["inference_seconds"] = round(t2 - t1, 4)
    record["seconds"] = round(time.perf_counter() - t0, 4)
    return record


def segment_photos(inputs: str | os.PathLike | Iterable[str | os.PathLike], output_dir: str | os.PathLike,
                   segmenter: TongueSegmenter | Callable[[], TongueSegmenter], *, overwrite: bool = False,
                   progress: bool = True, jsonl_name: str = JSONL_NAME) -> SegmentReport:
    """Segment photos (files and/or folders); write masks, cut-outs, overlays and a JSONL into ``output_dir``.

    ``segmenter``: a loaded :class:`TongueSegmenter` (it holds every model and inference setting), or a
    function that loads one, called only once the inputs and outputs are checked, so that a bad call fails
    before the model loads. Raises ``FileNotFoundError`` for a missing input, ``ValueError`` when no photos
    are found or two share a name, :class:`OutputExistsError` when outputs exist and ``overwrite`` is False,
    :class:`~nnunet_tongue.inference.segmenter.ModelError` for an unusable model. Photos that fail are in
    ``report.failures`` (and in the JSONL with ``"status": "failed"``); nothing is raised for them.
    A full or read-only output disk stops the batch with :class:`OutputFullError` (the photos done are kept
    whole; the same call finishes the job later).
    """
    from tqdm import tqdm

    start = time.perf_counter()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    photos = list_photos(inputs)
    if not photos:
        raise ValueError(f"no photos found in {', '.join(map(str, inputs))} (looked for "
                         f"{', '.join('*' + s for s in PHOTO_SUFFIXES)})")
    output_dir = Path(output_dir)
    jsonl = output_dir / jsonl_name
    partial = _partial(jsonl)
    plan = plan_outputs(photos, output_dir, jsonl_name)
    # outputs an interrupted run left are this command's to redo, not the user's to keep
    unfinished = set(listed_outputs(partial, output_dir))
    if not overwrite:
        clashes = [path for path in existing_outputs(plan, jsonl) if path.resolve() not in unfinished]
        if clashes:
            raise OutputExistsError(clashes)
    check_output_folder(output_dir)

    if not isinstance(segmenter, TongueSegmenter):
        segmenter = segmenter()

    if unfinished:
        print(f"redoing {len(unfinished)} output file(s) of an interrupted run in {output_dir}", file=sys.stderr)
    planned = {path.resolve() for outputs in plan.values() for path in outputs.values()}
    stale = [path for path in (*listed_outputs(jsonl, output_dir), *unfinished) if path not in planned]
    if overwrite or unfinished:  # outputs of earlier runs that this run does not write again would not match
        for path in stale:  # the new JSONL: they go
            path.unlink(missing_ok=True)
    report = SegmentReport(output_dir=output_dir, jsonl=jsonl, model=segmenter.describe())
    warned_size = False
    # unbuffered: a line is on disk once written, and closing has nothing left to fail on
    with open(partial, "wb", buffering=0) as lines, tqdm(photos, desc="segment", unit="photo", file=sys.stderr,
                                                               disable=not progress, dynamic_ncols=True) as bar:
        for photo in bar:
            try:
                try:
                    if not warned_size and segmenter.max_size is None:
                        warned_size = _warn_if_huge(photo, bar)
                    record = _segment_one(segmenter, photo, plan[photo], output_dir)
                except Exception as e:  # one bad photo must not stop the batch; MemoryError included
                    if isinstance(e, OSError) and e.errno in _OUTPUT_FULL:  # but no photo can be written now
                        raise OutputFullError(output_dir, e, len(report.records)) from None  # JSONL stays .partial
                    message = str(e) if isinstance(e, PhotoError) else f"{e.__class__.__name__}: {e}"
                    report.failures.append(Failure(str(photo), message))
                    record = {"photo": str(photo), "name": photo.stem, "status": "failed", "error": message}
                    bar.write(f"FAILED {photo}: {message}", file=sys.stderr)
                try:
                    _write_line(lines, json.dumps(record) + "\n")
                except OSError as e:
                    if e.errno in _OUTPUT_FULL:
                        raise OutputFullError(output_dir, e, len(report.records)) from None
                    raise
            except BaseException:  # stopped (Ctrl-C, SIGTERM, full disk) before this photo's JSONL line was
                for path in plan[photo].values():  # written: its outputs, listed nowhere, would block the next run
                    path.unlink(missing_ok=True)
                raise
            if record["status"] == "ok":
                report.records.append(record)
    os.replace(partial, jsonl)
    report.seconds = time.perf_counter() - start
    return report


#: a photo whose longest side is above this, segmented at full size, takes minutes on a CPU
HUGE_PHOTO_SIDE = 2048


def _warn_if_huge(photo: Path, bar) -> bool:
    """Warn once when a model without a training size meets a photo that takes minutes at full size."""
    try:
        with Image.open(photo) as im:
            side = max(im.size)
    except OSError:
        return False
    if side <= HUGE_PHOTO_SIDE:
        return False
    bar.write(f"warning: {photo} is {side} px on its longest side and the model records no training size, so it "
              "is segmented at full size (minutes per photo on a CPU); pass --max-size N with the size of the "
              "training photos to downscale", file=sys.stderr)
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunet-tongue segment",
        description="Segment the tongue in photos (with the bundled model unless -m or -d names another).\n"
                    "Per photo: a 0/255 mask PNG at the photo's displayed size (masks/), an RGBA cut-out\n"
                    "(cutouts/), an overlay with quality flags (overlays/) and a line in segment.jsonl (area,\n"
                    "bounding box, mean colour, flags). See docs/inference.md and docs/models.md.",
        epilog="examples:\n"
               "  nnunet-tongue segment -i photos/ -o out/                   # the bundled model\n"
               "  nnunet-tongue segment -i photos/ -o out/ -m my-model       # a model from `nnunet-tongue models`\n"
               "  nnunet-tongue segment -i photos/ -o out/ \\\n"
               "      -m $nnUNet_results/Dataset501_X/nnUNetTrainerTUNet__nnUNetPlans__2d\n"
               "  nnunet-tongue segment -i a.jpg b.png -o out/ -d 501 -tr nnUNetTrainerTUNet -c 2d -f 0 1\n"
               "exit status: 0 all photos done; 1 some photos failed (named on stderr and in the JSONL);\n"
               "             2 nothing done (bad arguments, model not found, outputs exist)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--input", nargs="+", required=True, metavar="PHOTO_OR_FOLDER",
                        help=f"photos and/or folders of photos ({', '.join(s[1:] for s in PHOTO_SUFFIXES)}; folders "
                             "are not searched recursively)")
    parser.add_argument("-o", "--output", required=True, help="output folder (created if needed)")
    model = parser.add_argument_group("model (default: the bundled model; or -m, or -d with -tr/-p/-c as "
                                      "nnUNetv2_predict takes them)")
    which = model.add_mutually_exclusive_group()
    which.add_argument("-m", "--model",
                       help="a model name from `nnunet-tongue models`, or a trained model folder, i.e. "
                            "nnUNet_results/DatasetXXX/Trainer__Plans__config (default: the bundled model)")
    which.add_argument("-d", "--dataset", help="dataset id or name, looked up under $nnUNet_results")
    model.add_argument("-tr", "--trainer", default=DEFAULT_TRAINER, help=f"trainer class (default {DEFAULT_TRAINER})")
    model.add_argument("-p", "--plans", default=DEFAULT_PLANS, help=f"plans identifier (default {DEFAULT_PLANS})")
    model.add_argument("-c", "--configuration", default=DEFAULT_CONFIGURATION,
                       help=f"configuration (default {DEFAULT_CONFIGURATION})")
    model.add_argument("-f", "--folds", nargs="+", default=None,
                       help="folds to ensemble, e.g. 0 1 2 3 4 or all (default: every fold with the checkpoint)")
    model.add_argument("-chk", "--checkpoint", default=DEFAULT_CHECKPOINT, help=f"default {DEFAULT_CHECKPOINT}")
    run = parser.add_argument_group("inference")
    run.add_argument("-device", "--device", default="auto", choices=["auto", "cpu", "cuda"],
                     help="auto = cuda when available, else cpu (default auto)")
    run.add_argument("--mirroring", action=argparse.BooleanOptionalAction, default=False,
                     help="nnU-Net's test-time mirroring: the network runs once per mirror combination the model "
                          "allows (4 times for a 2D model mirrored on both axes); default off")
    run.add_argument("--postprocess", action=argparse.BooleanOptionalAction, default=DEFAULT_POSTPROCESS,
                     help="keep the largest connected component and fill its holes (default "
                          f"{'on' if DEFAULT_POSTPROCESS else 'off'}; see docs/inference.md)")
    run.add_argument("-step_size", "--step-size", type=float, default=DEFAULT_TILE_STEP_SIZE, dest="step_size",
                     help=f"sliding-window step as a fraction of the patch (nnU-Net's -step_size; default "
                          f"{DEFAULT_TILE_STEP_SIZE}); larger is faster")
    run.add_argument("--max-size", type=int, default=None, metavar="PIXELS",
                     help="downscale photos so their longest side is at most PIXELS before inference (masks are "
                          "still written at the photo's size). Default: the model's, from its dataset.json: the size "
                          "recorded to feed it at (the bundled model: 256; a blurred photo then gets the training "
                          "size), else the size the training photos were downscaled to at conversion (none if "
                          "they were not); 0 = never downscale")
    run.add_argument("--rescale", action=argparse.BooleanOptionalAction, default=DEFAULT_RESCALE,
                     help="when the tongue found is much larger or smaller than the training tongues (outside the "
                          "5th-95th percentile of their extent, recorded by convert in the model's dataset.json), "
                          "segment again with it brought to their median size (default "
                          f"{'on' if DEFAULT_RESCALE else 'off'}; no effect for models without that record)")
    out = parser.add_argument_group("output")
    out.add_argument("--overwrite", action="store_true",
                     help="replace existing outputs (default: refuse, listing them)")
    out.add_argument("--jsonl", default=JSONL_NAME, help=f"name of the JSON-lines file in the output folder "
                                                         f"(default {JSONL_NAME})")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--verbose", action="store_true", help="let nnU-Net print what it does")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2

    if not 0 < args.step_size <= 1:
        return fail(f"--step-size must be in (0, 1], got {args.step_size}")
    if args.max_size is not None and args.max_size < 0:
        return fail(f"--max-size must be >= 0, got {args.max_size}")
    try:
        def load() -> TongueSegmenter:  # called once inputs and outputs are checked
            model_folder = find_model(args.model) if args.dataset is None else model_folder_from_dataset(
                args.dataset, args.trainer, args.plans, args.configuration)
            return TongueSegmenter(
                model_folder, folds=args.folds, checkpoint=args.checkpoint, device=args.device,
                mirroring=args.mirroring, postprocess=args.postprocess, tile_step_size=args.step_size,
                max_size="model" if args.max_size is None else args.max_size, rescale=args.rescale,
                verbose=args.verbose)

        with sigterm_as_interrupt():
            report = segment_photos(args.input, args.output, load, overwrite=args.overwrite,
                                    progress=not args.no_progress, jsonl_name=args.jsonl)
    except (ModelError, FileNotFoundError, FileExistsError, ValueError) as e:
        return fail(str(e))
    except OutputFullError as full:
        print(f"{parser.prog}: {full.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        return stopped(parser.prog, f"{interrupted_by(interrupt)}; the photos done so far are in {args.output}, each "
                       "with all its outputs. Run the same command again to finish (it redoes the interrupted run's "
                       "photos)", interrupt)

    done = len(report.records)
    per_photo = np.mean([r["seconds"] for r in report.records]) if report.records else float("nan")
    print(f"segmented {done}/{report.n_photos} photos in {report.seconds:.1f} s ({per_photo:.2f} s/photo) "
          f"-> {report.output_dir} ({report.jsonl.name})")
    if report.failures:
        print(f"{len(report.failures)} photo(s) failed:", file=sys.stderr)
        for failure in report.failures:
            print(f"  {failure.photo}: {failure.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
