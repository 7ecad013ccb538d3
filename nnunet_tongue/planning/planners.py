"""Experiment planners that size patch and batch with the plug-in network's own memory estimate.

nnU-Net's planner shrinks the patch until its VRAM proxy (activation elements of one sample,
``compute_conv_feature_map_size``) fits a reference scaled to ``gpu_memory_target_in_gb``, then picks
the batch size from the same proxy. These planners keep nnU-Net's topology search (spacing, pooling,
kernels) but evaluate the proxy on the network that will actually be trained (for T-Unet: attention
included), and write that network into the plans, so stock ``nnUNetv2_train ... -p <plans>`` and
``nnUNetv2_predict ... -p <plans>`` use it. Preprocessed data is shared with ``nnUNetPlans``.
"""

from __future__ import annotations

from typing import List, Tuple, Union

from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

from nnunet_tongue.networks.from_plans import architecture_for


class TonguePlanner(ExperimentPlanner):
    """Base: plans for the plug-in network named by :attr:`network` (a key of ``from_plans.NETWORKS``)."""

    network = "TUNet"

    def __init__(self, dataset_name_or_id: Union[str, int], gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: str | None = None,
                 overwrite_target_spacing: Union[List[float], Tuple[float, ...]] = None,
                 suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name,
                         plans_name or f"nnUNetTongue{self.network}Plans", overwrite_target_spacing,
                         suppress_transpose)

    def generate_data_identifier(self, configuration_name: str) -> str:
        """Reuse ``nnUNetPlans``' preprocessed 2d / 3d_fullres data when this planner preprocesses exactly as
        nnU-Net's default planner does (default preprocessor, target spacing and axis order); otherwise, like
        nnU-Net, ``<plans identifier>_<configuration>``."""
        identical = (self.preprocessor_name == "DefaultPreprocessor" and self.overwrite_target_spacing is None
                     and not self.suppress_transpose)
        if identical and configuration_name in ("2d", "3d_fullres"):
            return f"nnUNetPlans_{configuration_name}"
        return super().generate_data_identifier(configuration_name)

    def static_estimate_VRAM_usage(self, patch_size, input_channels, output_channels, arch_class_name,
                                   arch_kwargs, arch_kwargs_req_import):
        """nnU-Net's estimate, evaluated on this planner's network instead of the PlainConvUNet."""
        arch = architecture_for(self.network, {"network_class_name": arch_class_name, "arch_kwargs": arch_kwargs,
                                               "_kw_requires_import": arch_kwargs_req_import}, patch_size)
        return ExperimentPlanner.static_estimate_VRAM_usage(patch_size, input_channels, output_channels,
                                                            arch["network_class_name"], arch["arch_kwargs"],
                                                            arch["_kw_requires_import"])

    def get_plans_for_configuration(self, spacing, median_shape, data_identifier, approximate_n_voxels_dataset,
                                    _cache: dict) -> dict:
        plan = super().get_plans_for_configuration(spacing, median_shape, data_identifier,
                                                   approximate_n_voxels_dataset, _cache)
        plan["architecture"] = architecture_for(self.network, plan["architecture"], plan["patch_size"])
        return plan


class nnUNetTongueTUNetPlanner(TonguePlanner):
    """Plans ``nnUNetTongueTUNetPlans`` for the Transformer-UNet."""

    network = "TUNet"


class nnUNetTongueResUNetPlanner(TonguePlanner):
    """Plans ``nnUNetTongueResUNetPlans`` for the residual U-Net."""

    network = "ResUNet"


class nnUNetTongueFabiansUNetPlanner(TonguePlanner):
    """Plans ``nnUNetTongueFabiansUNetPlans`` for FabiansUNet."""

    network = "FabiansUNet"


#: ``-pl`` names the plug-in command accepts, with short aliases
PLANNERS = {cls.__name__: cls for cls in (nnUNetTongueTUNetPlanner, nnUNetTongueResUNetPlanner,
                                          nnUNetTongueFabiansUNetPlanner)}
PLANNERS.update(TUNet=nnUNetTongueTUNetPlanner, ResUNet=nnUNetTongueResUNetPlanner,
                FabiansUNet=nnUNetTongueFabiansUNetPlanner)
