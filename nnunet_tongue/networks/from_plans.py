"""Plans ``architecture`` entries for the plug-in networks, every constructor argument written out.

nnU-Net's default planner writes a PlainConvUNet entry. A plug-in trainer turns it into its own network's
entry with :func:`architecture_for` (keeping the plans' stages, widths, kernels, strides, normalisation and
non-linearity, replacing block counts and adding the transformer's arguments) and writes that entry into
its plans, which nnU-Net copies into the model folder as ``plans.json``. Prediction then rebuilds exactly
that network from the model folder, whatever this module's defaults are by then. Plug-in planners write
the same entries, so what is planned is what is trained.

Model folders written before version 0.2 kept nnU-Net's default entry (or, from a plug-in planner, the
T-Unet's older argument layout); :func:`legacy_architecture` rebuilds the network they were trained with.
"""

from __future__ import annotations

import inspect
from copy import deepcopy
from typing import Sequence

import numpy as np

from nnunet_tongue.networks.fabians_unet import fabians_blocks_per_stage
from nnunet_tongue.networks.tunet import TransformerUNet, cumulative_strides

PLAIN_CONV_UNET = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
RESIDUAL_UNET = "dynamic_network_architectures.architectures.unet.ResidualUNet"
FABIANS_UNET = "nnunet_tongue.networks.fabians_unet.FabiansUNet"
TRANSFORMER_UNET = "nnunet_tongue.networks.tunet.TransformerUNet"

#: plug-in network name -> dotted class path written into plans ("PlainConvUNet": nnU-Net's own, for width caps)
NETWORKS = {"ResUNet": RESIDUAL_UNET, "FabiansUNet": FABIANS_UNET, "TUNet": TRANSFORMER_UNET,
            "PlainConvUNet": PLAIN_CONV_UNET}

RESENC_BLOCKS = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)  # nnU-Net ResEnc encoder profile
#: the T-Unet's transformer arguments; their defaults are :class:`TransformerUNet`'s
TUNET_TRANSFORMER_ARGUMENTS = ("token_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "pos_embed_grid",
                               "drop_path_rate", "project_before_upsampling", "bottleneck")
#: T-Unet variants: name -> constructor overrides (docs/networks.md)
TUNET_VARIANTS: dict[str, dict] = {
    "TUNet": {},
    "TUNetToken8": {"token_size": 8, "embed_dim": 256},
    "TUNetLean": {"n_conv_per_stage_decoder": 1, "project_before_upsampling": True},
    # sized to fewer operations per training step than nnU-Net's default PlainConvUNet
    "TUNetFast": {"n_conv_per_stage_decoder": 1, "project_before_upsampling": True, "embed_dim": 384,
                  "mlp_ratio": 2.0},
    # the control: the decoder fed by the CNN alone (a residual stage to the token stride, no transformer)
    "TUNetNoTransformer": {"bottleneck": "cnn"},
}
_SHARED_KEYS = ("features_per_stage", "conv_op", "kernel_sizes", "strides", "conv_bias", "norm_op",
                "norm_op_kwargs", "dropout_op", "dropout_op_kwargs", "nonlin", "nonlin_kwargs")
_REQUIRES_IMPORT = ["conv_op", "norm_op", "dropout_op", "nonlin"]


def tunet_defaults() -> dict:
    """The transformer arguments :class:`TransformerUNet` takes when none are given."""
    parameters = inspect.signature(TransformerUNet.__init__).parameters
    return {name: parameters[name].default for name in TUNET_TRANSFORMER_ARGUMENTS}


def default_plans_architecture(patch_size: Sequence[int], max_features: int = 512) -> dict:
    """The ``architecture`` entry nnU-Net's default planner writes for a 2d RGB patch (PlainConvUNet)."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    _, strides, kernels, patch, _ = get_pool_and_conv_props([1.0, 1.0], list(patch_size), 4, 999999)
    if list(patch) != list(patch_size):
        raise ValueError(f"{patch_size} is not a patch size nnU-Net would plan (it would use {patch})")
    n = len(strides)
    return {
        "network_class_name": PLAIN_CONV_UNET,
        "arch_kwargs": {
            "n_stages": n, "features_per_stage": [min(max_features, 32 * 2**i) for i in range(n)],
            "conv_op": "torch.nn.modules.conv.Conv2d", "kernel_sizes": kernels, "strides": strides,
            "n_conv_per_stage": [2] * n, "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": list(_REQUIRES_IMPORT),
    }


def _tunet_cnn_stages(strides: Sequence, token_size: int) -> int:
    """How many of the plans' stages the T-Unet's CNN encoder keeps: all above the deepest stage whose total
    stride stays within the token size on every axis (that stage's stride is the token's; at least one)."""
    return max(1, int((cumulative_strides(strides).max(axis=1) <= token_size).sum()) - 1)


def _tunet_from_default_plans(source: dict, patch_size: Sequence[int], options: dict) -> dict:
    token = options.get("token_size", tunet_defaults()["token_size"])
    if not np.isscalar(token):
        token = max(token)
    n = _tunet_cnn_stages(source["strides"], token)
    kwargs = {k: deepcopy(source[k]) for k in _SHARED_KEYS if k in source}
    for key in ("features_per_stage", "kernel_sizes", "strides"):
        kwargs[key] = list(kwargs[key])[:n]
    # the token's edge per axis: the plans' total stride one stage deeper (16 x 16 on the usual plans)
    token_size = [int(t) for t in np.broadcast_to(cumulative_strides(source["strides"])[n], (len(patch_size),))]
    kwargs.update(n_stages=n, n_blocks_per_stage=[1] * n, n_conv_per_stage_decoder=[2] * n)
    return {**kwargs, **tunet_defaults(), **options, "token_size": token_size}


def capped_plain_conv_unet(architecture: dict, max_features: int) -> dict:
    """nnU-Net's PlainConvUNet entry with at most ``max_features`` feature maps per stage (stages, kernels,
    strides and everything else as planned)."""
    if architecture["network_class_name"] != PLAIN_CONV_UNET:
        raise ValueError("a width cap applies to nnU-Net's PlainConvUNet plans, not "
                         f"{architecture['network_class_name']}: train on nnU-Net's default plans (no -p)")
    capped = deepcopy(architecture)
    capped["arch_kwargs"]["features_per_stage"] = [min(int(f), max_features)
                                                   for f in capped["arch_kwargs"]["features_per_stage"]]
    return capped


def architecture_for(network: str, architecture: dict, patch_size: Sequence[int], **options) -> dict:
    """The plans ``architecture`` entry (``network_class_name``, ``arch_kwargs``, ``_kw_requires_import``) for
    a plug-in ``network`` with every constructor argument explicit.

    ``architecture``: nnU-Net's default entry (translated), or an entry that already names ``network`` (a
    plug-in planner's; kept). ``options``: constructor overrides (a :data:`TUNET_VARIANTS` entry for the
    T-Unet), applied either way; a T-Unet token size that differs from the one the entry was planned for is
    refused. ``PlainConvUNet`` takes one option, ``max_features`` (:func:`capped_plain_conv_unet`).
    """
    if network == "PlainConvUNet":
        return capped_plain_conv_unet(architecture, **options)
    class_name = NETWORKS[network]
    if architecture["network_class_name"] == class_name:
        planned = legacy_architecture(network, architecture, patch_size)
        kwargs = planned["arch_kwargs"]
        if "token_size" in options and max(np.atleast_1d(options["token_size"])) != max(kwargs["token_size"]):
            raise ValueError(f"these plans fix a T-Unet on {max(kwargs['token_size'])}-pixel tokens, not the "
                             f"{options['token_size']} asked for: train this variant on nnU-Net's default plans "
                             "(no -p)")
        kwargs.update({k: v for k, v in options.items() if k != "token_size"})
        return planned
    source = architecture["arch_kwargs"]
    n_stages = source["n_stages"]
    if network == "TUNet":
        kwargs = _tunet_from_default_plans(source, patch_size, options)
    else:
        kwargs = {k: deepcopy(source[k]) for k in _SHARED_KEYS if k in source}
        blocks = RESENC_BLOCKS[:n_stages] if network == "ResUNet" else fabians_blocks_per_stage(n_stages)
        kwargs.update(n_stages=n_stages, n_blocks_per_stage=list(blocks), n_conv_per_stage_decoder=[1] * (n_stages - 1),
                      **options)
    return {"network_class_name": class_name, "arch_kwargs": kwargs,
            "_kw_requires_import": list(architecture["_kw_requires_import"])}


def is_explicit(network: str, architecture: dict) -> bool:
    """Whether ``architecture`` is an entry :func:`architecture_for` writes (rather than one from before 0.2)."""
    if architecture["network_class_name"] != NETWORKS[network]:
        return False
    return network != "TUNet" or "embed_dim" in architecture["arch_kwargs"]


def legacy_architecture(network: str, architecture: dict, patch_size: Sequence[int], **options) -> dict:
    """The explicit entry of the network a model folder written before version 0.2 was trained with.

    Then the trainers rebuilt their network from the plans at every start: from nnU-Net's default entry with
    the rules :func:`architecture_for` still applies, except that the T-Unet took its width from the plans'
    stage at the token's stride and learnt its position embedding at the planned patch's token grid; from a
    plug-in planner's T-Unet entry, where the transformer was the last of ``n_stages`` (its width the last
    feature count, its layers the last block count, its token the product of all strides). ``options``: the
    trainer's variant, applied as it was then. Explicit entries come back unchanged.
    """
    if is_explicit(network, architecture):
        return deepcopy(architecture)
    if network != "TUNet":
        return architecture_for(network, architecture, patch_size, **options)
    source = deepcopy(architecture["arch_kwargs"])
    if architecture["network_class_name"] != TRANSFORMER_UNET:  # nnU-Net's default entry
        token = options.get("token_size", tunet_defaults()["token_size"])
        n = _tunet_cnn_stages(source["strides"], token)
        width = source["features_per_stage"][min(n, source["n_stages"] - 1)]
        arch = architecture_for("TUNet", architecture, patch_size, **{"embed_dim": width, **options})
        kwargs = arch["arch_kwargs"]
        kwargs["pos_embed_grid"] = [int(p // t) for p, t in zip(patch_size, kwargs["token_size"])]
        return arch
    n = source.pop("n_stages") - 1
    token = [int(t) for t in np.broadcast_to(cumulative_strides(source["strides"])[-1], (len(patch_size),))]
    kwargs = dict(source, n_stages=n, features_per_stage=source["features_per_stage"][:n],
                  kernel_sizes=source["kernel_sizes"][:n], strides=source["strides"][:n],
                  n_blocks_per_stage=source["n_blocks_per_stage"][:n], token_size=token,
                  embed_dim=source["features_per_stage"][n], depth=source["n_blocks_per_stage"][n])
    kwargs = {**tunet_defaults(), **kwargs, **{k: v for k, v in options.items() if k != "token_size"}}
    return {"network_class_name": TRANSFORMER_UNET, "arch_kwargs": kwargs,
            "_kw_requires_import": list(architecture["_kw_requires_import"])}


def build_from_architecture(architecture: dict, input_channels: int = 3, num_classes: int = 2,
                            deep_supervision: bool = False):
    """Build (and initialise) a network from a plans ``architecture`` entry, the way nnU-Net does."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    return get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                  architecture["_kw_requires_import"], input_channels, num_classes,
                                  allow_init=True, deep_supervision=deep_supervision)
