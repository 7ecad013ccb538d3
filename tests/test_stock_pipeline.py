"""End to end through the STOCK nnU-Net console scripts, on CPU, with nnUNet_extTrainer unset.

plan -> preprocess -> train (budget variant: a few iterations) -> predict -> Dice against held-out masks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nnunet_tongue.synthetic import dice

pytestmark = pytest.mark.integration

#: predicting "everything" scores ~0.45 on these photos and "nothing" 0; a learnt model is well above
ABOVE_CHANCE = 0.6


def predict_and_score(nnunet, trainer: str, out_name: str, *extra: str) -> float:
    dataset = nnunet.raw / "Dataset999_SyntheticTongue"
    out = nnunet.root / out_name
    nnunet.run("nnUNetv2_predict", "-i", str(dataset / "imagesTs"), "-o", str(out), "-d", "999", "-c", "2d",
               "-f", "0", "-tr", trainer, "-device", "cpu", "-npp", "1", "-nps", "1", *extra)
    scores = [dice(np.array(Image.open(out / gt.name)), np.array(Image.open(gt)))
              for gt in sorted((dataset / "labelsTs").glob("*.png"))]
    assert len(scores) == 4
    return float(np.mean(scores))


def test_tunet_trains_and_predicts_above_chance(trained_tongue_model):
    assert (trained_tongue_model.model_folder / "fold_0" / "checkpoint_final.pth").is_file()
    assert predict_and_score(trained_tongue_model.nnunet, trained_tongue_model.trainer, "pred_tunet") > ABOVE_CHANCE


@pytest.mark.parametrize("trainer", ["nnUNetTrainerResUNet_Budget", "nnUNetTrainerFabiansUNet_Budget"])
def test_residual_unets_train_and_predict_above_chance(planned_synthetic, trainer):
    planned_synthetic.run("nnUNetv2_train", "999", "2d", "0", "-tr", trainer, "-device", "cpu")
    assert predict_and_score(planned_synthetic, trainer, f"pred_{trainer}") > ABOVE_CHANCE


def test_training_resumes_with_c(trained_tongue_model):
    nnunet, fold = trained_tongue_model.nnunet, trained_tongue_model.model_folder / "fold_0"
    env = dict(nnunet.env, NNUNET_TONGUE_EPOCHS=str(int(nnunet.env["NNUNET_TONGUE_EPOCHS"]) + 1))
    before = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["current_epoch"]
    resumed = type(nnunet)(nnunet.root, env)
    resumed.run("nnUNetv2_train", "999", "2d", "0", "-tr", trained_tongue_model.trainer, "-device", "cpu", "--c")
    after = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert after["current_epoch"] == before + 1
    assert len(after["logging"]["train_losses"]) == before + 1, "the resumed run continues the old log"


def test_validation_only_with_npz(trained_tongue_model):
    nnunet = trained_tongue_model.nnunet
    nnunet.run("nnUNetv2_train", "999", "2d", "0", "-tr", trained_tongue_model.trainer, "-device", "cpu",
               "--val", "--npz")
    validation = trained_tongue_model.model_folder / "fold_0" / "validation"
    assert list(validation.glob("*.npz"))
    summary = json.loads((validation / "summary.json").read_text())
    assert summary["foreground_mean"]["Dice"] > ABOVE_CHANCE


def test_plugin_planner_plans_are_used_by_stock_train_and_predict(planned_synthetic):
    nnunet = planned_synthetic
    nnunet.run("nnunet-tongue", "plan_and_preprocess", "-d", "999", "-pl", "TUNet", "-npfp", "1", "-np", "1",
               "--no_pbar")
    plans = json.loads((nnunet.preprocessed / "Dataset999_SyntheticTongue" / "nnUNetTongueTUNetPlans.json").read_text())
    assert plans["configurations"]["2d"]["architecture"]["network_class_name"].endswith("TransformerUNet")
    trainer = "nnUNetTrainerTUNet_Budget"
    short = type(nnunet)(nnunet.root, dict(nnunet.env, NNUNET_TONGUE_EPOCHS="1", NNUNET_TONGUE_ITERATIONS="2"))
    short.run("nnUNetv2_train", "999", "2d", "0", "-tr", trainer, "-p", "nnUNetTongueTUNetPlans", "-device", "cpu")
    out = nnunet.root / "pred_plugin_plans"
    short.run("nnUNetv2_predict", "-i", str(nnunet.raw / "Dataset999_SyntheticTongue" / "imagesTs"), "-o", str(out),
              "-d", "999", "-c", "2d", "-f", "0", "-tr", trainer, "-p", "nnUNetTongueTUNetPlans", "-device", "cpu",
              "-npp", "1", "-nps", "1")
    assert len(list(out.glob("*.png"))) == 4


def save_as_if_on_cuda(checkpoint: dict, path) -> None:
    """Write ``checkpoint`` with every tensor's storage tagged ``cuda:0``, as a GPU training run writes it."""
    from unittest import mock

    with mock.patch("torch.serialization.location_tag", lambda storage: "cuda:0"):
        torch.save(checkpoint, path)


def test_gpu_trained_checkpoint_predicts_on_cpu(trained_tongue_model, tmp_path):
    import shutil

    nnunet = trained_tongue_model.nnunet
    results = tmp_path / "results"
    model = results / trained_tongue_model.model_folder.relative_to(nnunet.results)
    shutil.copytree(trained_tongue_model.model_folder, model,
                    ignore=shutil.ignore_patterns("validation", "*.png", "training_log*"))
    checkpoint = model / "fold_0" / "checkpoint_final.pth"
    save_as_if_on_cuda(torch.load(checkpoint, map_location="cpu", weights_only=False), checkpoint)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # the copy really is CUDA-tagged
            torch.load(checkpoint, weights_only=False)
    on_gpu_copy = type(nnunet)(nnunet.root, dict(nnunet.env, nnUNet_results=str(results)))
    assert predict_and_score(on_gpu_copy, trained_tongue_model.trainer, "pred_from_cuda_checkpoint") > ABOVE_CHANCE
