"""Trainer set-up: which optimiser and schedule each plug-in trainer trains with (built on CPU, nothing trained)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from nnunet_tongue.training import budget, trainers
from nnunet_tongue.training.optim import GuardedAdamW, WarmupPolyLRScheduler

PLUGIN = ["nnUNetTrainerResUNet", "nnUNetTrainerFabiansUNet", "nnUNetTrainerTUNet"]
SGD = {"nnUNetTrainerResUNetSGD": "nnUNetTrainerResUNet", "nnUNetTrainerFabiansUNetSGD": "nnUNetTrainerFabiansUNet"}


@pytest.fixture
def constructed(planned_synthetic, monkeypatch):
    """Factory: a trainer for the planned synthetic dataset, constructed in this process (not initialised)."""
    monkeypatch.setenv("nnUNet_preprocessed", str(planned_synthetic.preprocessed))
    monkeypatch.setenv("nnUNet_results", str(planned_synthetic.root / "results_in_process"))
    folder = planned_synthetic.preprocessed / "Dataset999_SyntheticTongue"
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    dataset_json = json.loads((folder / "dataset.json").read_text())

    def build(trainer_class):  # nnUNetTrainer pops "continue_training" from the plans: a fresh dict each time
        return trainer_class(dict(plans, continue_training=False), "2d", 0, dataset_json, torch.device("cpu"))

    return build


@pytest.fixture
def initialised(constructed):
    """Factory: a trainer for the planned synthetic dataset, its ``initialize()`` run in this process."""

    def build(trainer_class):
        trainer = constructed(trainer_class)
        trainer.initialize()
        return trainer

    return build


@pytest.fixture
def process_group(tmp_path):
    """A one-process gloo group: nnU-Net's trainers then take their DDP (-num_gpus) code path, on CPU."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("name", PLUGIN)
def test_plugin_trainers_use_adamw_with_warmup_and_no_decay_on_norms_and_biases(initialised, name):
    trainer = initialised(getattr(trainers, name))
    assert isinstance(trainer.optimizer, GuardedAdamW)
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in trainer.network.named_parameters()}
    assert all(p.ndim > 1 for p in decay["params"])
    assert all(p.ndim <= 1 or names[id(p)].endswith("pos_embed") for p in no_decay["params"])
    schedule = trainer.lr_scheduler
    assert isinstance(schedule, WarmupPolyLRScheduler) and schedule.warmup_steps == 50  # 5 % of 1000 epochs
    assert schedule.lr_at(50) == pytest.approx(1e-3)
    assert schedule.lr_at(0) < schedule.lr_at(49) < schedule.lr_at(50) > schedule.lr_at(999)


@pytest.mark.parametrize("name", SGD)
def test_sgd_variants_train_the_same_network_with_nnunets_sgd_schedule(initialised, name):
    trainer = initialised(getattr(trainers, name))
    assert type(trainer.optimizer) is torch.optim.SGD
    group = trainer.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (1e-2, 0.99, True, 3e-5)
    network = getattr(trainers, SGD[name]).build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, 3, 2, True)
    assert type(trainer.network) is type(network)


def test_budget_variant_keeps_its_parents_optimiser(initialised, monkeypatch):
    monkeypatch.setenv("NNUNET_TONGUE_EPOCHS", "8")
    trainer = initialised(budget.nnUNetTrainerResUNetSGD_Budget)
    assert trainer.num_epochs == 8 and type(trainer.optimizer) is torch.optim.SGD
    trainer = initialised(budget.nnUNetTrainerResUNet_Budget)
    assert trainer.num_epochs == 8 and isinstance(trainer.optimizer, GuardedAdamW)
    assert trainer.lr_scheduler.warmup_steps == 1


def test_budget_variant_trains_with_the_learning_rate_from_the_environment(initialised, monkeypatch):
    monkeypatch.setenv("NNUNET_TONGUE_LR", "3e-4")
    trainer = initialised(budget.nnUNetTrainerTUNet_Budget)
    assert trainer.initial_lr == 3e-4 and trainer.lr_scheduler.initial_lr == 3e-4


def test_budget_variant_refuses_a_learning_rate_that_is_not_a_positive_number(constructed, monkeypatch):
    monkeypatch.setenv("NNUNET_TONGUE_LR", "fast")
    with pytest.raises(ValueError, match="NNUNET_TONGUE_LR='fast'"):
        constructed(budget.nnUNetTrainerTUNet_Budget)


@pytest.mark.parametrize("name", PLUGIN)
def test_optimiser_is_built_the_way_nnunets_multi_gpu_path_calls_it(constructed, process_group, name):
    # with -num_gpus, nnU-Net's initialize() calls configure_optimizers() while is_ddp is already true but
    # before it wraps the network in DistributedDataParallel (initialize() itself needs CUDA there)
    trainer = constructed(getattr(trainers, name))
    assert trainer.is_ddp
    trainer.network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 3, 2,
                                                         True)
    optimizer, _ = trainer.configure_optimizers()
    grouped = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in trainer.network.parameters())
    # then nnU-Net wraps it: a DDP step (gloo, CPU) updates the weights the optimiser holds
    ddp = DistributedDataParallel(trainer.network)
    before = [p.detach().clone() for p in optimizer.param_groups[0]["params"]]
    outputs = ddp(torch.randn(2, 3, *trainer.configuration_manager.patch_size))
    sum(o.float().square().mean() for o in outputs).backward()
    optimizer.step()
    assert optimizer.skipped_steps == 0
    assert any(not torch.equal(b, p) for b, p in zip(before, optimizer.param_groups[0]["params"]))


def test_upright_trainer_mirrors_left_right_only_and_rotates_within_15_degrees(constructed):
    trainer = constructed(trainers.nnUNetTrainerTUNetUpright)
    rotation, dummy_2d, _, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert mirror_axes == (1,) and not dummy_2d
    assert rotation == pytest.approx((-np.deg2rad(15), np.deg2rad(15)))
    assert trainer.inference_allowed_mirroring_axes == (1,)  # test-time mirroring follows the training


def test_default_augmentation_also_mirrors_upside_down(constructed):
    trainer = constructed(trainers.nnUNetTrainerTUNet)
    assert trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3] == (0, 1)
