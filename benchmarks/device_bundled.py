"""The bundled model's recipe trained on a lent GPU for as many steps as fit into one command, brought home and
scored here beside the bundled model.

There (the ``bundled`` step of ``benchmarks/device_run.sh``, with ``.device`` packed by
``python benchmarks/device_bundle.py --two-source benchmarks/runs/cross_dataset/cpu``)::

    python benchmarks/device_bundled.py prepare --bundle .device --workdir /tmp/bundled   # CPU: unpack, preprocess
    python benchmarks/device_bundled.py train --workdir /tmp/bundled --out $OUT --end-at SECONDS

Here, with the files the run brought back::

    python benchmarks/device_bundled.py bring-home FOLDER     # the model folder into bundled_model.py's results
    python benchmarks/bundled_model.py --epochs E --iterations I   # scored on both test sets (the printed command)

``train`` runs the stock ``nnUNetv2_train 513 2d all -tr nnUNetTrainerUNet320CoatingAug_<E>epochs_<I>its_3val_bs11
-device cuda``: the bundled model's trainer, data, batch and resolution; the steps are what fits. Its schedule
(the learning rate warms up and decays over the whole run, so it is fixed before the start) is sized from an
assumed step rate; once two epochs are timed, a run that would end after ``--end-at``, or well before it, is
restarted once with the epochs that fit. nnU-Net's final validation (every training case predicted again) is
skipped: the model is scored here. The checkpoint comes home without its optimiser state, in parts under the
device's 16 MiB per file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from biohit_benchmark import REPO, nnunet_env
from bundled_model import BATCH_SIZE, ITERATIONS, TRAINER, VAL_ITERATIONS
from cross_dataset import BOTH, dataset_name
from PIL import Image

from nnunet_tongue.training.budget import budget_trainer_name

ASSUMED_STEPS_PER_S = 40.0  # first guess only: two timed epochs correct it
START_S = 30  # nnU-Net's start: data loaders, first batches, cuDNN autotuning
PART_BYTES = 16 * 2**20 - 2**16  # the device returns files of at most 16 MiB
HOME = REPO / "benchmarks" / "runs" / "cross_dataset" / "cpu" / "results" / dataset_name("both")


def stamp(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def unpack(carried: Path, raw: Path) -> None:
    """The dataset packed by ``device_bundle.py --two-source`` as nnU-Net's raw dataset: WebP photos back to PNG
    (lossless both ways: the same pixels), masks and dataset.json as they came."""
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    for photo in sorted((carried / "imagesTr").glob("*.webp")):
        with Image.open(photo) as image:
            image.convert("RGB").save(raw / "imagesTr" / f"{photo.stem}.png")
    shutil.copytree(carried / "labelsTr", raw / "labelsTr", dirs_exist_ok=True)
    shutil.copy2(carried / "dataset.json", raw / "dataset.json")


def prepare(bundle: Path, workdir: Path) -> None:
    """Unpack the carried two-source dataset and run the stock plan and preprocess; say whether it planned what
    the development machine planned."""
    carried = bundle / "two_source"
    unpack(carried, workdir / "raw" / dataset_name("both"))
    processes = str(max(1, min(12, (os.cpu_count() or 2) - 2)))
    subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", str(BOTH[0]), "-c", "2d", "-npfp", processes, "-np",
                    processes, "--no_pbar"], env=nnunet_env(workdir), check=True)
    here = json.loads((carried / "nnUNetPlans.json").read_text())["configurations"]["2d"]
    there = json.loads((workdir / "preprocessed" / dataset_name("both") / "nnUNetPlans.json").read_text())
    there = there["configurations"]["2d"]
    differ = sorted(k for k in here.keys() | there.keys() if here.get(k) != there.get(k))
    stamp("plans: the same as on the development machine" if not differ else f"plans DIFFER in {differ}")


def budgeted(epochs: int, iterations: int) -> str:
    return budget_trainer_name(TRAINER, epochs, iterations, VAL_ITERATIONS, batch_size=BATCH_SIZE)


def epochs_that_fit(seconds: float, epoch_s: float) -> int:
    return max(1, int(seconds // epoch_s))


def start_training(workdir: Path, epochs: int, iterations: int, log: Path, device: str) -> subprocess.Popen:
    env = nnunet_env(workdir, nnUNet_compile="false",
                     nnUNet_n_proc_DA=str(max(1, min(14, (os.cpu_count() or 2) - 2))))
    command = ["nnUNetv2_train", str(BOTH[0]), "2d", "all", "-tr", budgeted(epochs, iterations), "-device", device]
    stamp(" ".join(command))
    with log.open("a") as output:
        output.write(f"$ {' '.join(command)}\n")
    return subprocess.Popen(command, env=env, stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def epoch_times(log: Path) -> list[float]:
    return [float(t) for t in re.findall(r"Epoch time: ([\d.]+) s", log.read_text(errors="replace"))]


def train(workdir: Path, out: Path, end_at: float, device: str = "cuda", iterations: int = ITERATIONS) -> Path:
    """Train on a schedule that ends by ``end_at`` (seconds since the epoch); returns the model folder."""
    log = out / "bundled_train.log"
    left = end_at - time.time() - START_S
    epochs = epochs_that_fit(left, iterations / ASSUMED_STEPS_PER_S + 1)
    process, restarted = start_training(workdir, epochs, iterations, log, device), False
    while True:
        model = workdir / "results" / dataset_name("both") / f"{budgeted(epochs, iterations)}__nnUNetPlans__2d"
        fold = model / "fold_all"
        # nnU-Net deletes checkpoint_latest.pth once checkpoint_final.pth is written, then validates
        if (fold / "checkpoint_final.pth").exists() and not (fold / "checkpoint_latest.pth").exists():
            stop(process)  # nnU-Net's final validation is not needed
            stamp(f"trained: {epochs} epochs x {iterations} steps")
            return model
        if process.poll() is not None:
            raise SystemExit(f"nnUNetv2_train stopped (exit {process.returncode}); see {log}")
        if time.time() > end_at + 20:
            stop(process)
            raise SystemExit(f"{epochs} epochs did not end by --end-at: stopped, nothing packed; see {log}")
        times = epoch_times(log)
        if len(times) >= 2 and not restarted:
            restarted = True
            finish = time.time() + (epochs - len(times)) * times[1]
            stamp(f"epoch 2 took {times[1]:.1f} s; {epochs} epochs end in {finish - time.time():.0f} s")
            # a schedule ending much earlier than it could is restarted too: half the steps are not worth 40 s
            if finish > end_at or finish < end_at - max(60.0, 0.25 * (end_at - time.time())):
                stop(process)
                shutil.rmtree(model, ignore_errors=True)
                epochs = epochs_that_fit(end_at - time.time() - START_S, times[1])
                stamp(f"restarted with {epochs} epochs, which fit")
                process = start_training(workdir, epochs, iterations, log, device)
        time.sleep(2)


def package(model: Path, workdir: Path, out: Path, started: float, device: str) -> None:
    """The model folder without optimiser state, a device record beside the checkpoint, as a tar in parts."""
    import torch

    fold = model / "fold_all"
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    for key in ("optimizer_state", "grad_scaler_state"):
        checkpoint.pop(key, None)
    torch.save(checkpoint, fold / "checkpoint_final.pth")
    logging = checkpoint["logging"]
    gpu = f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}, " if torch.cuda.is_available() else ""
    (fold / "device.json").write_text(json.dumps({
        "host": f"{gpu}PyTorch {torch.__version__}, {os.cpu_count()} CPU cores",
        "command": f"STEPS=bundled bash benchmarks/device_run.sh (runs: nnUNetv2_train {BOTH[0]} 2d all -tr "
                   f"{model.name.split('__')[0]} -device {device}, nnUNet_compile=false)",
        "train_wall_s": round(logging["epoch_end_timestamps"][-1] - logging["epoch_start_timestamps"][0]),
        "command_wall_s": round(time.time() - started)}, indent=1))
    tar = workdir / "bundled_model.tar"
    with tarfile.open(tar, "w") as archive:
        # the final weights only: not nnU-Net's checkpoint_best.pth (with optimiser state: 3x the size)
        archive.add(model, arcname=model.name, filter=lambda info: None if Path(info.name).name in (
            "checkpoint_best.pth", "validation") else info)
    data = tar.read_bytes()
    for i in range(0, len(data), PART_BYTES):
        (out / f"bundled_model.tar.{i // PART_BYTES}").write_bytes(data[i:i + PART_BYTES])
    stamp(f"packed {model.name}: {len(data) / 2**20:.1f} MiB in {(len(data) - 1) // PART_BYTES + 1} parts")


def bring_home(folder: Path, home: Path = HOME) -> Path:
    """The parts in ``folder`` joined and unpacked into ``home`` (by default bundled_model.py's results folder
    for the two-source dataset); returns the model folder. An existing model folder of that name is refused."""
    parts = sorted(folder.glob("bundled_model.tar.*"), key=lambda p: int(p.suffix[1:]))
    if not parts:
        raise SystemExit(f"no bundled_model.tar.N parts in {folder}")
    home.mkdir(parents=True, exist_ok=True)
    tar = home / "bundled_model.tar"
    tar.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(tar) as archive:
        name = archive.getnames()[0].split("/")[0]
        if (home / name).exists():
            tar.unlink()
            raise SystemExit(f"{home / name} exists (a training of that budget): move it away first")
        archive.extractall(home, filter="data")
    tar.unlink()
    epochs, iterations = re.search(r"_(\d+)epochs_(\d+)its", name).groups()
    print(f"{home / name}\nscore it: python benchmarks/bundled_model.py --epochs {epochs} --iterations {iterations}"
          "\n(the bundled model's own budget packs it as the bundled model; any other is scored as a candidate)")
    return home / name


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="there: unpack the carried dataset and preprocess it")
    prep.add_argument("--bundle", type=Path, required=True)
    prep.add_argument("--workdir", type=Path, required=True)
    tr = sub.add_parser("train", help="there: train until --end-at, then pack the model into --out")
    tr.add_argument("--workdir", type=Path, required=True)
    tr.add_argument("--out", type=Path, required=True)
    tr.add_argument("--end-at", type=float, required=True, help="seconds since the epoch by which training ends")
    tr.add_argument("--device", default="cuda", help="nnUNetv2_train's -device (cpu: a dry run)")
    tr.add_argument("--iterations", type=int, default=ITERATIONS,
                    help=f"steps per epoch (default {ITERATIONS}, the bundled model's)")
    home = sub.add_parser("bring-home", help="here: the returned parts into bundled_model.py's results folder")
    home.add_argument("folder", type=Path)
    args = p.parse_args()
    if args.command == "prepare":
        prepare(args.bundle, args.workdir)
    elif args.command == "train":
        started = time.time()
        model = train(args.workdir, args.out, args.end_at, args.device, args.iterations)
        package(model, args.workdir, args.out, started, args.device)
    else:
        bring_home(args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
