"""Trainer set-up: which optimiser and schedule each plug-in trainer trains with (built on CPU, nothing trained)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from nnunet_tongue.training import trainers
from nnunet_tongue.training.budget import budget_trainer, budget_trainer_name
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
    assert isinstance(schedule, WarmupPolyLRScheduler)
    assert schedule.warmup_iterations == 12500  # 5 % of 1000 epochs x 250 iterations
    assert schedule.lr_at(12500) == pytest.approx(1e-3)
    assert schedule.lr_at(0) < schedule.lr_at(12499) < schedule.lr_at(12500) > schedule.lr_at(249999)


def test_adamw_control_trains_nnunets_own_network_with_the_plug_in_optimiser(initialised, constructed):
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    trainer = initialised(trainers.nnUNetTrainerAdamW)
    stock = initialised(nnUNetTrainer)
    assert type(trainer.network) is type(stock.network) is PlainConvUNet
    assert trainer.configuration_manager.configuration["architecture"] == \
        stock.configuration_manager.configuration["architecture"]  # the plans' network, untouched
    assert isinstance(trainer.optimizer, GuardedAdamW) and isinstance(trainer.lr_scheduler, WarmupPolyLRScheduler)


def test_checkpoints_are_written_whole_or_not_at_all(initialised, tmp_path, small_disk):
    trainer = initialised(trainers.nnUNetTrainerAdamW)
    good = tmp_path / "checkpoint_latest.pth"
    trainer.save_checkpoint(str(good))
    assert torch.load(good, weights_only=False)["trainer_name"] == "nnUNetTrainerAdamW"
    assert list(tmp_path.glob("*.partial")) == []
    disk, _ = small_disk
    earlier = disk / "checkpoint_latest.pth"
    earlier.write_bytes(b"the checkpoint of an earlier epoch")
    with pytest.raises(RuntimeError, match=f"cannot write {earlier}.*unchanged.*--c"):
        trainer.save_checkpoint(str(earlier))  # far larger than the 96-KiB disk
    assert earlier.read_bytes() == b"the checkpoint of an earlier epoch"
    assert list(disk.glob("*.partial")) == []


@pytest.mark.parametrize("name", SGD)
def test_sgd_variants_train_the_same_network_with_nnunets_sgd_schedule(initialised, name):
    trainer = initialised(getattr(trainers, name))
    assert type(trainer.optimizer) is torch.optim.SGD
    group = trainer.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (1e-2, 0.99, True, 3e-5)
    network = getattr(trainers, SGD[name]).build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, 3, 2, True)
    assert type(trainer.network) is type(network)


def test_budget_trainer_keeps_its_parents_optimiser_and_takes_the_budget_its_name_states(initialised):
    trainer = initialised(budget_trainer("nnUNetTrainerResUNetSGD_8epochs_3its"))
    assert ((trainer.num_epochs, trainer.num_iterations_per_epoch) == (8, 3)
            and type(trainer.optimizer) is torch.optim.SGD)
    trainer = initialised(budget_trainer("nnUNetTrainerTUNet_8epochs_3its_2val_lr0.0003"))
    assert isinstance(trainer.optimizer, GuardedAdamW) and trainer.num_val_iterations_per_epoch == 2
    assert trainer.initial_lr == 3e-4 and trainer.lr_scheduler.initial_lr == 3e-4
    assert trainer.lr_scheduler.total_iterations == 24


def test_budget_trainer_saves_a_checkpoint_to_resume_from_after_every_epoch(initialised):
    assert initialised(budget_trainer("nnUNetTrainerUNet320_64epochs_12its")).save_every == 1  # nnU-Net's: 50
    assert initialised(trainers.nnUNetTrainerUNet320).save_every == 50


def test_budget_trainer_names_round_trip_and_unknown_ones_are_refused():
    name = budget_trainer_name("nnUNetTrainerTUNet", 32, 12, 3, 3e-4)
    assert name == "nnUNetTrainerTUNet_32epochs_12its_3val_lr0.0003"
    assert budget_trainer(name) is budget_trainer(name) and budget_trainer(name).__name__ == name
    assert budget_trainer("nnUNetTrainerTUNet_0epochs_12its") is None
    assert budget_trainer("nnUNetTrainerNotOurs_4epochs_12its") is None
    with pytest.raises(ValueError, match="no budget trainer"):
        budget_trainer_name("nnUNetTrainerNotOurs", 4, 12)


@pytest.mark.parametrize("epochs", [2, 3])
def test_learning_rate_warms_up_per_iteration_whatever_the_epoch_count(initialised, monkeypatch, epochs):
    """Per-epoch warmup went 0.5, 1.0, 0.54 x peak over 3 epochs and ended at the peak over 2."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    trainer = initialised(budget_trainer(f"nnUNetTrainerTUNet_{epochs}epochs_20its"))
    seen = []
    monkeypatch.setattr(nnUNetTrainer, "train_step",
                        lambda self, batch: seen.append(self.optimizer.param_groups[0]["lr"]) or {"loss": 0.0})
    for epoch in range(epochs):
        trainer.current_epoch = epoch
        trainer.on_train_epoch_start()
        for _ in range(trainer.num_iterations_per_epoch):
            trainer.train_step({})
    peak = int(np.argmax(seen))
    assert peak == round(0.05 * epochs * 20) and seen[peak] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(seen[:peak], seen[1:peak + 1]))  # rising, step by step, to the peak
    assert all(a > b for a, b in zip(seen[peak:], seen[peak + 1:]))  # then falling at every step


@pytest.mark.parametrize("name", PLUGIN + list(SGD))
def test_trainer_writes_its_whole_network_into_the_plans_nnunet_copies_to_the_model_folder(constructed, name):
    trainer = constructed(getattr(trainers, name))
    written = trainer.plans_manager.plans["configurations"]["2d"]["architecture"]
    assert written["network_class_name"] != "dynamic_network_architectures.architectures.unet.PlainConvUNet"
    assert trainer.configuration_manager.configuration["architecture"] == written
    network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 3, 2, False)
    assert f"{type(network).__module__}.{type(network).__name__}" == written["network_class_name"]


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


def test_budget_trainer_replaces_the_planned_batch_size(initialised):
    trainer = initialised(budget_trainer("nnUNetTrainerTUNet_2epochs_3its_bs3"))
    assert trainer.batch_size == 3 and trainer.configuration_manager.batch_size == 3


def test_photo_augmentation_widens_scaling_and_adds_colour_changes(constructed):
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

    from nnunet_tongue.training.augmentation import ChannelMixTransform, SaturationTransform

    trainer = constructed(trainers.nnUNetTrainerTUNetPhotoAug)
    rotation, dummy_2d, _, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert mirror_axes == (1,)  # upright photos: left-right only
    composed = trainer.get_training_transforms(trainer.configuration_manager.patch_size, rotation, None,
                                               mirror_axes, dummy_2d)
    spatial = next(t for t in composed.transforms if isinstance(t, SpatialTransform))
    assert spatial.scaling == (0.5, 1.8) and spatial.p_scaling == 0.6
    colour = {type(getattr(t, "transform", t)) for t in composed.transforms}
    assert {SaturationTransform, ChannelMixTransform} <= colour
    plain = constructed(trainers.nnUNetTrainerTUNet)
    default = plain.get_training_transforms(plain.configuration_manager.patch_size, rotation, None, mirror_axes,
                                            dummy_2d)
    assert next(t for t in default.transforms if isinstance(t, SpatialTransform)).scaling == (0.7, 1.4)


def test_saturation_zero_makes_grey_and_channel_mixing_keeps_grey_grey():
    from nnunet_tongue.training.augmentation import ChannelMixTransform, SaturationTransform

    colour = torch.randn(3, 8, 8)
    grey = SaturationTransform(factor=0.0)(image=colour.clone())["image"]
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])
    assert torch.allclose(ChannelMixTransform(0.3)(image=grey.clone())["image"], grey, atol=1e-6)
    assert not torch.allclose(ChannelMixTransform(0.3)(image=colour.clone())["image"], colour)


def test_unet320_trains_nnunets_network_at_most_320_wide_with_the_plug_in_optimiser(initialised, constructed,
                                                                                     monkeypatch):
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    assert trainers.nnUNetTrainerUNet320.network_options == {"max_features": 320}
    # the synthetic dataset's small patch plans fewer, narrower stages: a lower cap shows the cap at work
    monkeypatch.setattr(trainers.nnUNetTrainerUNet320, "network_options", {"max_features": 32})
    planned = constructed(trainers.nnUNetTrainerAdamW).configuration_manager.configuration["architecture"]
    planned = copy.deepcopy(planned)  # the plans as nnU-Net planned them (trainers write into them)
    trainer = initialised(trainers.nnUNetTrainerUNet320)
    written = trainer.plans_manager.plans["configurations"]["2d"]["architecture"]
    planned_widths = planned["arch_kwargs"]["features_per_stage"]
    assert written["arch_kwargs"]["features_per_stage"] == [min(f, 32) for f in planned_widths]
    assert max(planned_widths) > 32
    assert type(trainer.network) is PlainConvUNet
    assert max(m.out_channels for m in trainer.network.modules() if isinstance(m, torch.nn.Conv2d)) == 32
    rebuilt = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 3, 2, False)
    assert rebuilt.state_dict().keys() == trainer.network.state_dict().keys()
    assert all(rebuilt.state_dict()[k].shape == v.shape for k, v in trainer.network.state_dict().items())
    assert isinstance(trainer.optimizer, GuardedAdamW) and isinstance(trainer.lr_scheduler, WarmupPolyLRScheduler)


def wrapped_training_transforms(trainer) -> list:
    """The trainer's training transforms, as composed (random ones in their RandomTransform)."""
    rotation, dummy_2d, _, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    return trainer.get_training_transforms(trainer.configuration_manager.patch_size, rotation, None,
                                           mirror_axes, dummy_2d).transforms


def training_transforms(trainer) -> list:
    """The trainer's training transforms, each unwrapped from its RandomTransform."""
    return [getattr(t, "transform", t) for t in wrapped_training_transforms(trainer)]


@pytest.mark.parametrize("name", ["nnUNetTrainerTUNetCoatingAug", "nnUNetTrainerAdamWCoatingAug",
                                  "nnUNetTrainerUNet320CoatingAug", "nnUNetTrainerAdamWDarkCoatingAug"])
def test_coating_augmentation_paints_coating_after_the_spatial_transform_on_top_of_photo_augmentation(constructed,
                                                                                                        name):
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

    from nnunet_tongue.training.augmentation import CoatingTransform, SaturationTransform

    transforms = training_transforms(constructed(getattr(trainers, name)))
    kinds = [type(t) for t in transforms]
    spatial = kinds.index(SpatialTransform)
    assert kinds[spatial + 1] is CoatingTransform and SaturationTransform in kinds
    assert transforms[spatial].scaling == (0.5, 1.8)  # the photo augmentation is kept


def test_dark_coating_variant_also_paints_coating_darker_than_the_tongue(constructed):
    from nnunet_tongue.training.augmentation import CoatingTransform

    def lifts(name):
        return next(t.lift for t in training_transforms(constructed(getattr(trainers, name)))
                    if isinstance(t, CoatingTransform))

    assert min(lifts("nnUNetTrainerAdamWCoatingAug")) >= 0 > min(lifts("nnUNetTrainerAdamWDarkCoatingAug"))


def test_frequent_coating_variant_paints_coating_on_twice_the_samples(constructed):
    from nnunet_tongue.training.augmentation import CoatingTransform

    def coating_probability(name):
        return next(t.apply_probability for t in wrapped_training_transforms(constructed(getattr(trainers, name)))
                    if isinstance(getattr(t, "transform", None), CoatingTransform))

    assert coating_probability("nnUNetTrainerUNet320FrequentCoatingAug") == 0.8
    assert coating_probability("nnUNetTrainerUNet320CoatingAug") == 0.4


def test_textured_coating_variant_gives_the_coating_grain_and_cracks_and_the_recipe_does_not(constructed):
    from nnunet_tongue.training.augmentation import CoatingTransform

    def texture(name):
        coating = next(t for t in training_transforms(constructed(getattr(trainers, name)))
                       if isinstance(t, CoatingTransform))
        return coating.papillae, coating.fissures

    papillae, fissures = texture("nnUNetTrainerUNet320TexturedCoatingAug")
    assert min(papillae) > 0 and max(fissures) > 0
    assert texture("nnUNetTrainerUNet320CoatingAug") == (0.0, 0.0)


def test_context_augmentation_zooms_out_onto_a_canvas_before_the_coating_is_painted(constructed):
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

    from nnunet_tongue.training.augmentation import CoatingTransform, ContextCanvasTransform

    kinds = [type(t) for t in training_transforms(constructed(trainers.nnUNetTrainerAdamWContextAug))]
    spatial = kinds.index(SpatialTransform)
    assert kinds[spatial + 1:spatial + 3] == [ContextCanvasTransform, CoatingTransform]


def tongue_sample(height: int = 96, width: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    segmentation = torch.zeros(1, height, width)
    segmentation[0, 20:80, 15:65] = 1  # back of the tongue at row 20, tip at row 79
    return torch.randn(3, height, width), segmentation


def test_coating_is_pale_inside_the_tongue_towards_its_back_and_leaves_the_rest_and_the_mask_alone():
    from nnunet_tongue.training.augmentation import CoatingTransform

    torch.manual_seed(0)
    image, segmentation = tongue_sample()
    coat = CoatingTransform(lift=1.5, yellow=0.0, opacity=1.0, sparsity=0.4)
    draws = [coat(image=image.clone(), segmentation=segmentation.clone()) for _ in range(20)]
    assert all(torch.equal(d["segmentation"], segmentation) for d in draws)
    outside = segmentation[0] == 0
    assert all(torch.equal(d["image"][:, outside], image[:, outside]) for d in draws)
    lift = torch.stack([(d["image"] - image).mean(0) for d in draws]).mean(0)
    back, tip = lift[22:35, 30:50].mean(), lift[70:80, 30:50].mean()
    assert back > 0.8 and back > tip + 0.5  # the back is painted pale, much more than the tip
    channels = torch.stack([d["image"][:, 22:35, 30:50].std(0).mean() for d in draws]).mean()
    assert channels < image[:, 22:35, 30:50].std(0).mean() / 2  # desaturated: channels close together


def test_coating_leaves_a_photo_without_tongue_unchanged():
    from nnunet_tongue.training.augmentation import CoatingTransform

    image, segmentation = tongue_sample()
    coated = CoatingTransform()(image=image.clone(), segmentation=torch.zeros_like(segmentation))
    assert torch.equal(coated["image"], image)


def test_dark_coating_is_darker_than_the_tongue_it_covers():
    from nnunet_tongue.training.augmentation import CoatingTransform

    torch.manual_seed(0)
    image, segmentation = tongue_sample()
    coated = CoatingTransform(lift=-1.0, yellow=0.0, opacity=1.0, sparsity=0.0)(image=image.clone(),
                                                                                segmentation=segmentation)
    assert (coated["image"] - image)[:, 22:35, 30:50].mean() < -0.5


def test_coating_cracks_are_thin_dark_lines_inside_the_tongue_and_papillae_make_it_grainy():
    from nnunet_tongue.training.augmentation import CoatingTransform

    torch.manual_seed(0)
    image, segmentation = tongue_sample()
    image = torch.zeros_like(image)  # a flat photo: any grain or line is the coating's own
    plain, grainy, cracked = (CoatingTransform(lift=1.0, yellow=0.0, opacity=1.0, sparsity=0.0, texture=0.0,
                                               papillae=papillae, fissures=fissures)
                              for papillae, fissures in ((0.0, 0.0), (0.5, 0.0), (0.0, 2.0)))
    back = (slice(None), slice(22, 40), slice(20, 60))

    def painted(transform, seed=0):  # the same seed: the same coating patch, with and without texture
        torch.manual_seed(seed)
        return transform(image=image.clone(), segmentation=segmentation.clone())["image"]

    pixel_to_pixel = [painted(t)[back].diff(dim=-1).abs().mean() for t in (plain, grainy)]
    assert pixel_to_pixel[1] > 0.3 > pixel_to_pixel[0]  # grain: neighbouring pixels differ
    darkened = torch.stack([painted(plain, seed) - painted(cracked, seed) for seed in range(10)])[:, 0]
    assert darkened[:, segmentation[0] == 0].abs().max() == 0  # nothing outside the tongue
    assert 0.02 < (darkened[(slice(None), *back[1:])] > 0.5).float().mean() < 0.4  # thin lines, not a patch


def test_context_canvas_shrinks_the_photo_and_its_mask_into_a_surrounding_labelled_background():
    from nnunet_tongue.training.augmentation import ContextCanvasTransform

    torch.manual_seed(0)
    image, segmentation = tongue_sample()
    for _ in range(10):
        out = ContextCanvasTransform(shrink=0.5)(image=image.clone(), segmentation=segmentation.clone())
        assert out["image"].shape == image.shape and out["segmentation"].shape == segmentation.shape
        assert float(out["segmentation"].sum()) == pytest.approx(float(segmentation.sum()) / 4, rel=0.1)
        rows, cols = torch.nonzero(out["segmentation"][0], as_tuple=True)
        top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        tongue = out["image"][:, top:bottom, left:right]
        expected = torch.nn.functional.interpolate(image[None, :, 20:80, 15:65], size=tongue.shape[1:],
                                                   mode="area")[0]
        assert (tongue - expected).abs().mean() < 0.5  # the photo's own pixels, shrunk (noise averages out)
        outside = torch.ones_like(segmentation[0], dtype=torch.bool)
        outside[max(0, top - 10):bottom + 10, max(0, left - 8):right + 8] = False  # the shrunk photo: 48x40
        assert not torch.equal(out["image"][:, outside], image[:, outside])  # the surrounding is new


def test_context_canvas_leaves_3d_samples_alone():
    from nnunet_tongue.training.augmentation import ContextCanvasTransform

    image, segmentation = torch.randn(1, 8, 16, 16), torch.ones(1, 8, 16, 16)
    out = ContextCanvasTransform()(image=image.clone(), segmentation=segmentation.clone())
    assert torch.equal(out["image"], image) and torch.equal(out["segmentation"], segmentation)


def test_source_balanced_sampling_lists_a_smaller_source_as_often_as_the_largest():
    from nnunet_tongue.training.sampling import balanced_identifiers

    cases = [f"biohit_{i}" for i in range(240)] + [f"ntust_{i}_0" for i in range(441)]
    counts = {s: sum(c.startswith(s + "_") for c in balanced_identifiers(cases)) for s in ("biohit", "ntust")}
    assert counts == {"biohit": 480, "ntust": 441}  # BioHit 52 % of the draws instead of 35 %
    assert balanced_identifiers(["case1", "case2", "case3"]) == ["case1", "case2", "case3"]  # one case per "source"
    assert balanced_identifiers([f"IMG_{i}" for i in range(5)]) == [f"IMG_{i}" for i in range(5)]  # one source


def test_balanced_trainer_draws_each_source_equally_and_validates_each_case_once(constructed, monkeypatch):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    cases = [f"biohit_{i}" for i in range(4)] + [f"ntust_{i}" for i in range(12)]
    monkeypatch.setattr(nnUNetTrainer, "do_split", lambda self: (list(cases), list(cases)))
    train, validation = constructed(trainers.nnUNetTrainerUNet320CoatingAugBalanced).do_split()
    assert sorted(set(train)) == sorted(cases) and validation == cases
    assert sum(c.startswith("biohit_") for c in train) == sum(c.startswith("ntust_") for c in train) == 12
    assert constructed(trainers.nnUNetTrainerUNet320CoatingAug).do_split()[0] == cases  # the recipe it varies


@pytest.mark.parametrize("name", ["nnUNetTrainerTUNet", "nnUNetTrainerUNet320CoatingAug"])
def test_plugin_trainer_on_cpu_keeps_freed_memory_for_the_next_step(constructed, monkeypatch, name):
    calls = []
    monkeypatch.delenv("NNUNET_TONGUE_REUSE_FREED_MEMORY", raising=False)
    monkeypatch.setattr(trainers, "reuse_freed_memory", lambda: calls.append(True) or True)
    constructed(getattr(trainers, name))
    assert calls == [True]


@pytest.mark.parametrize("value", ["0", "off"])
def test_reusing_freed_memory_is_left_off_when_the_user_opts_out(constructed, monkeypatch, value):
    calls = []
    monkeypatch.setenv("NNUNET_TONGUE_REUSE_FREED_MEMORY", value)
    monkeypatch.setattr(trainers, "reuse_freed_memory", lambda: calls.append(True) or True)
    constructed(trainers.nnUNetTrainerTUNet)
    assert calls == []
