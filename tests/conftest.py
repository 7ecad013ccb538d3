"""Shared fixtures: nnU-Net folders in tmp, a tiny synthetic dataset, one tiny trained model, real data."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent

#: tiny CPU budget for the stock console scripts: enough to get clearly above chance on synthetic photos
TEST_BUDGET = {"NNUNET_TONGUE_EPOCHS": "4", "NNUNET_TONGUE_ITERATIONS": "10", "NNUNET_TONGUE_VAL_ITERATIONS": "2"}


@dataclass
class NnUNetEnv:
    """nnU-Net's three folders and an environment for running its console scripts on 1 CPU process."""

    root: Path
    env: dict = field(default_factory=dict)

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "preprocessed"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def run(self, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
        """Run a console script of this environment's Python (``nnUNetv2_train``, ...) in a subprocess."""
        cmd = [str(BIN / args[0]), *args[1:]]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc


def make_nnunet_env(root: Path, **extra: str) -> NnUNetEnv:
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    ne = NnUNetEnv(root)
    env.update(nnUNet_raw=str(ne.raw), nnUNet_preprocessed=str(ne.preprocessed), nnUNet_results=str(ne.results),
               nnUNet_def_n_proc="1", nnUNet_n_proc_DA="1", OMP_NUM_THREADS="2", **TEST_BUDGET, **extra)
    for folder in (ne.raw, ne.preprocessed, ne.results):
        folder.mkdir(parents=True, exist_ok=True)
    ne.env = env
    return ne


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests using it skip when it is absent."""
    if not (SHARED_DATA / "biohit" / "images").is_dir():
        pytest.skip(f"real tongue data not found at {SHARED_DATA} (the ../shared folder beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def planned_synthetic(tmp_path_factory) -> NnUNetEnv:
    """A tiny synthetic RGB tongue dataset (Dataset999), planned and preprocessed by the stock command."""
    from nnunet_tongue.synthetic import write_raw_dataset

    ne = make_nnunet_env(tmp_path_factory.mktemp("nnunet"))
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
    nnunet: NnUNetEnv


@pytest.fixture(scope="session")
def trained_tongue_model(planned_synthetic: NnUNetEnv) -> TrainedModel:
    """T-Unet trained for a few CPU iterations on Dataset999 with the stock ``nnUNetv2_train``."""
    trainer = "nnUNetTrainerTUNet_Budget"
    planned_synthetic.run("nnUNetv2_train", "999", "2d", "0", "-tr", trainer, "-device", "cpu")
    folder = planned_synthetic.results / "Dataset999_SyntheticTongue" / f"{trainer}__nnUNetPlans__2d"
    return TrainedModel(folder, 999, trainer, "nnUNetPlans", "2d", 0, planned_synthetic.results,
                        planned_synthetic.raw / "Dataset999_SyntheticTongue", planned_synthetic)
