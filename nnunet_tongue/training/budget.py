"""Trainers with a short fixed budget, named as nnU-Net names its own (``nnUNetTrainer_5epochs``).

``<trainer>_<E>epochs_<I>its[_<V>val][_lr<X>][_bs<B>]`` is ``<trainer>`` (a plug-in trainer or nnU-Net's
``nnUNetTrainer``) with ``num_epochs = E``, ``num_iterations_per_epoch = I``, and, when given,
``num_val_iterations_per_epoch = V``, ``initial_lr = X`` and the plans' batch size replaced by ``B`` (to
compare trainings on datasets of different sizes, for which nnU-Net plans different batches); everything else is the
parent trainer, so a budget run compares networks and optimisers on equal terms, and the budget is in the output
folder's name. They save a checkpoint after every epoch, so ``--c`` resumes them where they stopped. On CUDA they
also record the training's peak GPU memory in ``fold_N/cuda_memory.json``.

They are scaffolding for tests, the demo and benchmarks, not product trainers: their folder,
:data:`nnunet_tongue.registration.BUDGET_TRAINER_FOLDER`, is added to ``nnUNet_extTrainer`` only by
:class:`nnunet_tongue.workspace.NnUNetWorkspace`.
"""

from __future__ import annotations

import json
import os
import re

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_tongue.training.trainers import PRODUCT_TRAINERS

_BASES = {cls.__name__: cls for cls in (nnUNetTrainer, *PRODUCT_TRAINERS)}
_NAME = re.compile(r"(?P<base>nnUNetTrainer\w*?)_(?P<epochs>[1-9]\d*)epochs_(?P<iterations>[1-9]\d*)its"
                   r"(?:_(?P<val>[1-9]\d*)val)?(?:_lr(?P<lr>\d+(?:\.\d+)?(?:e-?\d+)?))?(?:_bs(?P<batch>[1-9]\d*))?")
_MADE: dict[str, type] = {}


def budget_trainer_name(trainer: str, epochs: int, iterations: int, val_iterations: int | None = None,
                        lr: float | None = None, batch_size: int | None = None) -> str:
    """The class name of ``trainer`` on that budget, e.g. ``nnUNetTrainerTUNet_8epochs_12its_3val``."""
    name = f"{trainer}_{int(epochs)}epochs_{int(iterations)}its"
    name += f"_{int(val_iterations)}val" if val_iterations else ""
    name += f"_lr{lr:g}" if lr else ""
    name += f"_bs{int(batch_size)}" if batch_size else ""
    if budget_trainer(name) is None:
        raise ValueError(f"no budget trainer for {trainer!r}: use one of {', '.join(_BASES)}")
    return name


class BudgetTrainer:
    """Mixin: the budget in :attr:`budget` (trainer attribute -> value) set after the parent's defaults, and
    ``checkpoint_latest.pth`` written after every epoch (nnU-Net: every 50), so that a long CPU training stopped
    at any point resumes from its last epoch with ``nnUNetv2_train ... --c``."""

    budget: dict = {}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.save_every = 1
        for attribute, value in self.budget.items():
            if attribute == "batch_size":  # nnU-Net reads it from the configuration in initialize()
                self.plans_manager.plans["configurations"][configuration]["batch_size"] = value
                self.configuration_manager.configuration["batch_size"] = value
            else:
                setattr(self, attribute, value)

    def on_train_end(self):
        super().on_train_end()
        if self.device.type == "cuda" and self.local_rank == 0:
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            with open(os.path.join(self.output_folder, "cuda_memory.json"), "w") as f:
                json.dump({"peak_cuda_memory_MB": round(peak, 1)}, f)


def budget_trainer(name: str) -> type | None:
    """The budget trainer class ``name`` names (made once, then the same class), or None."""
    match = _NAME.fullmatch(name)
    if match is None or match["base"] not in _BASES:
        return None
    if name not in _MADE:
        budget = {"num_epochs": int(match["epochs"]), "num_iterations_per_epoch": int(match["iterations"])}
        if match["val"]:
            budget["num_val_iterations_per_epoch"] = int(match["val"])
        if match["lr"]:
            budget["initial_lr"] = float(match["lr"])
        if match["batch"]:
            budget["batch_size"] = int(match["batch"])
        _MADE[name] = type(name, (BudgetTrainer, _BASES[match["base"]]),
                           {"budget": budget, "__module__": __name__, "__qualname__": name,
                            "__doc__": f"{match['base']} with {budget}."})
    return _MADE[name]


def product_trainer_name(name: str) -> str:
    """The trainer a budget trainer budgets (it builds the same network), or ``name`` itself."""
    match = _NAME.fullmatch(name)
    return match["base"] if match is not None and match["base"] in _BASES else name


def __getattr__(name: str) -> type:
    """Budget trainers are attributes of this module (nnU-Net's search, pickle)."""
    trainer = budget_trainer(name)
    if trainer is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return trainer
