"""Helpers shared by the tests and the network benchmark: a default nnU-Net 2d plans entry, instantiation."""

from __future__ import annotations

from typing import Sequence

from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props


def default_plans_architecture(patch_size: Sequence[int], max_features: int = 512) -> dict:
    """The ``architecture`` entry nnU-Net's default planner writes for a 2d RGB patch (PlainConvUNet)."""
    _, strides, kernels, patch, _ = get_pool_and_conv_props([1.0, 1.0], list(patch_size), 4, 999999)
    if list(patch) != list(patch_size):
        raise ValueError(f"{patch_size} is not a patch size nnU-Net would plan (it would use {patch})")
    n = len(strides)
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n, "features_per_stage": [min(max_features, 32 * 2**i) for i in range(n)],
            "conv_op": "torch.nn.modules.conv.Conv2d", "kernel_sizes": kernels, "strides": strides,
            "n_conv_per_stage": [2] * n, "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def instantiate(architecture: dict, input_channels: int = 3, num_classes: int = 2, deep_supervision: bool = False):
    """Build a network from a plans ``architecture`` entry the way nnU-Net does."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    return get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                  architecture["_kw_requires_import"], input_channels, num_classes,
                                  allow_init=True, deep_supervision=deep_supervision)
