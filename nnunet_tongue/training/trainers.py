"""nnU-Net trainers for the plug-in networks: one class, one idea.

Product trainers (``-tr``), each building its network from nnU-Net's DEFAULT plans (``nnUNetPlans``, no
``-p`` needed) or from plans written by a plug-in planner:

- :class:`nnUNetTrainerTUNet`: the Transformer-UNet;
- :class:`nnUNetTrainerResUNet`: residual encoder + residual decoder;
- :class:`nnUNetTrainerFabiansUNet`: residual encoder + plain conv decoder.

Documented variants, each changing one thing: :class:`nnUNetTrainerTUNetToken8`, :class:`nnUNetTrainerTUNetLean`,
:class:`nnUNetTrainerTUNetFast` (the network), :class:`nnUNetTrainerTUNetUpright`,
:class:`nnUNetTrainerTUNetPhotoAug`, :class:`nnUNetTrainerTUNetCoatingAug` (the augmentation),
:class:`nnUNetTrainerAdamWCoatingAug` (nnU-Net's network with AdamW and the coating augmentation),
:class:`nnUNetTrainerAdamWDarkCoatingAug`, :class:`nnUNetTrainerAdamWContextAug` (that, with coating that may be
darker than the tongue, or with zoom-outs onto a made-up surrounding),
:class:`nnUNetTrainerUNet320` (that network capped at 320 features per stage), :class:`nnUNetTrainerUNet320CoatingAug`
(with the coating augmentation: the bundled model's recipe), :class:`nnUNetTrainerUNet320CoatingAugBalanced`
(that, with every source of a multi-source dataset drawn equally often), :class:`nnUNetTrainerUNet320FrequentCoatingAug`
(with coating on twice as many samples), :class:`nnUNetTrainerUNet320TexturedCoatingAug` (with coating that has
real coating's grain and cracks), :class:`nnUNetTrainerTUNetFastPhotoAug` (the
recipe of the first bundled model),
:class:`nnUNetTrainerResUNetSGD`, :class:`nnUNetTrainerFabiansUNetSGD` (nnU-Net's own SGD schedule instead of
AdamW + warmup). Short fixed budgets for tests and benchmarks: :mod:`nnunet_tongue.training.budget`.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_tongue.networks.from_plans import (
    TUNET_VARIANTS,
    architecture_for,
    build_from_architecture,
    legacy_architecture,
)
from nnunet_tongue.networks.tunet import cumulative_strides
from nnunet_tongue.registration import switched_off
from nnunet_tongue.training.augmentation import (
    CoatingAugmentation,
    ContextAugmentation,
    DarkCoatingAugmentation,
    PhotoAugmentation,
    TexturedCoatingAugmentation,
    UprightPhotoAugmentation,
)
from nnunet_tongue.training.cpu_memory import OPT_OUT, reuse_freed_memory
from nnunet_tongue.training.optim import GuardedAdamW, WarmupPolyLRScheduler, decay_and_no_decay_groups
from nnunet_tongue.training.sampling import SourceBalancedSampling


class CPUMemoryReuseTrainer(nnUNetTrainer):
    """nnU-Net's trainer that, on a CPU device, keeps freed tensor memory for the next step instead of returning
    it to the system (:func:`~nnunet_tongue.training.cpu_memory.reuse_freed_memory`): steps about a fifth
    shorter on CPU for a fifth to a third more peak memory; ``NNUNET_TONGUE_REUSE_FREED_MEMORY=0`` leaves malloc
    as it is. A base class, not a ``-tr`` trainer."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.device.type == "cpu" and not switched_off(OPT_OUT):
            reuse_freed_memory()


class AtomicCheckpointTrainer(CPUMemoryReuseTrainer):
    """nnU-Net's trainer writing each checkpoint to a temporary file renamed over the old one: a full disk or a
    crash mid-write never leaves a truncated ``checkpoint_*.pth`` for ``--c`` or prediction to load, and the
    error names the file and the fix. A base class, not a ``-tr`` trainer."""

    def save_checkpoint(self, filename: str) -> None:
        temporary = f"{filename}.partial"
        try:
            super().save_checkpoint(temporary)
        except (OSError, RuntimeError) as error:  # torch.save reports a full disk as either
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise RuntimeError(f"cannot write {filename} ({error}); the checkpoint there before is unchanged: free "
                               "space under nnUNet_results, then resume with the same nnUNetv2_train command and "
                               "--c") from error
        if os.path.isfile(temporary):  # nothing is written on other ranks or with checkpointing disabled
            os.replace(temporary, filename)


class PlugInNetworkTrainer(AtomicCheckpointTrainer):
    """nnU-Net's trainer building the plug-in network :attr:`network_name` with constructor overrides
    :attr:`network_options`.

    It writes that network's complete ``architecture`` entry into its plans, which nnU-Net copies into the
    model folder (``plans.json``): prediction rebuilds exactly the trained network from there. A base class,
    not a ``-tr`` trainer.
    """

    network_name: str = "TUNet"  # a key of nnunet_tongue.networks.from_plans.NETWORKS
    network_options: dict = {}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        architecture = architecture_for(self.network_name, self.configuration_manager.configuration["architecture"],
                                        self.configuration_manager.patch_size, **self.network_options)
        self.plans_manager.plans["configurations"][configuration]["architecture"] = architecture
        self.configuration_manager.configuration["architecture"] = architecture

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """The network the plans' architecture entry describes; an entry from a model folder written before
        version 0.2 is read as the trainers of that version read it."""
        architecture = legacy_architecture(cls.network_name, configuration_manager.configuration["architecture"],
                                           configuration_manager.patch_size, **cls.network_options)
        return build_from_architecture(architecture, num_input_channels, num_output_channels,
                                       enable_deep_supervision)


class AdamWWarmupTrainer(AtomicCheckpointTrainer):
    """AdamW (weight decay off for norms, biases, position embedding), a linear warmup over the first
    ``warmup_fraction`` of the training iterations, then poly decay; NaN/Inf updates are skipped.
    The learning rate changes every iteration, so the warmup is the same whatever the epoch count.
    Any network: the plug-in trainers combine it with :class:`PlugInNetworkTrainer`."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-3
        self.weight_decay = 5e-2
        self.warmup_fraction = 0.05
        self._iteration_in_epoch = 0

    def configure_optimizers(self):
        # nnU-Net calls this before it wraps the network in DDP (-num_gpus) and after torch.compile: take the
        # parameters of whatever self.network is; the grouping goes by shape and name suffix, not by prefix
        optimizer = GuardedAdamW(decay_and_no_decay_groups(self.network, self.weight_decay), lr=self.initial_lr,
                                 betas=(0.9, 0.98))
        total = self.num_epochs * self.num_iterations_per_epoch
        schedule = WarmupPolyLRScheduler(optimizer, self.initial_lr, round(self.warmup_fraction * total), total,
                                         self.num_iterations_per_epoch)
        return optimizer, schedule

    def on_train_epoch_start(self):
        self._iteration_in_epoch = 0
        super().on_train_epoch_start()  # nnU-Net: lr_scheduler.step(epoch), the epoch's first iteration

    def train_step(self, batch: dict) -> dict:
        self.lr_scheduler.step_iteration(self.current_epoch * self.num_iterations_per_epoch + self._iteration_in_epoch)
        self._iteration_in_epoch += 1
        return super().train_step(batch)


class nnUNetTrainerAdamW(AdamWWarmupTrainer):
    """Control: nnU-Net's own network (the plans' PlainConvUNet, as ``nnUNetTrainer`` builds it) trained with the
    plug-in's AdamW + warmup, so that network and optimiser are not confounded when trainers are compared."""


class nnUNetTrainerResUNet(AdamWWarmupTrainer, PlugInNetworkTrainer):
    """Residual-encoder + residual-decoder U-Net (dynamic-network-architectures ``ResidualUNet``)."""

    network_name = "ResUNet"


class nnUNetTrainerFabiansUNet(AdamWWarmupTrainer, PlugInNetworkTrainer):
    """FabiansUNet: residual encoder (1,2,3,4,4,… blocks) + one conv per decoder stage."""

    network_name = "FabiansUNet"


class nnUNetTrainerTUNet(AdamWWarmupTrainer, PlugInNetworkTrainer):
    """Transformer-UNet on 16×16 tokens; deep-supervision scales follow its own decoder."""

    network_name = "TUNet"

    def _get_deep_supervision_scales(self):
        """One scale per decoder output: the T-Unet's CNN strides, not those of the plans' PlainConvUNet."""
        if not self.enable_deep_supervision:
            return None
        strides = self.configuration_manager.configuration["architecture"]["arch_kwargs"]["strides"]
        dims = len(self.configuration_manager.patch_size)
        return [list(np.broadcast_to(1 / scale, (dims,))) for scale in cumulative_strides(strides)]


class nnUNetTrainerTUNetToken8(nnUNetTrainerTUNet):
    """T-Unet on 8×8 tokens: a 4× larger token grid, a 256-wide transformer."""

    network_options = TUNET_VARIANTS["TUNetToken8"]


class nnUNetTrainerTUNetLean(nnUNetTrainerTUNet):
    """T-Unet with a lean decoder: one convolution per stage, the deeper map projected (1×1) to the skip's
    width before upsampling (fewer operations per step than :class:`nnUNetTrainerTUNet`)."""

    network_options = TUNET_VARIANTS["TUNetLean"]


class nnUNetTrainerTUNetFast(nnUNetTrainerTUNet):
    """T-Unet sized below nnU-Net's default PlainConvUNet in operations per training step: the lean decoder,
    a 384-wide transformer and MLP ratio 2."""

    network_options = TUNET_VARIANTS["TUNetFast"]


class nnUNetTrainerTUNetNoTransformer(nnUNetTrainerTUNet):
    """Control: :class:`nnUNetTrainerTUNet` with the transformer removed, the decoder fed by the CNN alone (one
    residual stage from the deepest skip to the token stride), trained the same way: what the transformer adds."""

    network_options = TUNET_VARIANTS["TUNetNoTransformer"]


class nnUNetTrainerTUNetUpright(UprightPhotoAugmentation, nnUNetTrainerTUNet):
    """T-Unet trained with :class:`UprightPhotoAugmentation` (left-right mirroring, rotations within ±15°)."""


class nnUNetTrainerTUNetPhotoAug(PhotoAugmentation, nnUNetTrainerTUNet):
    """T-Unet trained with :class:`PhotoAugmentation`: upright photos from any camera, distance and light."""


class nnUNetTrainerTUNetCoatingAug(CoatingAugmentation, nnUNetTrainerTUNet):
    """T-Unet trained with :class:`CoatingAugmentation`: :class:`PhotoAugmentation` plus synthetic tongue coating."""


class nnUNetTrainerAdamWCoatingAug(CoatingAugmentation, nnUNetTrainerAdamW):
    """nnU-Net's own network with the plug-in AdamW (:class:`nnUNetTrainerAdamW`) trained with
    :class:`CoatingAugmentation`."""


class nnUNetTrainerAdamWDarkCoatingAug(DarkCoatingAugmentation, nnUNetTrainerAdamW):
    """:class:`nnUNetTrainerAdamWCoatingAug` with :class:`DarkCoatingAugmentation`: the synthetic coating may
    also be darker than the tongue (yellow-brown, shadowed)."""


class nnUNetTrainerAdamWContextAug(ContextAugmentation, nnUNetTrainerAdamW):
    """:class:`nnUNetTrainerAdamWCoatingAug` with :class:`ContextAugmentation`: zoom-outs onto a made-up
    surrounding of skin or clothes, for close-ups that never show the face or chin."""


class nnUNetTrainerTUNetFastPhotoAug(PhotoAugmentation, nnUNetTrainerTUNetFast):
    """The first bundled model's recipe: the small :class:`nnUNetTrainerTUNetFast` network (fits the wheel's size
    limit in fp16) trained with :class:`PhotoAugmentation`."""


class nnUNetTrainerUNet320(AdamWWarmupTrainer, PlugInNetworkTrainer):
    """nnU-Net's PlainConvUNet with at most 320 feature maps per stage (nnU-Net's cap for 3d; its 2d plans go to
    512): about half the parameters (10.7 M instead of 20.6 M at 192 px), so it fits the wheel's size limit in
    fp16; trained with the plug-in AdamW + warmup."""

    network_name = "PlainConvUNet"
    network_options = {"max_features": 320}


class nnUNetTrainerUNet320CoatingAug(CoatingAugmentation, nnUNetTrainerUNet320):
    """The bundled model's recipe: :class:`nnUNetTrainerUNet320` trained with :class:`CoatingAugmentation`."""


class nnUNetTrainerUNet320FrequentCoatingAug(nnUNetTrainerUNet320CoatingAug):
    """:class:`nnUNetTrainerUNet320CoatingAug` with synthetic coating on 80 % of the samples instead of 40 %."""

    p_coating = 0.8


class nnUNetTrainerUNet320TexturedCoatingAug(TexturedCoatingAugmentation, nnUNetTrainerUNet320):
    """:class:`nnUNetTrainerUNet320CoatingAug` whose synthetic coating has real coating's grain and cracks
    (:class:`~nnunet_tongue.training.augmentation.TexturedCoatingAugmentation`)."""


class nnUNetTrainerUNet320CoatingAugBalanced(SourceBalancedSampling, nnUNetTrainerUNet320CoatingAug):
    """:class:`nnUNetTrainerUNet320CoatingAug` with :class:`SourceBalancedSampling`: each source of a multi-source
    dataset (cases named ``<source>_<case>``) is drawn about equally often."""


class nnUNetTrainerResUNetSGD(PlugInNetworkTrainer):
    """The ResUNet trained by nnU-Net's own trainer: SGD, lr 1e-2, Nesterov momentum 0.99, poly decay."""

    network_name = "ResUNet"


class nnUNetTrainerFabiansUNetSGD(PlugInNetworkTrainer):
    """The FabiansUNet trained by nnU-Net's own trainer: SGD, lr 1e-2, Nesterov momentum 0.99, poly decay."""

    network_name = "FabiansUNet"


#: the trainers nnU-Net's search finds after ``pip install``: every ``nnUNetTrainer*`` class this module defines,
#: in the order defined (the start-up trainer folder re-exports them through ``__all__``)
PRODUCT_TRAINERS = tuple(obj for name, obj in list(globals().items()) if name.startswith("nnUNetTrainer")
                         and isinstance(obj, type) and obj.__module__ == __name__)
__all__ = [cls.__name__ for cls in PRODUCT_TRAINERS]
