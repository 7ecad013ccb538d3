"""nnU-Net trainers for the plug-in networks. Each builds its network from nnU-Net's DEFAULT plans
(``nnUNetPlans``, no ``-p`` needed) or from plans written by a plug-in planner.

- :class:`nnUNetTrainerResUNet`: residual encoder + residual decoder.
- :class:`nnUNetTrainerFabiansUNet`: residual encoder + plain conv decoder.
- :class:`nnUNetTrainerTUNet`: Transformer-UNet (16×16 tokens); :class:`nnUNetTrainerTUNetToken8`: on 8×8 tokens;
  :class:`nnUNetTrainerTUNetLean`: with a lean decoder.

All three train with :class:`AdamWWarmupTrainer`'s optimiser (AdamW, warmup + poly decay, non-finite
updates skipped). :class:`nnUNetTrainerResUNetSGD` and :class:`nnUNetTrainerFabiansUNetSGD` keep
nnU-Net's own SGD schedule for the residual networks (docs/benchmarks.md compares the two).
"""

from __future__ import annotations

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_tongue.networks.from_plans import TUNET_PATCH_SIZE, architecture_for, build_network
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

    token_size = TUNET_PATCH_SIZE
    build_network_architecture = network_builder("TUNet", token_size=token_size)

    def _get_deep_supervision_scales(self):
        """One scale per decoder output: the T-Unet's own strides, not those of the plans' PlainConvUNet."""
        if not self.enable_deep_supervision:
            return None
        arch = architecture_for("TUNet", self.configuration_manager.configuration["architecture"],
                                self.configuration_manager.patch_size, self.token_size)
        strides = np.vstack([np.broadcast_to(s, (len(self.configuration_manager.patch_size),))
                             for s in arch["arch_kwargs"]["strides"]])
        return [list(scale) for scale in 1 / np.cumprod(strides, axis=0)][:-1]


class nnUNetTrainerTUNetToken8(nnUNetTrainerTUNet):
    """T-Unet on 8×8 patches: a 4× larger token grid; its width is the plans' stride-8 stage (256 by default)."""

    token_size = 8
    build_network_architecture = network_builder("TUNet", token_size=token_size)


class nnUNetTrainerTUNetLean(nnUNetTrainerTUNet):
    """T-Unet with a lean decoder: one convolution per stage, the deeper map projected (1×1) to the skip's
    width before upsampling (fewer operations per step than :class:`nnUNetTrainerTUNet`)."""

    build_network_architecture = network_builder("TUNet", lean_decoder=True)


class nnUNetTrainerResUNetSGD(nnUNetTrainer):
    """The ResUNet trained by nnU-Net's own trainer: SGD, lr 1e-2, Nesterov momentum 0.99, poly decay."""

    build_network_architecture = network_builder("ResUNet")


class nnUNetTrainerFabiansUNetSGD(nnUNetTrainer):
    """The FabiansUNet trained by nnU-Net's own trainer: SGD, lr 1e-2, Nesterov momentum 0.99, poly decay."""

    build_network_architecture = network_builder("FabiansUNet")
