"""The benchmark scripts' own rules: operation counts and which settings a published table may change."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(script: str):
    spec = importlib.util.spec_from_file_location(script, BENCHMARKS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_operation_count_ranks_the_lean_decoder_between_plainconvunet_and_the_tunet():
    count = load("network_speed").count_flops
    patch = [64, 96]
    plain, tunet, lean = (count(n, patch) for n in ("PlainConvUNet", "TUNet", "TUNetLean"))
    assert plain < lean < tunet


def test_fast_tunet_needs_fewer_operations_than_plainconvunet_at_the_biohit_plan():
    count = load("network_speed").count_flops
    patch = [640, 768]  # nnU-Net's 2d patch for the full-resolution BioHit photos
    assert count("TUNetFast", patch) < 0.9 * count("PlainConvUNet", patch)


def test_operation_count_grows_with_the_patch():
    count = load("network_speed").count_flops
    assert count("TUNet", [128, 192]) > 3 * count("TUNet", [64, 96])


def test_benchmark_refuses_to_change_a_published_tier_without_a_study_name():
    run = subprocess.run([sys.executable, str(BENCHMARKS / "biohit_benchmark.py"), "--tier", "gpu", "--compile",
                          "--epochs", "3"], capture_output=True, text=True)
    assert run.returncode == 2
    assert "--epochs, --compile change the settings" in run.stderr and "--study NAME" in run.stderr


def test_a_resumed_cross_dataset_training_counts_the_epochs_done_before_it_stopped(tmp_path, monkeypatch):
    import torch

    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling biohit_benchmark
    epochs_done_s = load("cross_dataset").epochs_done_s
    checkpoint = tmp_path / "checkpoint_latest.pth"
    torch.save({"logging": {"epoch_start_timestamps": [100.0, 130.0], "epoch_end_timestamps": [125.0, 160.0]}},
               checkpoint)
    assert epochs_done_s(checkpoint) == 55.0


def test_cross_dataset_tiers_keep_their_worst_case_sheets_apart(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    cross_dataset = load("cross_dataset")
    names = {tier: cross_dataset.sheet_name(tier, "nnUNetTrainerAdamW", "biohit", "ntust")
             for tier in cross_dataset.TIERS}
    assert len(set(names.values())) == len(cross_dataset.TIERS)
    assert names["cpu"] == "nnUNetTrainerAdamW_biohit_on_ntust"  # the names docs/cross_dataset.md links


def test_cross_dataset_tiers_at_one_resolution_share_their_prepared_data(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    tier_workdir = load("cross_dataset").tier_workdir
    assert tier_workdir("cpu_long") == tier_workdir("cpu") == "cpu"
    assert tier_workdir("gpu") == "gpu"  # full resolution: converted and preprocessed apart


def _tongue(top: int) -> np.ndarray:
    """A rectangular 'tongue' from row ``top`` down to row 90."""
    mask = np.zeros((100, 80), dtype=bool)
    mask[top:90, 20:60] = True
    return mask


def test_root_errors_count_a_root_drawn_higher_in_the_truth_as_root_under():
    root = load("root_errors")
    gt, pred = _tongue(10), _tongue(20)  # the truth reaches 10 rows higher; the rest agrees
    row = root.case_errors(pred, gt)
    assert (row["fn_root"], row["fp_root"], row["fp_rest"], row["fn_rest"]) == (400, 0, 0, 0)
    assert root.side(row) == "under" and row["dice_true_roots"] == 1.0


def test_root_errors_leave_errors_below_the_root_band_out_of_the_root():
    root = load("root_errors")
    gt = _tongue(10)
    pred = gt.copy()
    pred[80:90] = False  # the tip cut short
    row = root.case_errors(pred, gt)
    assert row["fn_rest"] == 400 and row["fn_root"] == 0 and root.side(row) is None
    assert row["dice_true_roots"] == row["dice"] < 1.0


def test_moving_the_predicted_root_line_up_by_the_gap_matches_the_truth():
    root = load("root_errors")
    gt, pred = _tongue(10), _tongue(14)
    assert root.case_errors(pred, gt)["dice_root_moved_+4"] == 1.0
    assert root.case_errors(_tongue(6), gt)["dice_root_moved_-4"] == 1.0
