"""Network behaviour: shapes, deep supervision, gradients, state dicts, memory estimate, bf16."""

from __future__ import annotations

import json

import pytest
import torch
from dynamic_network_architectures.architectures.unet import ResidualUNet
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from dynamic_network_architectures.building_blocks.unet_residual_decoder import UNetResDecoder
from torch import nn

from nnunet_tongue.networks.fabians_unet import FabiansUNet, fabians_blocks_per_stage
from nnunet_tongue.networks.from_plans import (
    TUNET_VARIANTS,
    architecture_for,
    build_from_architecture,
    default_plans_architecture,
    legacy_architecture,
)
from nnunet_tongue.networks.tunet import TransformerUNet




def tunet(patch=(64, 96), deep_supervision=True, **kw) -> TransformerUNet:
    arch = architecture_for("TUNet", default_plans_architecture(patch), patch)
    return build_from_architecture(arch, deep_supervision=deep_supervision, **kw)


@pytest.mark.parametrize("patch", [(64, 64), (64, 96), (96, 32)])
def test_tunet_output_has_input_size_for_square_and_non_square_patches(patch):
    net = tunet(patch, deep_supervision=False)
    assert net(torch.randn(2, 3, *patch)).shape == (2, 2, *patch)


def test_tunet_uses_16_pixel_patches_and_six_8_head_elu_layers_by_default(monkeypatch):
    net = tunet()
    assert net.patch_size == (16, 16)
    assert len(net.transformer.blocks) == 6
    block = net.transformer.blocks[0]
    assert block.attn.num_heads == 8
    assert isinstance(block.mlp.act, nn.ELU)
    calls = []
    fused = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or fused(*a, **k))
    net(torch.randn(1, 3, 64, 64))
    assert len(calls) == 6, "attention should go through scaled_dot_product_attention, once per block"


def test_tunet_deep_supervision_outputs_match_trainer_scales():
    patch = (64, 96)
    outputs = tunet(patch)(torch.randn(1, 3, *patch))
    # strides 1, 2, 4, 8 below the 16-pixel token grid, highest resolution first
    assert [o.shape[2:] for o in outputs] == [(64, 96), (32, 48), (16, 24), (8, 12)]


def trainer_stand_in(trainer: type, patch: tuple[int, int]):
    """What a T-Unet trainer's network builder and ``_get_deep_supervision_scales`` read, after its constructor
    wrote its network into the plans."""

    class Fake:
        enable_deep_supervision = True

        class configuration_manager:
            patch_size = list(patch)
            configuration = {"architecture": architecture_for(trainer.network_name, default_plans_architecture(patch),
                                                              patch, **trainer.network_options)}

    return Fake()


def built(trainer: type, patch: tuple[int, int]):
    fake = trainer_stand_in(trainer, patch)
    net = trainer.build_network_architecture(None, fake.configuration_manager, 3, 2, True)
    return net, trainer._get_deep_supervision_scales(fake)


def test_tunet_trainer_deep_supervision_scales_match_network_outputs():
    from nnunet_tongue.training.trainers import nnUNetTrainerTUNet

    _, scales = built(nnUNetTrainerTUNet, (64, 96))
    assert scales == [[1.0, 1.0], [0.5, 0.5], [0.25, 0.25], [0.125, 0.125]]


def outputs_match_scales(net, scales, patch) -> bool:
    outputs = net(torch.randn(1, 3, *patch))
    return [list(o.shape[2:]) for o in outputs] == [[round(p * s) for p, s in zip(patch, sc)] for sc in scales]


def test_token8_trainer_builds_an_8_pixel_token_grid_whose_outputs_match_its_supervision_scales():
    from nnunet_tongue.training.trainers import nnUNetTrainerTUNetToken8

    net, scales = built(nnUNetTrainerTUNetToken8, (64, 96))
    assert net.patch_size == (8, 8) and net.transformer.embed_dim == 256
    assert outputs_match_scales(net, scales, (64, 96))


def test_lean_trainer_builds_one_conv_per_decoder_stage_and_projects_before_upsampling():
    from nnunet_tongue.training.trainers import nnUNetTrainerTUNet, nnUNetTrainerTUNetLean

    patch = (64, 96)
    lean, scales = built(nnUNetTrainerTUNetLean, patch)
    full, _ = built(nnUNetTrainerTUNet, patch)
    assert [len(stage.convs) for stage in lean.decoder.stages] == [1] * len(lean.decoder.stages)
    # each stage's first convolution sees the projected map (skip width) beside the skip: 2x, not 3x
    assert [stage.convs[0].conv.in_channels for stage in lean.decoder.stages] == \
        [2 * c for c in reversed(lean.decoder.skip_channels)]
    assert outputs_match_scales(lean, scales, patch)
    assert lean.compute_conv_feature_map_size(patch) < full.compute_conv_feature_map_size(patch)


def test_no_transformer_control_feeds_the_decoder_from_the_cnn_alone():
    from nnunet_tongue.training.trainers import nnUNetTrainerTUNet, nnUNetTrainerTUNetNoTransformer

    patch = (64, 96)
    net, scales = built(nnUNetTrainerTUNetNoTransformer, patch)
    full, _ = built(nnUNetTrainerTUNet, patch)
    assert net.transformer is None and not any("transformer" in name for name, _ in net.named_parameters())
    assert net.decoder.stages[0].convs[0].conv.in_channels == full.decoder.stages[0].convs[0].conv.in_channels
    assert outputs_match_scales(net, scales, patch)
    assert net.bottleneck.stride == (2, 2)  # from the deepest skip (stride 8) to the 16-pixel token grid
    assert sum(p.numel() for p in net.parameters()) < 0.5 * sum(p.numel() for p in full.parameters())


def test_fast_trainer_builds_a_narrower_transformer_on_the_lean_decoder():
    from nnunet_tongue.training.trainers import nnUNetTrainerTUNetFast

    patch = (64, 96)
    net, scales = built(nnUNetTrainerTUNetFast, patch)
    assert net.transformer.embed_dim == 384 and net.patch_size == (16, 16)
    assert net.transformer.blocks[0].mlp.fc1.out_features == 2 * 384
    assert len(net.transformer.blocks) == 6 and net.transformer.blocks[0].attn.num_heads == 8
    assert net.decoder.projections[0].in_channels == 384
    assert outputs_match_scales(net, scales, patch)


def test_tunet_variant_options_also_apply_to_plans_the_tunet_planner_wrote():
    patch = (64, 96)
    default = default_plans_architecture(patch)
    planned = architecture_for("TUNet", default, patch)  # what nnUNetTongueTUNetPlanner writes into its plans
    for options in TUNET_VARIANTS.values():
        if "token_size" not in options:
            assert (architecture_for("TUNet", planned, patch, **options)
                    == architecture_for("TUNet", default, patch, **options))


def test_token8_variant_refuses_plans_planned_for_16_pixel_tokens():
    patch = (64, 96)
    planned = architecture_for("TUNet", default_plans_architecture(patch), patch)
    with pytest.raises(ValueError, match="16-pixel tokens.*default plans"):
        architecture_for("TUNet", planned, patch, **TUNET_VARIANTS["TUNetToken8"])


def test_tunet_entry_names_every_transformer_argument():
    kwargs = architecture_for("TUNet", default_plans_architecture((64, 96)), (64, 96))["arch_kwargs"]
    assert {k: kwargs[k] for k in ("token_size", "embed_dim", "depth", "num_heads", "mlp_ratio")} == \
        {"token_size": [16, 16], "embed_dim": 512, "depth": 6, "num_heads": 8, "mlp_ratio": 4.0}
    assert kwargs["n_stages"] == 4 and [list(s) for s in kwargs["strides"]] == [[1, 1], [2, 2], [2, 2], [2, 2]]


def test_tunet_weights_fit_a_tunet_planned_for_another_patch_size():
    small = tunet((64, 96), deep_supervision=False)
    large = tunet((160, 192), deep_supervision=False)
    assert {k: v.shape for k, v in small.state_dict().items()} == {k: v.shape for k, v in large.state_dict().items()}
    large.load_state_dict(small.state_dict())
    assert large(torch.randn(1, 3, 160, 192)).shape == (1, 2, 160, 192)


@pytest.mark.parametrize("variant", ["TUNet", "TUNetFast"])
def test_plans_written_before_0_2_rebuild_the_network_of_then(variant):
    """nnU-Net's default entry (what 0.1 model folders kept): position embedding at the planned grid, width
    from the plans; the T-Unet planner's 0.1 entry (transformer as the last stage): the same network."""
    patch = (64, 96)
    default = default_plans_architecture(patch)
    from_default = legacy_architecture("TUNet", default, patch, **TUNET_VARIANTS[variant])["arch_kwargs"]
    assert from_default["pos_embed_grid"] == [4, 6] and from_default["token_size"] == [16, 16]
    assert from_default["embed_dim"] == (384 if variant == "TUNetFast" else 512)
    planner_0_1 = {"network_class_name": "nnunet_tongue.networks.tunet.TransformerUNet",
                   "_kw_requires_import": default["_kw_requires_import"],
                   "arch_kwargs": {**{k: default["arch_kwargs"][k] for k in (
                       "conv_op", "conv_bias", "norm_op", "norm_op_kwargs", "dropout_op", "dropout_op_kwargs",
                       "nonlin", "nonlin_kwargs")}, "n_stages": 5, "features_per_stage": [32, 64, 128, 256, 512],
                       "kernel_sizes": [[3, 3]] * 5, "strides": [[1, 1]] + [[2, 2]] * 4,
                       "n_blocks_per_stage": [1, 1, 1, 1, 6], "n_conv_per_stage_decoder": [2, 2, 2, 2],
                       "pos_embed_grid": [4, 6]}}
    from_planner = legacy_architecture("TUNet", planner_0_1, patch, **TUNET_VARIANTS[variant])["arch_kwargs"]
    assert json.loads(json.dumps(from_planner)) == json.loads(json.dumps(from_default))  # as in plans.json
    assert build_from_architecture(
        legacy_architecture("TUNet", planner_0_1, patch)).transformer.pos_embed.shape == (1, 24, 512)


def test_tunet_gradients_reach_transformer_and_cnn_encoder():
    net = tunet(deep_supervision=False)
    net(torch.randn(1, 3, 64, 96)).square().mean().backward()
    assert net.transformer.patch_embed.proj.weight.grad.abs().sum() > 0
    assert net.transformer.pos_embed.grad.abs().sum() > 0
    assert net.transformer.blocks[-1].mlp.fc2.weight.grad.abs().sum() > 0
    assert next(net.encoder.parameters()).grad.abs().sum() > 0


def test_tunet_state_dict_round_trip_gives_identical_outputs():
    a, b = tunet(deep_supervision=False).eval(), tunet(deep_supervision=False).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_tunet_accepts_other_grid_sizes_by_resampling_position_embedding():
    net = tunet((64, 96), deep_supervision=False)
    assert net(torch.randn(1, 3, 128, 48)).shape == (1, 2, 128, 48)


def test_tunet_rejects_input_not_divisible_by_patch_size_with_clear_error():
    with pytest.raises(ValueError, match="not divisible by its patch size"):
        tunet(deep_supervision=False)(torch.randn(1, 3, 64, 90))


def test_tunet_is_finite_under_bf16_autocast():
    net = tunet(deep_supervision=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.randn(2, 3, 64, 96))
    assert torch.isfinite(out.float()).all()


def test_tunet_memory_estimate_grows_with_patch_size():
    net = tunet()
    small, large = net.compute_conv_feature_map_size((64, 64)), net.compute_conv_feature_map_size((128, 128))
    assert large > 3.9 * small


#: peak GPU memory of one bf16 training step at nnU-Net's full-resolution BioHit plan (640x768, batch 7), as a
#: multiple of PlainConvUNet's (5,289 MB both times): benchmarks/results/network_speed.md, CUDA tables of
#: 2026-11-26 (ResUNet, FabiansUNet) and 2026-12-04 (the T-Unets)
MEASURED_MEMORY_VS_PLAIN = {"ResUNet": 9374 / 5289, "FabiansUNet": 6864 / 5289, "TUNet": 7852 / 5289,
                            "TUNetLean": 6467 / 5289, "TUNetFast": 5793 / 5289}


@pytest.mark.parametrize("network", MEASURED_MEMORY_VS_PLAIN)
def test_memory_estimate_tracks_the_measured_gpu_memory_within_20_percent(network):
    """The planners size patch and batch from this estimate: off by 2x, they plan batch 2 where 7 fits."""
    patch = (640, 768)
    default = default_plans_architecture(patch)
    plain = build_from_architecture(default, deep_supervision=True).compute_conv_feature_map_size(patch)
    name, options = ("TUNet", TUNET_VARIANTS[network]) if network in TUNET_VARIANTS else (network, {})
    estimate = build_from_architecture(architecture_for(name, default, patch, **options), deep_supervision=True)
    ratio = estimate.compute_conv_feature_map_size(patch) / plain
    assert ratio == pytest.approx(MEASURED_MEMORY_VS_PLAIN[network], rel=0.2)


def test_fabians_unet_has_v1_depth_profile_and_plain_decoder():
    assert fabians_blocks_per_stage(7) == (1, 2, 3, 4, 4, 4, 4)
    net = build_from_architecture(architecture_for("FabiansUNet", default_plans_architecture((64, 96)), (64, 96)))
    assert isinstance(net, FabiansUNet) and type(net.decoder) is UNetDecoder
    assert [len(stage.blocks) for stage in net.encoder.stages] == [1, 2, 3, 4, 4]
    assert all(len(stage.convs) == 1 for stage in net.decoder.stages)


def test_width_cap_keeps_nnunets_plain_unet_and_caps_only_its_widest_stages():
    patch = (192, 192)
    default = default_plans_architecture(patch)  # 32, 64, 128, 256, 512, 512
    capped = architecture_for("PlainConvUNet", default, patch, max_features=320)
    assert capped["arch_kwargs"]["features_per_stage"] == [32, 64, 128, 256, 320, 320]
    assert {k: v for k, v in capped["arch_kwargs"].items() if k != "features_per_stage"} == \
        {k: v for k, v in default["arch_kwargs"].items() if k != "features_per_stage"}
    net = build_from_architecture(capped)
    widest = max(m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d))
    assert type(net).__name__ == "PlainConvUNet" and widest == 320
    assert sum(p.numel() for p in net.parameters()) < 11e6  # 20.6 M uncapped: 21 MB in float16, not 41 MB


def test_width_cap_refuses_plans_of_another_network():
    patch = (64, 96)
    tunet_plans = architecture_for("TUNet", default_plans_architecture(patch), patch)
    with pytest.raises(ValueError, match="PlainConvUNet plans"):
        architecture_for("PlainConvUNet", tunet_plans, patch, max_features=320)


def test_residual_unet_has_residual_decoder():
    net = build_from_architecture(architecture_for("ResUNet", default_plans_architecture((64, 96)), (64, 96)))
    assert isinstance(net, ResidualUNet) and isinstance(net.decoder, UNetResDecoder)


@pytest.mark.parametrize("network", ["ResUNet", "FabiansUNet", "TUNet"])
def test_every_network_has_a_memory_estimate_and_toggleable_deep_supervision(network):
    patch = (64, 96)
    net = build_from_architecture(architecture_for(network, default_plans_architecture(patch), patch),
                                  deep_supervision=True)
    assert net.compute_conv_feature_map_size(patch) > 0
    assert isinstance(net(torch.randn(1, 3, *patch)), (list, tuple))
    net.decoder.deep_supervision = False
    assert net(torch.randn(1, 3, *patch)).shape == (1, 2, *patch)


def test_tunet_refuses_3d_with_clear_error():
    arch = architecture_for("TUNet", default_plans_architecture((64, 96)), (64, 96))
    arch["arch_kwargs"].update(conv_op="torch.nn.modules.conv.Conv3d",
                               norm_op="torch.nn.modules.instancenorm.InstanceNorm3d")
    with pytest.raises(ValueError, match="2d only"):
        build_from_architecture(arch)
