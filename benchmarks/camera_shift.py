"""The bundled model on the test photos of both sources as other cameras, lights and apps would deliver them.

    python benchmarks/camera_shift.py                # the bundled model; CPU, about 20 min on 2 cores
    python benchmarks/camera_shift.py -m MODEL_DIR   # another packed or nnU-Net model folder
    python benchmarks/camera_shift.py --sheets       # also the sheets of the largest losses in docs/img/models

Every shift in :data:`SHIFTS` is applied to every ``test`` photo of BioHit (60) and NTUST (100): white balance
and exposure in linear light, saturation, blur, sensor noise (seeded by the photo's name), a JPEG re-encoding,
a photo shrunk and re-encoded as a chat app sends it, and a tilted phone (rotated, then cut to the largest
upright rectangle of the photo's shape inside it, so that no fill shows). Shifted photos are written as PNG,
so that only the shift changes them; the truth mask moves with the photo where the shift moves pixels. Each
set is segmented with ``nnunet-tongue segment`` (default settings, as for the model card) and scored with
``nnunet-tongue evaluate`` against the converted full-resolution truth (the same truth as the card's figures).

Writes ``benchmarks/results/camera_shift_<model>.json``: per shift and source the metrics, the worst photos,
how many score below 90, the quality flags raised, and the per-photo Dice difference to the unshifted photos
(mean and standard error); prints the table in docs/models.md. Segmented sets are kept under ``--workdir`` and
not redone.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections.abc import Callable
from datetime import date
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from biohit_benchmark import BIOHIT as DATA, RESULTS, REPO, nnunet_env
from bundled_model import IMG, bundled_tag, paired_difference, per_case, score
from cross_dataset import SOURCES, convert_source, docs_sheet

from nnunet_tongue.models.store import BUNDLED_ROOT, DEFAULT_MODEL

Shift = Callable[[Image.Image, Image.Image, str], tuple[Image.Image, Image.Image]]


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB -> linear light in [0, 1] (the sRGB transfer curve)."""
    c = rgb.astype(np.float64) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear light (clipped to [0, 1]) -> uint8 sRGB."""
    c = np.clip(linear, 0, 1)
    c = np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)
    return np.round(255 * c).astype(np.uint8)


def gains(r: float, g: float, b: float) -> Shift:
    """Per-channel gains in linear light: white balance (unequal gains) or exposure (equal ones)."""
    def shift(photo, mask, name):
        linear = srgb_to_linear(np.asarray(photo)) * np.array([r, g, b])
        return Image.fromarray(linear_to_srgb(linear)), mask
    return shift


def saturation(factor: float) -> Shift:
    def shift(photo, mask, name):
        return ImageEnhance.Color(photo).enhance(factor), mask
    return shift


def blur(fraction: float) -> Shift:
    """Gaussian blur with a radius of ``fraction`` of the photo's longest side."""
    def shift(photo, mask, name):
        return photo.filter(ImageFilter.GaussianBlur(fraction * max(photo.size))), mask
    return shift


def noise(sigma: float) -> Shift:
    """Gaussian noise of ``sigma`` (of 255) on every channel, seeded by the photo's name."""
    def shift(photo, mask, name):
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        noisy = np.asarray(photo).astype(np.float64) + rng.normal(0, sigma, (photo.height, photo.width, 3))
        return Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8)), mask
    return shift


def jpeg(photo: Image.Image, quality: int) -> Image.Image:
    """``photo`` encoded as JPEG at ``quality`` (4:2:0, as cameras and apps do) and decoded again."""
    buffer = BytesIO()
    photo.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def reencoded(quality: int) -> Shift:
    def shift(photo, mask, name):
        return jpeg(photo, quality), mask
    return shift


def shrunk(longest: int, quality: int) -> Shift:
    """Longest side ``longest`` px (Lanczos), then JPEG at ``quality``; the truth is shrunk with it (area
    average, then half)."""
    def shift(photo, mask, name):
        scale = longest / max(photo.size)
        size = (round(photo.width * scale), round(photo.height * scale))
        small = mask.convert("L").point(lambda v: 255 if v else 0).resize(size, Image.Resampling.BOX)
        return jpeg(photo.resize(size, Image.Resampling.LANCZOS), quality), small.point(lambda v: 1 if v >= 128 else 0)
    return shift


def tilted(degrees: float) -> Shift:
    """Rotated by ``degrees`` about the centre, then cut to the largest centred rectangle of the photo's aspect
    that holds no fill from outside the photo."""
    def shift(photo, mask, name):
        w, h = photo.size
        c, s = abs(np.cos(np.radians(degrees))), abs(np.sin(np.radians(degrees)))
        scale = min(w / (w * c + h * s), h / (w * s + h * c))
        cw, ch = int(w * scale) - 2, int(h * scale) - 2  # a pixel inside, clear of interpolated edges
        box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)
        return (photo.rotate(degrees, Image.Resampling.BICUBIC).crop(box),
                mask.rotate(degrees, Image.Resampling.NEAREST).crop(box))
    return shift


#: name -> (what it simulates, the shift); "as_taken" is the unshifted reference
SHIFTS: dict[str, tuple[str, Shift]] = {
    "as_taken": ("the test photo itself (re-written as PNG)", lambda photo, mask, name: (photo, mask)),
    "warm_light": ("indoor light left uncorrected: linear R x1.3, B x0.65", gains(1.3, 1.0, 0.65)),
    "cool_light": ("shade or a cold lamp: linear R x0.75, B x1.35", gains(0.75, 1.0, 1.35)),
    "dark": ("under-exposed by 1.5 stops: linear x0.35", gains(0.35, 0.35, 0.35)),
    "very_dark": ("under-exposed by 3 stops: linear x0.125", gains(0.125, 0.125, 0.125)),
    "bright": ("over-exposed by 1 stop: linear x2, clipped", gains(2.0, 2.0, 2.0)),
    "washed_out": ("saturation x0.5", saturation(0.5)),
    "vivid": ("saturation x1.6 (a phone's vivid mode)", saturation(1.6)),
    "blurred": ("out of focus: Gaussian blur, radius 0.5 % of the longest side", blur(0.005)),
    "very_blurred": ("badly out of focus: Gaussian blur, radius 1.5 % of the longest side", blur(0.015)),
    "noisy": ("high ISO: Gaussian noise, sigma 12 of 255 per channel", noise(12)),
    "jpeg_q30": ("re-encoded as JPEG quality 30", reencoded(30)),
    "sent_by_chat": ("shrunk to 320 px on the longest side, JPEG quality 70", shrunk(320, 70)),
    "tilted": ("phone tilted 15 degrees, cut to the upright rectangle inside", tilted(15)),
}


def write_shifted(workdir: Path, source: str, shift: str, data: Path) -> tuple[Path, Path]:
    """Every test photo of ``source`` and its truth, shifted; written once (a finished set is reused)."""
    photos, masks = workdir / f"photos_{shift}_{source}", workdir / f"truth_{shift}_{source}"
    if masks.is_dir():
        return photos, masks
    truth = convert_source(workdir, workdir / "fullres", source, data) / "labelsTs"  # the model card's truth
    photos.mkdir(parents=True, exist_ok=True)
    staging = masks.with_name(masks.name + ".partial")
    staging.mkdir(exist_ok=True)
    _, apply = SHIFTS[shift]
    for gt in sorted(truth.glob("*.png")):
        with Image.open(data / source / "images" / f"{gt.stem}.jpg") as im, Image.open(gt) as m:
            photo, mask = apply(im.convert("RGB"), m.copy(), gt.stem)
        photo.save(photos / f"{gt.stem}.png")
        mask.save(staging / gt.name)
    staging.rename(masks)
    return photos, masks


def worst_drops_sheet(workdir: Path, name: str, source: str, shifts: list[str], sheet: Path, n: int = 4) -> None:
    """Contact sheet of the photo of ``source`` that lost the most Dice against the same photo as taken, under each
    of the ``n`` shifts whose largest loss is largest (truth and prediction outlined, captioned with the shift)."""
    from nnunet_tongue.evaluation import figures
    from nnunet_tongue.evaluation.cases import read_mask

    reference = per_case(workdir, f"{name}_as_taken_{source}")
    worst = []  # per shift: (its largest loss, the shift, that photo, its metrics)
    for shift in shifts:
        if shift != "as_taken":
            rows = per_case(workdir, f"{name}_{shift}_{source}")
            case = min(rows, key=lambda c: rows[c]["dice"] - reference[c]["dice"])
            worst.append((rows[case]["dice"] - reference[case]["dice"], shift, case, rows[case]))
    tiles = [figures.Tile.of_case(f"{shift}\n{case}", row["dice"], row["hd95"],
                                  read_mask(workdir / f"segmented_{name}_{shift}_{source}" / "masks" / f"{case}.png"),
                                  read_mask(workdir / f"truth_{shift}_{source}" / f"{case}.png"),
                                  workdir / f"photos_{shift}_{source}" / f"{case}.png")
             for _, shift, case, row in sorted(worst)[:n]]
    figures.contact_sheet(tiles, sheet, f"{SOURCES[source][1]} test photos: the largest loss under each of the "
                                        "shifts that cost most")


def _points(value: float) -> str:
    return f"{value:+.2f}" if round(value, 2) else "0.00"


def table(results: dict) -> str:
    """The docs table: per source Dice mean ± sd (worst) and the per-photo change against the photos as taken
    (mean ± standard error, Dice points), and the quality flags raised."""
    names = [SOURCES[source][1] for source in SOURCES]
    lines = ["| shift | what it simulates | " + " | ".join(f"{n} Dice % (worst) | {n} vs as taken" for n in names)
             + f" | flags raised ({' / '.join(names)}) |", "|---|---|" + "---|" * (2 * len(SOURCES) + 1)]
    for shift, (what, _) in SHIFTS.items():
        cells, flags = [], []
        for source in SOURCES:
            r = results["shifts"][shift][source]
            dice, diff = r["metrics"]["dice"], r.get("vs_as_taken")
            cells += [f"{100 * dice['mean']:.2f} ± {100 * dice['sd']:.2f} ({100 * dice['min']:.2f})",
                      "" if diff is None else f"{_points(diff['mean_dice_points'])} ± {diff['standard_error']:.2f}"]
            flags.append(", ".join(f"{k} {v}" for k, v in sorted(r["flags"].items())) or "none")
        lines.append(f"| {shift} | {what} | " + " | ".join(cells) + f" | {' / '.join(flags)} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", type=Path, help="model folder (default: the bundled model)")
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "runs" / "camera_shift")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--shifts", nargs="+", choices=list(SHIFTS), default=list(SHIFTS))
    p.add_argument("--sheets", action="store_true",
                   help=f"write each source's sheet of its largest losses into {IMG.relative_to(REPO)}")
    args = p.parse_args()
    if "as_taken" not in args.shifts:
        p.error("--shifts needs as_taken, the reference the others are compared with")
    model = args.model or BUNDLED_ROOT / DEFAULT_MODEL
    name = bundled_tag() if args.model is None else args.model.resolve().name
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    env = nnunet_env(workdir)
    results: dict = {"model": str(model.relative_to(REPO)) if model.is_relative_to(REPO) else str(model),
                     "date": date.today().isoformat(), "command": "python benchmarks/camera_shift.py" + (
                         f" -m {args.model}" if args.model else ""), "host": "2 CPU cores", "shifts": {}}
    for shift in (s for s in SHIFTS if s in args.shifts):  # as_taken first
        results["shifts"][shift] = {"what": SHIFTS[shift][0]}
        for source in SOURCES:
            photos, truth = write_shifted(workdir, source, shift, args.data)
            tag = f"{name}_{shift}_{source}"
            scored, _ = score(workdir, env, tag, photos, truth, ["-m", str(model)])
            scored["below_90"] = [case for case, row in per_case(workdir, tag).items() if row["dice"] < 0.9]
            if shift != "as_taken":
                scored["vs_as_taken"] = paired_difference(workdir, tag, f"{name}_as_taken_{source}")
            results["shifts"][shift][source] = scored
            print(json.dumps({shift: {source: round(100 * scored["metrics"]["dice"]["mean"], 2)}}), flush=True)
    out = RESULTS / f"camera_shift_{name}.json"
    out.write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {out}")
    if args.sheets:
        for source in SOURCES:
            png = workdir / f"worst_drops_{name}_{source}.png"
            worst_drops_sheet(workdir, name, source, args.shifts, png)
            print(f"wrote {IMG / docs_sheet(png, f'camera_shift_{source}', IMG)}")
    if list(SHIFTS) == args.shifts:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
