"""Shared fixtures: nnU-Net folders in tmp, a tiny synthetic dataset, one tiny trained model, real data."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from nnunet_tongue.workspace import NnUNetWorkspace

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

#: tiny CPU budget for the stock console scripts: enough to get clearly above chance on synthetic photos
TEST_TRAINER = "nnUNetTrainerTUNet_4epochs_10its_2val"


def make_workspace(root: Path, **extra: str) -> NnUNetWorkspace:
    """nnU-Net's folders in ``root``; its commands run on 1 worker process, 2 threads, with ``extra`` set."""
    return NnUNetWorkspace(root, processes=1, extra={"OMP_NUM_THREADS": "2", **extra}).create()


def with_results_in(nnunet: NnUNetWorkspace, results: Path) -> NnUNetWorkspace:
    """``nnunet`` with ``nnUNet_results`` at ``results``: a training only one test uses goes into that test's
    ``tmp_path``, which pytest removes once the test passed (a T-Unet's checkpoints take about 0.6 GB)."""
    return type(nnunet)(nnunet.root, processes=nnunet.processes, extra=dict(nnunet.extra, nnUNet_results=str(results)))


@pytest.fixture(scope="session", autouse=True)
def interrupts_reach_the_commands():
    """A shell that starts pytest in the background makes it ignore SIGINT, and the commands the tests interrupt
    would inherit that: give the test process Python's own Ctrl-C handling (children then get the default)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests using it skip when it is absent."""
    if not (SHARED_DATA / "biohit" / "images").is_dir():
        pytest.skip(f"real tongue data not found at {SHARED_DATA} (the ../shared folder beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def planned_synthetic(tmp_path_factory) -> NnUNetWorkspace:
    """A tiny synthetic RGB tongue dataset (Dataset999), planned and preprocessed by the stock command."""
    from nnunet_tongue.synthetic import write_raw_dataset

    ne = make_workspace(tmp_path_factory.mktemp("nnunet"))
    write_raw_dataset(ne.raw, 999, n_train=12, n_test=4, width=96, height=64)
    ne.run("nnUNetv2_plan_and_preprocess", "-d", "999", "-c", "2d", "-npfp", "1", "-np", "1",
           "--verify_dataset_integrity")
    return ne


@dataclass
class TrainedModel:
    model_folder: Path
    dataset_id: int
    trainer: str
    plans: str
    configuration: str
    fold: int
    results_root: Path
    raw_dataset: Path
    nnunet: NnUNetWorkspace


@pytest.fixture(scope="session")
def trained_tongue_model(planned_synthetic: NnUNetWorkspace) -> TrainedModel:
    """T-Unet trained for a few CPU iterations on Dataset999 with the stock ``nnUNetv2_train``."""
    trainer = TEST_TRAINER
    planned_synthetic.run("nnUNetv2_train", "999", "2d", "0", "-tr", trainer, "-device", "cpu")
    folder = planned_synthetic.results / "Dataset999_SyntheticTongue" / f"{trainer}__nnUNetPlans__2d"
    return TrainedModel(folder, 999, trainer, "nnUNetPlans", "2d", 0, planned_synthetic.results,
                        planned_synthetic.raw / "Dataset999_SyntheticTongue", planned_synthetic)


@pytest.fixture()
def small_disk(tmp_path):
    """A 96-KiB file system (tmpfs), made bigger by ``grow()``; skips where mounting is not allowed."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")

    def grow():
        subprocess.run(["mount", "-o", "remount,size=16m", str(folder)], check=True)

    yield folder, grow
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill_up(folder: Path, leave: int) -> Path:
    """Fill ``folder``'s file system until about ``leave`` bytes are free; returns the filler file."""
    stat = os.statvfs(folder)
    filler = folder / "filler"
    filler.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return filler
