"""The converter on the real BioHit photos (../shared/data beside the checkout); skips when they are absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA
from nnunet_tongue.conversion.convert import convert_dataset

DATA = SHARED_DATA
#: upstream masks with tongue = 0 and background = 255
INVERTED = {"266", "278", "284"}
#: upstream masks with stray 1-3 px specks away from the tongue
SPECKED = {"112", "267", "285", "289"}

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not (DATA / "biohit" / "images").is_dir(),
                       reason=f"real BioHit data not found at {DATA} (../shared/data beside the checkout)"),
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """BioHit converted with the benchmark split's test ids held out as imagesTs/labelsTs."""
    return convert_dataset(DATA / "biohit", tmp_path_factory.mktemp("raw"), split_json=DATA / "biohit_split.json",
                           progress=False)


def test_split_test_ids_become_imagesTs_and_labelsTs(converted):
    split = json.loads((DATA / "biohit_split.json").read_text())
    folder = converted.dataset_folder
    assert sorted(p.name[: -len("_0000.png")] for p in (folder / "imagesTs").iterdir()) == sorted(split["test"])
    assert sorted(p.stem for p in (folder / "labelsTr").iterdir()) == sorted(split["train"])
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == len(split["train"])


def test_upstream_inverted_masks_are_caught_and_fixed(converted):
    assert {c.case_id for c in converted.cases if c.inverted} == INVERTED
    for case in INVERTED:
        written = next(converted.dataset_folder.glob(f"labels*/{case}.png"))
        mask = np.asarray(Image.open(written))
        assert mask.mean() < 0.3 and not mask[0].any() and not mask[:, 0].any()


def test_upstream_specks_are_reported_and_nothing_else(converted):
    assert {c.case_id for c in converted.cases if c.specks} == SPECKED
    assert not converted.errors and len(converted.warnings) == len(INVERTED) + len(SPECKED)


def test_nnunet_integrity_check_passes(converted):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(converted.dataset_folder), 2)
