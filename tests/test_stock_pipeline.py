"""End to end through the STOCK nnU-Net console scripts, on CPU (trainers found through the start-up hook).

plan -> preprocess -> train (budget variant: a few iterations) -> predict -> Dice against held-out masks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import with_results_in
from nnunet_tongue.evaluation.metrics import dice

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


@pytest.mark.parametrize("trainer", ["nnUNetTrainerResUNet_4epochs_10its_2val",
                                     "nnUNetTrainerFabiansUNet_4epochs_10its_2val"])
def test_residual_unets_train_and_predict_above_chance(planned_synthetic, trainer, tmp_path):
    nnunet = with_results_in(planned_synthetic, tmp_path / "results")
    nnunet.run("nnUNetv2_train", "999", "2d", "0", "-tr", trainer, "-device", "cpu")
    assert predict_and_score(nnunet, trainer, f"pred_{trainer}") > ABOVE_CHANCE


def test_training_resumes_with_c_from_its_checkpoint_and_keeps_the_log_before_it(trained_tongue_model, tmp_path):
    """A 4-epoch run's checkpoint, as the latest checkpoint of a 6-epoch run stopped after epoch 4: ``--c``
    trains epochs 5 and 6 only, on top of the first 4 epochs' log."""
    import shutil

    nnunet = with_results_in(trained_tongue_model.nnunet, tmp_path / "results")
    done = trained_tongue_model.model_folder
    longer = "nnUNetTrainerTUNet_6epochs_10its_2val"
    folder = tmp_path / "results" / done.parent.name / f"{longer}__nnUNetPlans__2d"
    shutil.copytree(done, folder, ignore=shutil.ignore_patterns("validation", "checkpoint_*.pth"))
    shutil.copy(done / "fold_0" / "checkpoint_final.pth", folder / "fold_0" / "checkpoint_latest.pth")
    before = torch.load(done / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert before["current_epoch"] == 4
    nnunet.run("nnUNetv2_train", "999", "2d", "0", "-tr", longer, "-device", "cpu", "--c")
    after = torch.load(folder / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert after["current_epoch"] == 6
    log = after["logging"]
    assert log["train_losses"][:4] == before["logging"]["train_losses"], "the log before the checkpoint is kept"
    assert len(log["train_losses"]) == 6
    assert log["epoch_start_timestamps"][4] > before["logging"]["epoch_end_timestamps"][3], "epochs 5-6 are new"


def test_validation_only_with_npz(trained_tongue_model):
    nnunet = trained_tongue_model.nnunet
    nnunet.run("nnUNetv2_train", "999", "2d", "0", "-tr", trained_tongue_model.trainer, "-device", "cpu",
               "--val", "--npz")
    validation = trained_tongue_model.model_folder / "fold_0" / "validation"
    assert list(validation.glob("*.npz"))
    summary = json.loads((validation / "summary.json").read_text())
    assert summary["foreground_mean"]["Dice"] > ABOVE_CHANCE


def test_plugin_planner_plans_are_used_by_stock_train_and_predict(planned_synthetic, tmp_path):
    nnunet = with_results_in(planned_synthetic, tmp_path / "results")
    nnunet.run("nnunet-tongue", "plan_and_preprocess", "-d", "999", "-pl", "TUNet", "-npfp", "1", "-np", "1",
               "--no_pbar")
    plans = json.loads((nnunet.preprocessed / "Dataset999_SyntheticTongue" / "nnUNetTongueTUNetPlans.json").read_text())
    assert plans["configurations"]["2d"]["architecture"]["network_class_name"].endswith("TransformerUNet")
    trainer = "nnUNetTrainerTUNet_1epochs_2its_1val"
    nnunet.run("nnUNetv2_train", "999", "2d", "0", "-tr", trainer, "-p", "nnUNetTongueTUNetPlans", "-device", "cpu")
    out = nnunet.root / "pred_plugin_plans"
    nnunet.run("nnUNetv2_predict", "-i", str(nnunet.raw / "Dataset999_SyntheticTongue" / "imagesTs"), "-o", str(out),
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
    on_gpu_copy = with_results_in(nnunet, results)
    assert predict_and_score(on_gpu_copy, trained_tongue_model.trainer, "pred_from_cuda_checkpoint") > ABOVE_CHANCE


def test_fine_tuning_from_a_tunet_planned_for_another_patch_size(trained_tongue_model, tmp_path):
    """``-pretrained_weights`` across patch sizes: the position embedding is learnt at a fixed token grid."""
    from nnunet_tongue.synthetic import write_raw_dataset

    nnunet = with_results_in(trained_tongue_model.nnunet, tmp_path / "results")
    write_raw_dataset(nnunet.raw, 998, n_train=8, n_test=2, width=160, height=128)
    nnunet.run("nnUNetv2_plan_and_preprocess", "-d", "998", "-c", "2d", "-npfp", "1", "-np", "1")
    plans = json.loads((nnunet.preprocessed / "Dataset998_SyntheticTongue" / "nnUNetPlans.json").read_text())
    first = json.loads((trained_tongue_model.model_folder / "plans.json").read_text())
    assert plans["configurations"]["2d"]["patch_size"] != first["configurations"]["2d"]["patch_size"]
    pretrained = trained_tongue_model.model_folder / "fold_0" / "checkpoint_final.pth"
    trainer = "nnUNetTrainerTUNet_1epochs_2its_1val"
    nnunet.run("nnUNetv2_train", "998", "2d", "0", "-tr", trainer, "-device", "cpu",
               "-pretrained_weights", str(pretrained))
    tuned = tmp_path / "results" / "Dataset998_SyntheticTongue" / f"{trainer}__nnUNetPlans__2d" / "fold_0"
    weights = torch.load(tuned / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    source = torch.load(pretrained, map_location="cpu", weights_only=False)["network_weights"]
    # two small steps from the pretrained weights (a fresh initialisation would differ by about 140 %)
    for key in ("transformer.blocks.0.attn.qkv.weight", "transformer.pos_embed"):
        assert torch.linalg.norm(weights[key] - source[key]) < 0.1 * torch.linalg.norm(source[key])
