"""Plug-in planners: which preprocessed data their plans point at."""

from __future__ import annotations

import pytest

from nnunet_tongue.planning.planners import nnUNetTongueTUNetPlanner


@pytest.mark.parametrize("settings, data_identifier", [
    ({}, "nnUNetPlans_2d"),
    ({"overwrite_target_spacing": [1.0, 2.0, 2.0]}, "nnUNetTongueTUNetPlans_2d"),
    ({"preprocessor_name": "MyPreprocessor"}, "nnUNetTongueTUNetPlans_2d"),
    ({"suppress_transpose": True}, "nnUNetTongueTUNetPlans_2d"),
])
def test_default_plans_data_is_reused_only_when_preprocessing_is_the_default(planned_synthetic, monkeypatch,
                                                                             settings, data_identifier):
    monkeypatch.setenv("nnUNet_raw", str(planned_synthetic.raw))
    monkeypatch.setenv("nnUNet_preprocessed", str(planned_synthetic.preprocessed))
    planner = nnUNetTongueTUNetPlanner(999, **settings)
    assert planner.generate_data_identifier("2d") == data_identifier
    assert planner.generate_data_identifier("3d_lowres") == "nnUNetTongueTUNetPlans_3d_lowres"
