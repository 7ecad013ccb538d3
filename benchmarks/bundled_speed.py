"""Speed of the bundled model on CPU: time to the first mask from a cold command, then time per photo.

    python benchmarks/bundled_speed.py [--runs 5] [-n 20] [--threads 2]
    python benchmarks/bundled_speed.py -m benchmarks/runs/cross_dataset/cpu_256px/candidates/<name>   # a candidate

1. **First mask**: ``nnunet-tongue segment -i <one BioHit test photo> -o <tmp>`` run ``--runs`` times as a new
   process (bundled model, default settings): wall time from start to exit, i.e. Python start, imports, model
   load (hash check included), one photo segmented and its mask, cut-out, overlay and JSON line written.
   The same cold start once more per run, timed by phase inside the process (imports, model load, photo).
2. **Per photo**: one process segments the first ``-n`` BioHit test photos (768x576) after one warm-up photo
   through :func:`segment_photos`, as the command does; the mean wall time per photo, everything included.

Writes ``benchmarks/results/bundled_speed.json`` and the table in ``docs/models.md`` (with ``-m``:
``benchmarks/results/bundled_speed_<name>.json`` only). Wall times depend on what else runs: the machine's load
average is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from biohit_benchmark import BIN, BIOHIT as DATA, RESULTS, REPO
from bundled_model import _replace_table
from segment_speed import biohit_photos

DOCS = REPO / "docs" / "models.md"


def first_mask_seconds(photo: Path, runs: int, env: dict, model: str | None) -> list[float]:
    seconds = []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            subprocess.run([str(BIN / "nnunet-tongue"), "segment", "-i", str(photo), "-o", tmp, "--no-progress",
                            "-device", "cpu", *(["-m", model] if model else [])],
                           env=env, check=True, capture_output=True)
            seconds.append(time.perf_counter() - started)
            if not (Path(tmp) / "masks" / f"{photo.stem}.png").is_file():
                raise SystemExit(f"no mask written for {photo}")
    return seconds


#: run in a fresh process: the first mask's phases, as time.time() marks printed as JSON
BREAKDOWN = """
import json, sys, tempfile, time
from pathlib import Path
marks = {}
from nnunet_tongue.inference.segment import segment_photos
from nnunet_tongue.inference.segmenter import TongueSegmenter
from nnunet_tongue.models.store import find_model
marks["imported"] = time.time()
segmenter = TongueSegmenter(find_model(sys.argv[2] or None), device="cpu")
marks["loaded"] = time.time()
with tempfile.TemporaryDirectory() as tmp:
    segment_photos([Path(sys.argv[1])], Path(tmp), segmenter, progress=False)
marks["segmented"] = time.time()
print(json.dumps(marks))
"""


def first_mask_breakdown(photo: Path, runs: int, env: dict, model: str | None) -> dict[str, list[float]]:
    """Per cold run, seconds spent importing (Python start included), loading the model (network built,
    weights hash-checked and read) and segmenting the photo with its four outputs."""
    phases = {"import": [], "load": [], "photo": []}
    for _ in range(runs):
        started = time.time()
        out = subprocess.run([sys.executable, "-W", "ignore", "-c", BREAKDOWN, str(photo), model or ""], env=env,
                             check=True, capture_output=True, text=True).stdout
        marks = json.loads(out.strip().splitlines()[-1])
        phases["import"].append(marks["imported"] - started)
        phases["load"].append(marks["loaded"] - marks["imported"])
        phases["photo"].append(marks["segmented"] - marks["loaded"])
    return phases


def per_photo_seconds(photos: list[Path], model: str | None) -> tuple[list[float], int]:
    from nnunet_tongue.inference.segment import segment_photos
    from nnunet_tongue.inference.segmenter import TongueSegmenter
    from nnunet_tongue.models.store import find_model

    segmenter = TongueSegmenter(find_model(model), device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        segment_photos(photos[:1], Path(tmp) / "warmup", segmenter, progress=False)
        report = segment_photos(photos, Path(tmp) / "run", segmenter, progress=False)
    return [r["seconds"] for r in report.records], sum(r["rescale_factor"] != 1.0 for r in report.records)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("-n", "--photos", type=int, default=20)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (OMP_NUM_THREADS and torch; default 2)")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("-m", "--model", help="another model (name or packed folder, e.g. a candidate of "
                                         "bundled_model.py): timed the same way into "
                                         "benchmarks/results/bundled_speed_<name>.json; docs are left as they are")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    photos = biohit_photos(args.data, args.photos)
    cold = first_mask_seconds(photos[0], args.runs, env, args.model)
    phases = first_mask_breakdown(photos[0], args.runs, env, args.model)
    load_cold = os.getloadavg()[0]
    warm, second_passes = per_photo_seconds(photos, args.model)
    results = {"date": date.today().isoformat(), "threads": args.threads, "cpu_count": os.cpu_count(),
               "model": args.model or "bundled", "first_mask_s": cold, "first_mask_phases_s": phases,
               "per_photo_s": warm, "photos_with_second_pass": second_passes, "photo_size": "768x576",
               "load_avg_1min": [round(load_cold, 2), round(os.getloadavg()[0], 2)]}
    table = "\n".join([
        "| measure | runs | median s | mean s | min s | max s |", "|---|---|---|---|---|---|",
        f"| first mask: `nnunet-tongue segment` on one 768x576 photo, from start to exit | {len(cold)} | "
        f"{statistics.median(cold):.2f} | {statistics.mean(cold):.2f} | {min(cold):.2f} | {max(cold):.2f} |",
        f"| then per 768x576 photo, everything included (decode, 1-2 passes, 4 outputs written) | {len(warm)} | "
        f"{statistics.median(warm):.3f} | {statistics.mean(warm):.3f} | {min(warm):.3f} | {max(warm):.3f} |",
        *(f"| first mask, {what} | {len(v)} | {statistics.median(v):.2f} | {statistics.mean(v):.2f} | {min(v):.2f} | "
          f"{max(v):.2f} |"
          for what, v in (("phase 1: Python start and imports", phases["import"]),
                          ("phase 2: model load (network built, weights hash-checked and read)", phases["load"]),
                          ("phase 3: the photo, its four outputs written", phases["photo"]))),
        "", f"{second_passes} of the {len(warm)} photos needed the second (rescale) pass. "
            f"{args.threads} threads on a {os.cpu_count()}-core x86-64 machine (1-min load average "
            f"{load_cold:.1f} after the cold runs, {os.getloadavg()[0]:.1f} after the timed photos); measured "
            f"{results['date']} with `python benchmarks/bundled_speed.py --runs {args.runs} -n {args.photos}"
            + (f" -m {args.model}" if args.model else "") + "`."])
    name = f"bundled_speed_{Path(args.model).name}.json" if args.model else "bundled_speed.json"
    (RESULTS / name).write_text(json.dumps(results, indent=1))
    if not args.model:
        DOCS.write_text(_replace_table(DOCS.read_text(), table, "speed-figures"))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
