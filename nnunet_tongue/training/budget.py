"""Trainers with a training budget set from the environment (tests, demo, benchmarks).

``nnUNetTrainerTUNet_Budget`` and friends are the plug-in trainers (and nnU-Net's default) with
``num_epochs``, ``num_iterations_per_epoch`` and ``num_val_iterations_per_epoch`` read from

- ``NNUNET_TONGUE_EPOCHS``
- ``NNUNET_TONGUE_ITERATIONS``      (training iterations per epoch)
- ``NNUNET_TONGUE_VAL_ITERATIONS``  (validation iterations per epoch)

when they are set, and the initial learning rate from ``NNUNET_TONGUE_LR`` (a positive number); unset
ones keep the trainer's default. Everything else is the parent trainer,
so a budget run compares architectures and optimisers on equal terms. On CUDA they also record the
training's peak GPU memory (``torch.cuda.max_memory_allocated``) in ``fold_N/cuda_memory.json``.
"""

from __future__ import annotations

import json
import os

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_tongue.training.trainers import (
    nnUNetTrainerFabiansUNet,
    nnUNetTrainerFabiansUNetSGD,
    nnUNetTrainerResUNet,
    nnUNetTrainerResUNetSGD,
    nnUNetTrainerTUNet,
    nnUNetTrainerTUNetFast,
    nnUNetTrainerTUNetLean,
    nnUNetTrainerTUNetToken8,
    nnUNetTrainerTUNetUpright,
)

#: trainer attribute -> (environment variable, type of its positive value)
BUDGET_VARIABLES = {
    "num_epochs": ("NNUNET_TONGUE_EPOCHS", int),
    "num_iterations_per_epoch": ("NNUNET_TONGUE_ITERATIONS", int),
    "num_val_iterations_per_epoch": ("NNUNET_TONGUE_VAL_ITERATIONS", int),
    "initial_lr": ("NNUNET_TONGUE_LR", float),
}


def _positive(variable: str, kind: type) -> int | float | None:
    """The environment variable's value as a positive ``kind`` (int or float); None when it is unset or empty."""
    raw = os.environ.get(variable)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if not value > 0:
        what = "whole number" if kind is int else "number such as 3e-4"
        raise ValueError(f"{variable}={raw!r}: must be a positive {what} (or unset for the default)")
    return value


class BudgetMixin:
    """Reads the training budget (and learning rate) from the environment after the parent trainer set its
    defaults."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        for attribute, (variable, kind) in BUDGET_VARIABLES.items():
            value = _positive(variable, kind)
            if value is not None:
                setattr(self, attribute, value)

    def on_train_end(self):
        super().on_train_end()
        if self.device.type == "cuda" and self.local_rank == 0:
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            with open(os.path.join(self.output_folder, "cuda_memory.json"), "w") as f:
                json.dump({"peak_cuda_memory_MB": round(peak, 1)}, f)


class nnUNetTrainer_Budget(BudgetMixin, nnUNetTrainer):
    """nnU-Net's default trainer (PlainConvUNet, SGD) with an environment-set budget."""


class nnUNetTrainerResUNet_Budget(BudgetMixin, nnUNetTrainerResUNet):
    """:class:`nnUNetTrainerResUNet` with an environment-set budget."""


class nnUNetTrainerFabiansUNet_Budget(BudgetMixin, nnUNetTrainerFabiansUNet):
    """:class:`nnUNetTrainerFabiansUNet` with an environment-set budget."""


class nnUNetTrainerTUNet_Budget(BudgetMixin, nnUNetTrainerTUNet):
    """:class:`nnUNetTrainerTUNet` with an environment-set budget."""


class nnUNetTrainerTUNetToken8_Budget(BudgetMixin, nnUNetTrainerTUNetToken8):
    """:class:`nnUNetTrainerTUNetToken8` with an environment-set budget."""


class nnUNetTrainerTUNetLean_Budget(BudgetMixin, nnUNetTrainerTUNetLean):
    """:class:`nnUNetTrainerTUNetLean` with an environment-set budget."""


class nnUNetTrainerTUNetFast_Budget(BudgetMixin, nnUNetTrainerTUNetFast):
    """:class:`nnUNetTrainerTUNetFast` with an environment-set budget."""


class nnUNetTrainerTUNetUpright_Budget(BudgetMixin, nnUNetTrainerTUNetUpright):
    """:class:`nnUNetTrainerTUNetUpright` with an environment-set budget."""


class nnUNetTrainerResUNetSGD_Budget(BudgetMixin, nnUNetTrainerResUNetSGD):
    """:class:`nnUNetTrainerResUNetSGD` with an environment-set budget."""


class nnUNetTrainerFabiansUNetSGD_Budget(BudgetMixin, nnUNetTrainerFabiansUNetSGD):
    """:class:`nnUNetTrainerFabiansUNetSGD` with an environment-set budget."""
