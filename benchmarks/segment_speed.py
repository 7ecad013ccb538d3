"""Time ``segment`` per photo for one trained model on N BioHit photos; print a markdown table row.

    python benchmarks/segment_speed.py MODEL_FOLDER [-n 20] [--device cpu] [--threads 2] [--header]

MODEL_FOLDER is an nnU-Net ``Trainer__Plans__configuration`` folder. The photos are the first N
held-out ('test') cases of ``../shared/data/biohit_split.json`` (768x576 JPEGs). The model is loaded
once (its load time is reported apart), one photo is segmented as a warm-up, then every photo goes
through :func:`nnunet_tongue.inference.segment.segment_photos` exactly as the command runs it: decode,
nnU-Net inference, post-processing, writing mask, cut-out, overlay and JSON line (into a temporary
folder). Columns:

- ``s/photo``: mean wall time per photo, everything included (median and max beside it);
- ``infer s``: mean of the inference part only (resize + nnU-Net + resize back);
- ``CPU s/photo``: process CPU time (all threads) per photo, less sensitive to other load than wall time;
- ``peak RSS``: the process's peak resident memory (MiB) at the end;
- ``load avg``: the machine's 1-minute load average at the end (other processes competing for the cores
  make wall times meaningless: compare rows taken at a load near the thread count or below).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from biohit_benchmark import BIOHIT as DEFAULT_DATA  # ../shared/data beside the checkout

HEADER = ("| model | folds | device | threads | mirroring | step | post | photo | network input | N | s/photo "
          "(mean) | median | max | infer s | CPU s/photo | load s | peak RSS MiB | load avg |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def biohit_photos(data: Path, n: int) -> list[Path]:
    split_file = data / "biohit_split.json"
    names = json.loads(split_file.read_text())["test"] if split_file.is_file() else []
    images = data / "biohit" / "images"
    photos = [images / f"{name}.jpg" for name in names if (images / f"{name}.jpg").is_file()]
    if not photos:
        photos = sorted(images.glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
    if len(photos) < n:
        raise SystemExit(f"only {len(photos)} BioHit photos found under {images}, asked for {n}")
    return photos[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_folder", type=Path)
    parser.add_argument("-n", "--photos", type=int, default=20, help="number of BioHit test photos (default 20)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"shared data folder (default {DEFAULT_DATA})")
    parser.add_argument("-f", "--folds", nargs="+", default=None, help="default: all folds with the checkpoint")
    parser.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--mirroring", action="store_true", help="test-time mirroring on (default off)")
    parser.add_argument("--step-size", type=float, default=0.5)
    parser.add_argument("--no-postprocess", action="store_true")
    parser.add_argument("--max-size", type=int, default=None, help="as segment --max-size (default: the model's)")
    parser.add_argument("--header", action="store_true", help="print the table header first")
    args = parser.parse_args(argv)

    import torch

    from nnunet_tongue.inference.segment import segment_photos
    from nnunet_tongue.inference.segmenter import TongueSegmenter

    if args.threads:
        torch.set_num_threads(args.threads)
    photos = biohit_photos(args.data, args.photos)
    t0 = time.perf_counter()
    segmenter = TongueSegmenter(args.model_folder, folds=args.folds, checkpoint=args.checkpoint, device=args.device,
                                mirroring=args.mirroring, postprocess=not args.no_postprocess,
                                tile_step_size=args.step_size,
                                max_size="model" if args.max_size is None else args.max_size)
    load_s = time.perf_counter() - t0
    postprocess = segmenter.postprocess
    with tempfile.TemporaryDirectory() as tmp:
        segment_photos(photos[:1], Path(tmp) / "warmup", segmenter, progress=False)
        cpu0 = time.process_time()
        report = segment_photos(photos, Path(tmp) / "run", segmenter, progress=False)
        cpu_per_photo = (time.process_time() - cpu0) / len(photos)
    if report.failures:
        print(f"failures: {report.failures}", file=sys.stderr)
        return 1
    seconds = [r["seconds"] for r in report.records]
    infer = [r["inference_seconds"] for r in report.records]
    first = report.records[0]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if platform.system() == "Darwin"
                                                                     else 1024)
    load_avg = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "-"
    model = args.model_folder.name if args.model_folder.name.count("__") == 2 else str(args.model_folder)
    device = str(segmenter.device)
    threads = torch.get_num_threads() if device == "cpu" else "-"
    row = (f"| {model} | {','.join(map(str, segmenter.folds))} | {device} | {threads} | "
           f"{'on' if args.mirroring else 'off'} | {args.step_size} | {'on' if postprocess else 'off'} | "
           f"{first['width']}x{first['height']} | {first['inference_width']}x{first['inference_height']} | "
           f"{len(seconds)} | {statistics.mean(seconds):.3f} | {statistics.median(seconds):.3f} | {max(seconds):.3f} | "
           f"{statistics.mean(infer):.3f} | {cpu_per_photo:.2f} | {load_s:.1f} | {peak_mib:.0f} | {load_avg} |")
    if args.header:
        print(HEADER)
    print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
