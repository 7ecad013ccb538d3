"""Calibrate the ``blurred`` quality flag: the sharpness of every photo of both sources, as taken, under- and
over-exposed, re-encoded, noisy and out of focus.

    python benchmarks/sharpness_flag.py      # CPU, about 10 min on 2 cores; no model involved

Each shift is one of ``camera_shift.SHIFTS`` (the same photos the camera-shift benchmark segments), plus two in
the order a camera brings them, the lens first: out of focus, then under-exposed by 3 stops; out of focus, then
sensor noise. Per source and shift it prints the
range and median of :func:`nnunet_tongue.inference.quality.sharpness` and how many photos the ``blurred`` rule
raises on, beside the rule it replaced (variance of the plain Laplacian below 15, which falls with exposure);
``train`` photos set the threshold, ``test`` photos check it. Writes ``benchmarks/results/sharpness_flag.json``.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from biohit_benchmark import BIOHIT as DATA, RESULTS
from camera_shift import SHIFTS
from cross_dataset import SOURCES

from nnunet_tongue.inference.quality import SHARPNESS, grey_pixels, sharpness

KEPT = ("as_taken", "dark", "very_dark", "bright", "noisy", "jpeg_q30", "sent_by_chat", "blurred", "very_blurred")
COMBINED = {"blurred_very_dark": ("blurred", "very_dark"), "blurred_noisy": ("blurred", "noisy")}


def laplacian_variance(grey: Image.Image) -> float:
    """The rule until 2026-12-04: variance of the plain Laplacian at most 512 px on the longest side (flag below 15)."""
    return float(ndimage.laplace(grey_pixels(grey)).var())


def shifted(photo: Image.Image, mask: Image.Image, name: str, shift: str) -> Image.Image:
    """``photo`` under ``shift`` (a camera_shift shift, or two of them one after the other)."""
    for step in COMBINED.get(shift, (shift,)):
        photo, mask = SHIFTS[step][1](photo, mask, name)
    return photo


def measure(data: Path) -> dict:
    """{source: {part: {shift: {"new": [...], "old": [...]}}}} over every photo of both sources."""
    found: dict = {}
    for source in SOURCES:
        root = data / source
        split = json.loads((data / SOURCES[source][2]).read_text())
        for part in ("train", "test"):
            for case in map(str, split[part]):
                photo = Image.open(root / "images" / f"{case}.jpg").convert("RGB")
                mask = Image.open(root / "masks" / f"{case}.png")
                for shift in (*KEPT, *COMBINED):
                    grey = shifted(photo, mask, case, shift).convert("L")
                    cell = found.setdefault(source, {}).setdefault(part, {}).setdefault(shift, {"new": [], "old": []})
                    cell["new"].append(sharpness(grey))
                    cell["old"].append(laplacian_variance(grey))
    return found


def summary(values: dict) -> dict:
    new, old = np.array(values["new"]), np.array(values["old"])
    return {"n": len(new), "sharpness_min": round(float(new.min()), 2),
            "sharpness_median": round(float(np.median(new)), 2), "sharpness_max": round(float(new.max()), 2),
            "flagged": int((new < SHARPNESS).sum()), "flagged_by_old_rule": int((old < 15).sum())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA,
                   help="the shared data folder (biohit/, ntust/ and their split files)")
    args = p.parse_args()
    found = measure(args.data)
    results = {"date": date.today().isoformat(), "command": "python benchmarks/sharpness_flag.py",
               "threshold": SHARPNESS, "old_rule": "variance of the Laplacian < 15",
               "shifts": {s: SHIFTS[s][0] for s in KEPT} | {s: " then ".join(COMBINED[s]) for s in COMBINED},
               "sources": {source: {part: {shift: summary(v) for shift, v in parts.items()}
                                    for part, parts in found[source].items()} for source in found}}
    print("| source | shift | photos (train / test) | sharpness min–max (median), train | test | "
          "flagged `blurred`, train / test | old rule |")
    print("|---|---|---|---|---|---|---|")
    for source, parts in results["sources"].items():
        for shift in parts["train"]:
            tr, te = parts["train"][shift], parts["test"][shift]
            print(f"| {source} | {shift} | {tr['n']} / {te['n']} | {tr['sharpness_min']}–{tr['sharpness_max']} "
                  f"({tr['sharpness_median']}) | {te['sharpness_min']}–{te['sharpness_max']} "
                  f"({te['sharpness_median']}) | {tr['flagged']} / {te['flagged']} "
                  f"| {tr['flagged_by_old_rule']} / {te['flagged_by_old_rule']} |")
    out = RESULTS / "sharpness_flag.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
