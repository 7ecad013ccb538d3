"""PhotoPredictor gives nnU-Net's prediction without nnU-Net's predictor; the T-Unet runs without timm."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from nnunet_tongue.inference.predictor import (
    PhotoPredictor,
    configuration,
    num_segmentation_heads,
    supported,
)
from nnunet_tongue.inference.segmenter import StockPredictor, TongueSegmenter
from nnunet_tongue.models.packed import PackedModel
from nnunet_tongue.models.store import BUNDLED_ROOT, DEFAULT_MODEL
from nnunet_tongue.photos import load_photo, resize_photo

BUNDLED = BUNDLED_ROOT / DEFAULT_MODEL


def test_output_channels_follow_the_labels():
    assert num_segmentation_heads({"labels": {"background": 0, "tongue": 1}}) == 2
    assert num_segmentation_heads({"labels": {"background": 0, "tongue": 1, "ignore": 2}}) == 2
    assert num_segmentation_heads({"labels": {"background": 0, "body": [1, 2], "coat": 2}}) == 2


def test_configurations_inherit_and_unsupported_plans_say_why():
    plans = json.loads((BUNDLED / "plans.json").read_text())
    assert supported(plans, configuration(plans, "2d")) is None
    plans["configurations"]["2d_rgb01"] = {"inherits_from": "2d", "normalization_schemes": ["RGBTo01Normalization"] * 3}
    rgb01 = configuration(plans, "2d_rgb01")
    assert rgb01["patch_size"] == plans["configurations"]["2d"]["patch_size"] and supported(plans, rgb01) is None
    assert supported(plans, {**rgb01, "normalization_schemes": ["CTNormalization"] * 3}) is None  # nnU-Net's own
    assert "normalisation MyNormalization" in supported(plans, {**rgb01, "normalization_schemes": ["MyNormalization"]})
    assert "spacing" in supported(plans, {**rgb01, "spacing": [0.5, 0.5]})
    assert "2D" in supported(plans, {**rgb01, "patch_size": [64, 64, 64]})
    assert "transposed" in supported({**plans, "transpose_forward": [0, 2, 1]}, rgb01)


# --- the same probabilities as nnU-Net's predictor, on real photos -----------------------------------------------


@pytest.fixture(scope="module")
def bundled() -> PackedModel:
    return PackedModel.open(BUNDLED)


@pytest.fixture(scope="module")
def real_photos(shared_data) -> dict[str, np.ndarray]:
    photos = {}
    for source in ("biohit", "ntust"):
        case = json.loads((shared_data / f"{source}_split.json").read_text())["test"][0]
        photo, _ = load_photo(shared_data / source / "images" / f"{case}.jpg")
        photos[source] = resize_photo(photo, (192, 144) if source == "biohit" else (192, 192))
    return photos


def _nnunet_probabilities(model: PackedModel, parameters: list[dict], image: np.ndarray, mirroring: bool) -> np.ndarray:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(model.plans)
    predictor = nnUNetPredictor(use_mirroring=mirroring, device=torch.device("cpu"), allow_tqdm=False)
    network = model.build_network()
    network.load_state_dict(parameters[0])
    predictor.manual_initialization(network, plans_manager, plans_manager.get_configuration("2d"), parameters,
                                    model.dataset_json, model.trainer, (0, 1))
    return StockPredictor(predictor).probabilities(image)


def _perturbed(weights: dict, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {k: v + 0.01 * torch.randn(v.shape, generator=generator) * v.std() if v.is_floating_point() and v.numel() > 1
            else v for k, v in weights.items()}


@pytest.mark.parametrize("case", ["photo", "black_border", "smaller_than_patch", "larger_than_patch", "mirroring",
                                  "two_folds"])
def test_probabilities_match_nnunets_predictor(case, bundled, real_photos):
    photo = real_photos["ntust" if case == "two_folds" else "biohit"]
    if case == "black_border":  # nnU-Net crops to the non-zero box and calls the rest background
        photo = np.pad(photo, ((20, 0), (0, 30), (0, 0)))
    elif case == "smaller_than_patch":
        photo = resize_photo(photo, (120, 90))
    elif case == "larger_than_patch":
        photo = resize_photo(photo, (400, 300))
    weights = bundled.weights("all")
    parameters = [weights, _perturbed(weights, 0)] if case == "two_folds" else [weights]
    mirroring = case == "mirroring"
    ours = PhotoPredictor(bundled.build_network(), parameters, bundled.plans, configuration(bundled.plans, "2d"),
                          bundled.dataset_json, mirror_axes=(0, 1),
                          use_mirroring=mirroring).probabilities(photo.transpose(2, 0, 1))
    reference = _nnunet_probabilities(bundled, parameters, photo.transpose(2, 0, 1), mirroring)
    assert ours.shape == reference.shape == (2, *photo.shape[:2])
    np.testing.assert_allclose(ours, reference, atol=5e-3)  # nnU-Net accumulates logits in float16
    differ = (ours.argmax(0) != reference.argmax(0)).sum()
    assert differ <= 0.001 * photo.shape[0] * photo.shape[1]
    if case == "black_border":
        assert (ours[1, :20] == 0).all() and (ours[1, :, -30:] == 0).all()


def test_packed_model_with_plans_the_photo_predictor_does_not_cover_runs_through_nnunet(tmp_path, real_photos):
    model = tmp_path / "model"
    shutil.copytree(BUNDLED, model)
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"]["2d"]["spacing"] = [0.5, 0.5]  # nnU-Net would resample the photo
    (model / "plans.json").write_text(json.dumps(plans))
    segmenter = TongueSegmenter(model, device="cpu", rescale=False)
    assert isinstance(segmenter.predictor, StockPredictor)
    assert segmenter.segment(real_photos["biohit"]).shape == real_photos["biohit"].shape[:2]


def test_the_bundled_model_segments_without_nnunets_predictor_or_timm(shared_data):
    """What keeps the first mask fast: neither nnU-Net's predictor and trainer modules nor timm (which imports
    torchvision and torch._dynamo) are imported to segment a photo with a packed model."""
    case = json.loads((shared_data / "biohit_split.json").read_text())["test"][0]
    code = ("import sys\n"
            "from nnunet_tongue.inference.segmenter import TongueSegmenter\n"
            "from nnunet_tongue.photos import load_photo\n"
            f"photo, _ = load_photo({str(shared_data / 'biohit' / 'images' / f'{case}.jpg')!r})\n"
            f"assert TongueSegmenter({str(BUNDLED)!r}, device='cpu').segment(photo).any()\n"
            "heavy = [m for m in ('nnunetv2.inference.predict_from_raw_data', 'nnunetv2.training.nnUNetTrainer',\n"
            "                     'nnunetv2.utilities.plans_handling.plans_handler', 'timm', 'torch._dynamo')\n"
            "         if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


# --- the T-Unet's transformer, without timm ----------------------------------------------------------------------


def test_transformer_block_is_timms_block_with_the_same_names_and_outputs():
    from timm.models.vision_transformer import Block

    from nnunet_tongue.networks.tunet import TransformerBlock

    ours = TransformerBlock(64, 8, 2.0, act_layer=torch.nn.ELU).eval()
    theirs = Block(64, 8, 2.0, qkv_bias=True, act_layer=torch.nn.ELU, norm_layer=torch.nn.LayerNorm).eval()
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 30, 64)
    torch.testing.assert_close(ours(x), theirs(x))


def test_position_embedding_resampling_is_timms():
    from timm.layers import resample_abs_pos_embed

    from nnunet_tongue.networks.tunet import resample_position_embedding

    pos_embed = torch.randn(1, 10 * 12, 32)
    for grid in [(12, 14), (8, 8), (10, 13)]:
        torch.testing.assert_close(resample_position_embedding(pos_embed, grid, (10, 12)),
                                   resample_abs_pos_embed(pos_embed, list(grid), [10, 12], num_prefix_tokens=0))


def test_drop_path_drops_whole_samples_in_training_only():
    from nnunet_tongue.networks.tunet import DropPath

    drop = DropPath(0.5)
    x = torch.ones(64, 5, 3)
    torch.manual_seed(0)
    kept = drop(x)
    per_sample = kept.reshape(64, -1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()  # a sample is dropped whole or kept whole
    assert torch.equal(drop.eval()(x), x)
