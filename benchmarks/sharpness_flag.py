"""Calibrate the ``blurred`` quality flag: the sharpness of every photo of both sources under each camera shift
(as taken, colour casts, under- and over-exposed, re-encoded, noisy, out of focus, tilted) and under four shifts
one after the other, in the order a camera brings them, the lens first: out of focus then 3 stops under-exposed,
out of focus then sensor noise (slightly and badly), and 3 stops under-exposed then sensor noise (a dim room at
high ISO, not blurred).

    python benchmarks/sharpness_flag.py      # CPU, about 15 min on 2 cores; no model involved

Per source, shift and split it prints the range of :func:`nnunet_tongue.inference.quality.sharpness` (fine and
mid) and how many photos the ``blurred`` rule raises on, beside the rule it replaced (fine sharpness below 5
without the noise's share taken out, until 2026-12-04, which took a noisy blurred photo's grain for detail);
``train`` photos set the thresholds, ``test`` photos check them. Writes ``benchmarks/results/sharpness_flag.json``
and every photo's measures to ``benchmarks/runs/sharpness_flag/measures.json`` (``--measured`` reads them back).
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from biohit_benchmark import BIOHIT as DATA, REPO, RESULTS
from camera_shift import SHIFTS
from cross_dataset import SOURCES

from nnunet_tongue.inference.quality import SHARPNESS, SHARPNESS_MID, is_blurred, sharpness

COMBINED = {"blurred_very_dark": ("blurred", "very_dark"), "blurred_noisy": ("blurred", "noisy"),
            "very_blurred_noisy": ("very_blurred", "noisy"), "very_dark_noisy": ("very_dark", "noisy")}
MEASURES = REPO / "benchmarks" / "runs" / "sharpness_flag" / "measures.json"
PREVIOUS_THRESHOLD = 5.0
PREVIOUS_RULE = f"fine sharpness < {PREVIOUS_THRESHOLD:g}, the noise's share left in (until 2026-12-04)"


def previous_sharpness(grey: Image.Image) -> float:
    """The fine ratio as the rule before this one read it: bilinear to at most 512 px, the noise's share left in."""
    scale = 512 / max(grey.size)
    if scale < 1:
        grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
                           Image.Resampling.BILINEAR)
    pixels = np.asarray(grey, dtype=np.float32)
    coarse = float(ndimage.gaussian_laplace(pixels, 2.0).var())
    return float(ndimage.gaussian_laplace(pixels, 1.0).var()) / coarse if coarse > 1e-6 else 0.0


def out_of_focus(shift: str) -> bool:
    """Whether a shift takes the photo out of focus (the photos the flag is for)."""
    return "blurred" in shift


def shifted(photo: Image.Image, mask: Image.Image, name: str, shift: str) -> Image.Image:
    """``photo`` under ``shift`` (a camera_shift shift, or two of them one after the other)."""
    for step in COMBINED.get(shift, (shift,)):
        photo, mask = SHIFTS[step][1](photo, mask, name)
    return photo


def measure(data: Path) -> dict:
    """{source: {part: {shift: {"fine": [...], "mid": [...], "noise": [...], "previous": [...]}}}} over every photo
    of both sources."""
    found: dict = {}
    for source in SOURCES:
        root = data / source
        split = json.loads((data / SOURCES[source][2]).read_text())
        for part in ("train", "test"):
            for case in map(str, split[part]):
                photo = Image.open(root / "images" / f"{case}.jpg").convert("RGB")
                mask = Image.open(root / "masks" / f"{case}.png")
                for shift in (*SHIFTS, *COMBINED):
                    grey = shifted(photo, mask, case, shift).convert("L")
                    cell = found.setdefault(source, {}).setdefault(part, {}).setdefault(shift, {})
                    for key, value in zip(("fine", "mid", "noise", "previous"),
                                          (*sharpness(grey), previous_sharpness(grey))):
                        cell.setdefault(key, []).append(value)
    return found


def summary(values: dict) -> dict:
    fine, mid, noise, previous = (np.array(values[k]) for k in ("fine", "mid", "noise", "previous"))
    return {"n": len(fine), "fine_min": round(float(fine.min()), 2), "fine_max": round(float(fine.max()), 2),
            "mid_min": round(float(mid.min()), 2), "mid_max": round(float(mid.max()), 2),
            "noise_sigma_median": round(float(np.median(noise)), 2),
            "flagged": int(sum(is_blurred(f, m) for f, m in zip(fine, mid))),
            "flagged_by_previous_rule": int((previous < PREVIOUS_THRESHOLD).sum())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA,
                   help="the shared data folder (biohit/, ntust/ and their split files)")
    p.add_argument("--measured", action="store_true",
                   help=f"read the sharpness of every photo from the last run ({MEASURES.relative_to(REPO)}) "
                        "instead of measuring again: to apply changed thresholds")
    args = p.parse_args()
    if args.measured:
        found = json.loads(MEASURES.read_text())
    else:
        found = measure(args.data)
        MEASURES.parent.mkdir(parents=True, exist_ok=True)
        MEASURES.write_text(json.dumps(found))
    results = {"date": date.today().isoformat(), "command": "python benchmarks/sharpness_flag.py",
               "thresholds": {"fine": SHARPNESS, "mid": SHARPNESS_MID}, "previous_rule": PREVIOUS_RULE,
               "shifts": {s: SHIFTS[s][0] for s in SHIFTS} | {s: " then ".join(COMBINED[s]) for s in COMBINED},
               "sources": {source: {part: {shift: summary(v) for shift, v in parts.items()}
                                    for part, parts in found[source].items()} for source in found}}
    print("| source | shift | out of focus | photos (train / test) | fine sharpness min–max, train / test | "
          "mid sharpness min–max, train / test | flagged `blurred`, train / test | previous rule |")
    print("|---|---|---|---|---|---|---|---|")
    for source, parts in results["sources"].items():
        for shift in parts["train"]:
            tr, te = parts["train"][shift], parts["test"][shift]
            print(f"| {source} | {shift} | {'yes' if out_of_focus(shift) else 'no'} | {tr['n']} / {te['n']} "
                  f"| {tr['fine_min']}–{tr['fine_max']} / {te['fine_min']}–{te['fine_max']} "
                  f"| {tr['mid_min']}–{tr['mid_max']} / {te['mid_min']}–{te['mid_max']} "
                  f"| {tr['flagged']} / {te['flagged']} "
                  f"| {tr['flagged_by_previous_rule']} / {te['flagged_by_previous_rule']} |")
    out = RESULTS / "sharpness_flag.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
