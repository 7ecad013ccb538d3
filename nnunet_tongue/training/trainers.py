"""nnU-Net trainers for the plug-in networks. Each builds its network from nnU-Net's DEFAULT plans
(``nnUNetPlans``, no ``-p`` needed) or from plans written by a plug-in planner.

- :class:`nnUNetTrainerResUNet`: residual encoder + residual decoder.
- :class:`nnUNetTrainerFabiansUNet`: residual encoder + plain conv decoder.
- :class:`nnUNetTrainerTUNet`: Transformer-UNet (16×16 tokens); :class:`nnUNetTrainerTUNetToken8`: on 8×8 tokens;
  :class:`nnUNetTrainerTUNetLean`: with a lean decoder; :class:`nnUNetTrainerTUNetFast`: sized below
  PlainConvUNet's operations per step; :class:`nnUNetTrainerTUNetUpright`: with augmentation for upright photos.

All of them train with :class:`AdamWWarmupTrainer`'s optimiser (AdamW, warmup + poly decay, non-finite
updates skipped). :class:`nnUNetTrainerResUNetSGD` and :class:`nnUNetTrainerFabiansUNetSGD` keep
nnU-Net's own SGD schedule for the residual networks (docs/benchmarks.md compares the two).
"""

from __future__ import annotations

import numpy as np
import torch
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_tongue.networks.from_plans import TUNET_VARIANTS, architecture_for, build_network
from nnunet_tongue.training.optim import GuardedAdamW, WarmupPolyLRScheduler, decay_and_no_decay_groups


class AdamWWarmupTrainer(nnUNetTrainer):
    """nnU-Net's trainer with AdamW (weight decay off for norms/biases/position embedding), a linear warmup
    over the first ``warmup_fraction`` of the epochs, then poly decay; NaN/Inf updates are skipped.

    A base class: it builds nnU-Net's default network and is not offered as a ``-tr`` trainer itself.
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-3
        self.weight_decay = 5e-2
        self.warmup_fraction = 0.05

    def configure_optimizers(self):
        # nnU-Net calls this before it wraps the network in DDP (-num_gpus) and after torch.compile: take the
        # parameters of whatever self.network is; the grouping goes by shape and name suffix, not by prefix
        optimizer = GuardedAdamW(decay_and_no_decay_groups(self.network, self.weight_decay), lr=self.initial_lr,
                                 betas=(0.9, 0.98))
        warmup = max(1, round(self.warmup_fraction * self.num_epochs)) if self.num_epochs > 1 else 0
        return optimizer, WarmupPolyLRScheduler(optimizer, self.initial_lr, warmup, self.num_epochs)


def network_builder(network: str, **options):
    """A trainer's ``build_network_architecture`` for a plug-in ``network`` (``options``: those of
    :func:`~nnunet_tongue.networks.from_plans.build_network`): a staticmethod that uses only its arguments,
    as nnU-Net's inference calls it on the class."""

    def build_network_architecture(plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        return build_network(network, configuration_manager, num_input_channels, num_output_channels,
                             enable_deep_supervision, **options)

    return staticmethod(build_network_architecture)


class nnUNetTrainerResUNet(AdamWWarmupTrainer):
    """Residual-encoder + residual-decoder U-Net (dynamic-network-architectures ``ResidualUNet``)."""

    build_network_architecture = network_builder("ResUNet")


class nnUNetTrainerFabiansUNet(AdamWWarmupTrainer):
    """FabiansUNet: residual encoder (1,2,3,4,4,… blocks) + one conv per decoder stage."""

    build_network_architecture = network_builder("FabiansUNet")


class nnUNetTrainerTUNet(AdamWWarmupTrainer):
    """Transformer-UNet on 16×16 patches; deep-supervision scales follow its own decoder."""

    variant = "TUNet"  # a key of TUNET_VARIANTS: the options its network is built with
    build_network_architecture = network_builder("TUNet", **TUNET_VARIANTS[variant])

    def __init_subclass__(cls, **kwargs):
        """A subclass that names another ``variant`` builds that variant."""
        super().__init_subclass__(**kwargs)
        if "variant" in cls.__dict__:
            cls.build_network_architecture = network_builder("TUNet", **TUNET_VARIANTS[cls.variant])

    def _get_deep_supervision_scales(self):
        """One scale per decoder output: the T-Unet's own strides, not those of the plans' PlainConvUNet."""
        if not self.enable_deep_supervision:
            return None
        arch = architecture_for("TUNet", self.configuration_manager.configuration["architecture"],
                                self.configuration_manager.patch_size, **TUNET_VARIANTS[self.variant])
        strides = np.vstack([np.broadcast_to(s, (len(self.configuration_manager.patch_size),))
                             for s in arch["arch_kwargs"]["strides"]])
        return [list(scale) for scale in 1 / np.cumprod(strides, axis=0)][:-1]


class nnUNetTrainerTUNetToken8(nnUNetTrainerTUNet):
    """T-Unet on 8×8 patches: a 4× larger token grid; its width is the plans' stride-8 stage (256 by default)."""

    variant = "TUNetToken8"


class nnUNetTrainerTUNetLean(nnUNetTrainerTUNet):
    """T-Unet with a lean decoder: one convolution per stage, the deeper map projected (1×1) to the skip's
    width before upsampling (fewer operations per step than :class:`nnUNetTrainerTUNet`)."""

    variant = "TUNetLean"


class nnUNetTrainerTUNetFast(nnUNetTrainerTUNet):
    """T-Unet sized below nnU-Net's default PlainConvUNet in operations per training step: the lean decoder,
    a 384-wide transformer (instead of the plans' 512) and MLP ratio 2."""

    variant = "TUNetFast"


class UprightPhotoAugmentation:
    """Augmentation for upright photos (2d): mirror left-right only and rotate within ±``max_rotation_deg``.

    nnU-Net's 2d default mirrors both axes and rotates by up to ±180° when the patch is near-square, so it
    also trains on upside-down photos, where the tongue lies above the lips. A mixin placed before the
    trainer; test-time mirroring (``inference_allowed_mirroring_axes``) follows the training's axes.
    """

    max_rotation_deg = 15.0  # nnU-Net's own 2d range for elongated patches

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        if len(self.configuration_manager.patch_size) != 2:
            return super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        rotation = (-np.deg2rad(self.max_rotation_deg), np.deg2rad(self.max_rotation_deg))
        mirror_axes = (1,)  # (rows, columns): columns = left-right
        initial_patch_size = get_patch_size(self.configuration_manager.patch_size, rotation, rotation, rotation,
                                            (0.85, 1.25))  # the scale range nnU-Net passes here too
        self.inference_allowed_mirroring_axes = mirror_axes
        return rotation, False, initial_patch_size, mirror_axes


class nnUNetTrainerTUNetUpright(UprightPhotoAugmentation, nnUNetTrainerTUNet):
    """T-Unet trained with :class:`UprightPhotoAugmentation` (left-right mirroring, rotations within ±15°)."""


class nnUNetTrainerResUNetSGD(nnUNetTrainer):
    """The ResUNet trained by nnU-Net's own trainer: SGD, lr 1e-2, Nesterov momentum 0.99, poly decay."""

    build_network_architecture = network_builder("ResUNet")


class nnUNetTrainerFabiansUNetSGD(nnUNetTrainer):
    """The FabiansUNet trained by nnU-Net's own trainer: SGD, lr 1e-2, Nesterov momentum 0.99, poly decay."""

    build_network_architecture = network_builder("FabiansUNet")
