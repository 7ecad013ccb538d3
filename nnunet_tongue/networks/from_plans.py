"""Turn an nnU-Net plans ``architecture`` entry into one for a plug-in network.

The plug-in trainers build from nnU-Net's DEFAULT plans (PlainConvUNet topology): they keep its
stages, widths, kernels, strides, normalisation and non-linearity, and replace the block counts (and,
for T-Unet, the depth) by the network's own. Plans that already name the network (written by a
plug-in planner) are used as they are. Planners use the same translation for their memory estimate,
so what is planned is what is trained.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Sequence

import numpy as np

from nnunet_tongue.networks.fabians_unet import fabians_blocks_per_stage

RESIDUAL_UNET = "dynamic_network_architectures.architectures.unet.ResidualUNet"
FABIANS_UNET = "nnunet_tongue.networks.fabians_unet.FabiansUNet"
TRANSFORMER_UNET = "nnunet_tongue.networks.tunet.TransformerUNet"

#: plug-in network name -> dotted class path written into plans
NETWORKS = {"ResUNet": RESIDUAL_UNET, "FabiansUNet": FABIANS_UNET, "TUNet": TRANSFORMER_UNET}

RESENC_BLOCKS = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)  # nnU-Net ResEnc encoder profile
TUNET_PATCH_SIZE = 16  # largest transformer patch edge taken from the plans' strides
TUNET_DEPTH = 6  # transformer layers; the CNN encoder has one residual block (2 convs) per stage
#: T-Unet variants the plug-in trainers and benchmarks build: name -> options of :func:`architecture_for`
TUNET_VARIANTS = {
    "TUNet": {},
    "TUNetToken8": {"token_size": 8},
    "TUNetLean": {"lean_decoder": True},
    # sized to fewer operations per training step than nnU-Net's default PlainConvUNet (docs/networks.md)
    "TUNetFast": {"lean_decoder": True, "embed_dim": 384, "mlp_ratio": 2.0},
}
_SHARED_KEYS = ("features_per_stage", "conv_op", "kernel_sizes", "strides", "conv_bias", "norm_op",
                "norm_op_kwargs", "dropout_op", "dropout_op_kwargs", "nonlin", "nonlin_kwargs")


def tunet_stage_count(strides: Sequence, max_patch: int = TUNET_PATCH_SIZE) -> int:
    """Number of plans stages whose cumulative stride stays <= ``max_patch`` on every axis (at least 2)."""
    cumulative = np.cumprod(np.array([np.atleast_1d(s) for s in strides]), axis=0).max(axis=1)
    return max(2, int((cumulative <= max_patch).sum()))


def architecture_for(network: str, architecture: dict, patch_size: Sequence[int],
                     token_size: int = TUNET_PATCH_SIZE, lean_decoder: bool = False, embed_dim: int | None = None,
                     mlp_ratio: float | None = None) -> dict:
    """Plans ``architecture`` dict (``network_class_name``, ``arch_kwargs``, ``_kw_requires_import``) for ``network``.

    ``token_size`` (T-Unet only): the largest patch edge the transformer's tokens may have; the token grid
    sits at the deepest plans stage whose cumulative stride stays within it, and that stage's width is
    the embedding dimension. ``lean_decoder`` (T-Unet only): one convolution per decoder stage instead of
    two, and the deeper map projected to the skip's width before upsampling. ``embed_dim`` / ``mlp_ratio``
    (T-Unet only): the transformer's width (default: the plans' width at the token stage) and MLP ratio
    (default 4). Plans that already name ``network`` (a plug-in planner's) are kept; for the T-Unet the
    decoder, width and MLP options are applied to them too, and a token size they exceed is refused.
    """
    class_name = NETWORKS[network]
    if architecture["network_class_name"] == class_name:
        planned = deepcopy(architecture)
        if network == "TUNet":
            kwargs = planned["arch_kwargs"]
            planned_token = int(np.prod(np.array([np.atleast_1d(s) for s in kwargs["strides"]]), axis=0).max())
            if planned_token > token_size:
                raise ValueError(f"these plans fix a T-Unet on {planned_token}-pixel tokens, larger than the "
                                 f"{token_size} asked for: train this variant on nnU-Net's default plans (no -p)")
            _apply_tunet_options(kwargs, lean_decoder, embed_dim, mlp_ratio)
        return planned
    source = architecture["arch_kwargs"]
    kwargs = {k: deepcopy(source[k]) for k in _SHARED_KEYS if k in source}
    n_stages = source["n_stages"]
    if network == "ResUNet":
        kwargs.update(n_stages=n_stages, n_blocks_per_stage=list(RESENC_BLOCKS[:n_stages]),
                      n_conv_per_stage_decoder=[1] * (n_stages - 1))
    elif network == "FabiansUNet":
        kwargs.update(n_stages=n_stages, n_blocks_per_stage=list(fabians_blocks_per_stage(n_stages)),
                      n_conv_per_stage_decoder=[1] * (n_stages - 1))
    else:
        n = tunet_stage_count(source["strides"], token_size)
        for key in ("features_per_stage", "kernel_sizes", "strides"):
            kwargs[key] = list(kwargs[key])[:n]
        token = np.prod(np.array([np.atleast_1d(s) for s in kwargs["strides"]]), axis=0)
        token = np.broadcast_to(token, (len(patch_size),))
        kwargs.update(n_stages=n, n_blocks_per_stage=[1] * (n - 1) + [TUNET_DEPTH],
                      n_conv_per_stage_decoder=[2] * (n - 1),
                      pos_embed_grid=[int(p // t) for p, t in zip(patch_size, token)])
        _apply_tunet_options(kwargs, lean_decoder, embed_dim, mlp_ratio)
    return {"network_class_name": class_name, "arch_kwargs": kwargs,
            "_kw_requires_import": list(architecture["_kw_requires_import"])}


def _apply_tunet_options(kwargs: dict, lean_decoder: bool, embed_dim: int | None, mlp_ratio: float | None) -> None:
    if lean_decoder:
        kwargs.update(n_conv_per_stage_decoder=[1] * (kwargs["n_stages"] - 1), project_before_upsampling=True)
    if embed_dim is not None:
        kwargs["features_per_stage"] = list(kwargs["features_per_stage"])[:-1] + [int(embed_dim)]
    if mlp_ratio is not None:
        kwargs["mlp_ratio"] = float(mlp_ratio)


def build_network(network: str, configuration_manager, num_input_channels: int, num_output_channels: int,
                  deep_supervision: bool, **options):
    """Build ``network`` for an nnU-Net ``ConfigurationManager`` (default plans or plug-in plans); ``options``:
    those of :func:`architecture_for`."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = architecture_for(network, configuration_manager.configuration["architecture"],
                            configuration_manager.patch_size, **options)
    return get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                  num_input_channels, num_output_channels, allow_init=True,
                                  deep_supervision=deep_supervision)
