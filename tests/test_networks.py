"""Network behaviour: shapes, deep supervision, gradients, state dicts, memory estimate, bf16."""

from __future__ import annotations

import pytest
import torch
from dynamic_network_architectures.architectures.unet import ResidualUNet
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from dynamic_network_architectures.building_blocks.unet_residual_decoder import UNetResDecoder
from torch import nn

from nnunet_tongue.networks.fabians_unet import FabiansUNet, fabians_blocks_per_stage
from nnunet_tongue.networks.from_plans import TUNET_VARIANTS, architecture_for
from nnunet_tongue.networks.tunet import TransformerUNet
from nnunet_tongue.utils_for_tests import default_plans_architecture, instantiate


def tunet(patch=(64, 96), deep_supervision=True, **kw) -> TransformerUNet:
    arch = architecture_for("TUNet", default_plans_architecture(patch), patch)
    return instantiate(arch, deep_supervision=deep_supervision, **kw)


@pytest.mark.parametrize("patch", [(64, 64), (64, 96), (96, 32)])
def test_tunet_output_has_input_size_for_square_and_non_square_patches(patch):
    net = tunet(patch, deep_supervision=False)
    assert net(torch.randn(2, 3, *patch)).shape == (2, 2, *patch)


def test_tunet_uses_16_pixel_patches_and_six_8_head_elu_layers_by_default():
    net = tunet()
    assert net.patch_size == (16, 16)
    assert len(net.transformer.blocks) == 6
    block = net.transformer.blocks[0]
    assert block.attn.num_heads == 8
    assert isinstance(block.mlp.act, nn.ELU)
    assert block.attn.fused_attn, "attention should go through scaled_dot_product_attention"


def test_tunet_deep_supervision_outputs_match_trainer_scales():
    patch = (64, 96)
    outputs = tunet(patch)(torch.randn(1, 3, *patch))
    # strides 1, 2, 4, 8 below the 16-pixel token grid, highest resolution first
    assert [o.shape[2:] for o in outputs] == [(64, 96), (32, 48), (16, 24), (8, 12)]


def trainer_stand_in(trainer: type, patch: tuple[int, int]):
    """The attributes a T-Unet trainer's network builder and ``_get_deep_supervision_scales`` read."""

    class Fake:
        enable_deep_supervision = True
        variant = trainer.variant

        class configuration_manager:
            patch_size = list(patch)
            configuration = {"architecture": default_plans_architecture(patch)}

    return Fake()


def test_tunet_trainer_deep_supervision_scales_match_network_outputs():
    from nnunet_tongue.training.trainers import nnUNetTrainerTUNet

    scales = nnUNetTrainerTUNet._get_deep_supervision_scales(trainer_stand_in(nnUNetTrainerTUNet, (64, 96)))
    assert scales == [[1.0, 1.0], [0.5, 0.5], [0.25, 0.25], [0.125, 0.125]]


def test_token8_trainer_builds_an_8_pixel_token_grid_whose_outputs_match_its_supervision_scales():
    from nnunet_tongue.training.trainers import nnUNetTrainerTUNetToken8

    patch = (64, 96)
    fake = trainer_stand_in(nnUNetTrainerTUNetToken8, patch)
    net = nnUNetTrainerTUNetToken8.build_network_architecture(None, fake.configuration_manager, 3, 2, True)
    assert net.patch_size == (8, 8) and net.transformer.embed_dim == 256
    outputs = net(torch.randn(1, 3, *patch))
    scales = nnUNetTrainerTUNetToken8._get_deep_supervision_scales(fake)
    assert [list(o.shape[2:]) for o in outputs] == [[round(p * s) for p, s in zip(patch, sc)] for sc in scales]


def test_lean_trainer_builds_one_conv_per_decoder_stage_and_projects_before_upsampling():
    from nnunet_tongue.training.trainers import nnUNetTrainerTUNet, nnUNetTrainerTUNetLean

    patch = (64, 96)
    fake = trainer_stand_in(nnUNetTrainerTUNetLean, patch)
    lean = nnUNetTrainerTUNetLean.build_network_architecture(None, fake.configuration_manager, 3, 2, True)
    full = nnUNetTrainerTUNet.build_network_architecture(None, fake.configuration_manager, 3, 2, True)
    assert [len(stage.convs) for stage in lean.decoder.stages] == [1] * len(lean.decoder.stages)
    # each stage's first convolution sees the projected map (skip width) beside the skip: 2x, not 3x
    assert [stage.convs[0].conv.in_channels for stage in lean.decoder.stages] == \
        [2 * c for c in reversed(lean.decoder.skip_channels)]
    outputs = lean(torch.randn(1, 3, *patch))
    scales = nnUNetTrainerTUNetLean._get_deep_supervision_scales(fake)
    assert [list(o.shape[2:]) for o in outputs] == [[round(p * s) for p, s in zip(patch, sc)] for sc in scales]
    assert lean.compute_conv_feature_map_size(patch) < full.compute_conv_feature_map_size(patch)


def test_fast_trainer_builds_a_narrower_transformer_on_the_lean_decoder():
    from nnunet_tongue.training.trainers import nnUNetTrainerTUNetFast

    patch = (64, 96)
    fake = trainer_stand_in(nnUNetTrainerTUNetFast, patch)
    net = nnUNetTrainerTUNetFast.build_network_architecture(None, fake.configuration_manager, 3, 2, True)
    assert net.transformer.embed_dim == 384 and net.patch_size == (16, 16)
    assert net.transformer.blocks[0].mlp.fc1.out_features == 2 * 384
    assert len(net.transformer.blocks) == 6 and net.transformer.blocks[0].attn.num_heads == 8
    assert net.decoder.projections[0].in_channels == 384
    outputs = net(torch.randn(1, 3, *patch))
    scales = nnUNetTrainerTUNetFast._get_deep_supervision_scales(fake)
    assert [list(o.shape[2:]) for o in outputs] == [[round(p * s) for p, s in zip(patch, sc)] for sc in scales]


def test_tunet_variant_options_also_apply_to_plans_the_tunet_planner_wrote():
    patch = (64, 96)
    default = default_plans_architecture(patch)
    planned = architecture_for("TUNet", default, patch)  # what nnUNetTongueTUNetPlanner writes into its plans
    for options in TUNET_VARIANTS.values():
        if "token_size" not in options:
            assert architecture_for("TUNet", planned, patch, **options) == architecture_for("TUNet", default, patch, **options)


def test_token8_variant_refuses_plans_planned_for_16_pixel_tokens():
    patch = (64, 96)
    planned = architecture_for("TUNet", default_plans_architecture(patch), patch)
    with pytest.raises(ValueError, match="16-pixel tokens.*default plans"):
        architecture_for("TUNet", planned, patch, **TUNET_VARIANTS["TUNetToken8"])


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


def test_tunet_memory_estimate_grows_with_patch_size_and_counts_attention():
    net = tunet()
    small, large = net.compute_conv_feature_map_size((64, 64)), net.compute_conv_feature_map_size((128, 128))
    assert large > 3.9 * small
    attention = net.transformer.num_heads * (128 // 16 * 128 // 16) ** 2 * len(net.transformer.blocks)
    assert net.transformer.compute_feature_map_size((128, 128)) > attention


def test_fabians_unet_has_v1_depth_profile_and_plain_decoder():
    assert fabians_blocks_per_stage(7) == (1, 2, 3, 4, 4, 4, 4)
    net = instantiate(architecture_for("FabiansUNet", default_plans_architecture((64, 96)), (64, 96)))
    assert isinstance(net, FabiansUNet) and type(net.decoder) is UNetDecoder
    assert [len(stage.blocks) for stage in net.encoder.stages] == [1, 2, 3, 4, 4]
    assert all(len(stage.convs) == 1 for stage in net.decoder.stages)


def test_residual_unet_has_residual_decoder():
    net = instantiate(architecture_for("ResUNet", default_plans_architecture((64, 96)), (64, 96)))
    assert isinstance(net, ResidualUNet) and isinstance(net.decoder, UNetResDecoder)


@pytest.mark.parametrize("network", ["ResUNet", "FabiansUNet", "TUNet"])
def test_every_network_has_a_memory_estimate_and_toggleable_deep_supervision(network):
    patch = (64, 96)
    net = instantiate(architecture_for(network, default_plans_architecture(patch), patch), deep_supervision=True)
    assert net.compute_conv_feature_map_size(patch) > 0
    assert isinstance(net(torch.randn(1, 3, *patch)), (list, tuple))
    net.decoder.deep_supervision = False
    assert net(torch.randn(1, 3, *patch)).shape == (1, 2, *patch)


def test_tunet_refuses_3d_with_clear_error():
    arch = architecture_for("TUNet", default_plans_architecture((64, 96)), (64, 96))
    arch["arch_kwargs"].update(conv_op="torch.nn.modules.conv.Conv3d",
                               norm_op="torch.nn.modules.instancenorm.InstanceNorm3d")
    with pytest.raises(ValueError, match="2d only"):
        instantiate(arch)
