"""Quality flags: each raised by the photo it describes, and not by a good photo of a tongue."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from nnunet_tongue.inference.quality import FLAGS, draw_flags, photo_sharpness, quality
from nnunet_tongue.synthetic import make_tongue_photo


@pytest.fixture(scope="module")
def good() -> tuple[np.ndarray, np.ndarray]:
    """A sharp, normally lit synthetic photo and its tongue mask (as a confident probability)."""
    rgb, mask = make_tongue_photo(np.random.default_rng(1), 384, 288)
    return rgb, mask.astype(bool)


def flags(photo, mask, probability=None) -> list[str]:
    probability = mask.astype(np.float32) if probability is None else probability
    return quality(photo, probability, mask)["flags"]


def test_a_good_photo_raises_no_flag(good):
    assert flags(*good) == []


def test_no_tongue(good):
    photo, mask = good
    assert flags(photo, np.zeros_like(mask)) == ["no_tongue"]


def test_cut_by_border(good):
    photo, mask = good
    moved = np.zeros_like(mask)
    moved[mask.shape[0] // 2:] = mask[: mask.shape[0] - mask.shape[0] // 2]  # the tongue's lower half leaves the frame
    shown = moved.copy()
    shown[-1] |= moved[-2]
    assert "cut_by_border" in flags(photo, shown)


def test_several_regions(good):
    photo, mask = good
    probability = mask.astype(np.float32)
    probability[5:60, 5:80] = 1.0  # a second tongue-coloured region, 2000+ px
    assert "several_regions" in flags(photo, mask, probability)
    probability = mask.astype(np.float32)
    probability[5:8, 5:8] = 1.0  # a speck is no second region
    assert "several_regions" not in flags(photo, mask, probability)


@pytest.mark.parametrize("fraction", [0.005, 0.9])
def test_area_implausible(good, fraction):
    photo, _ = good
    mask = np.zeros(photo.shape[:2], bool)
    side = int(np.sqrt(fraction * mask.size))
    top, left = (mask.shape[0] - min(side, mask.shape[0] - 2)) // 2, (mask.shape[1] - side) // 2
    mask[top:top + min(side, mask.shape[0] - 2), left:left + side] = True
    mask[:, :1] = mask[:, -1:] = False
    assert "area_implausible" in flags(photo, mask)


def test_low_confidence(good):
    photo, mask = good
    probability = np.where(mask, 0.6, 0.4).astype(np.float32)  # everything near the fence
    assert "low_confidence" in flags(photo, mask, probability)


@pytest.mark.parametrize("factor, flag", [(0.1, "too_dark"), (4.0, "too_bright")])
def test_exposure(good, factor, flag):
    photo, mask = good
    exposed = np.clip(photo.astype(np.float32) * factor, 0, 255).astype(np.uint8)
    assert flag in flags(exposed, mask)


def test_blurred(good):
    photo, mask = good
    blurred = np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(3)))
    assert "blurred" in flags(blurred, mask)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (8, 6)])
def test_a_photo_too_small_to_show_detail_is_flagged_blurred_with_finite_measures(size):
    photo, mask = np.full((*size, 3), 128, np.uint8), np.zeros(size, bool)
    found = quality(photo, mask.astype(np.float32), mask)
    assert "blurred" in found["flags"]
    assert all(np.isfinite(v) for v in found["measures"].values())  # segment.jsonl holds no NaN


def test_a_dark_photo_is_not_taken_for_a_blurred_one(good):
    photo, mask = good
    dark = (photo * 0.25).astype(np.uint8)
    assert quality(dark, mask.astype(np.float32), mask)["measures"]["sharpness"] == pytest.approx(
        quality(photo, mask.astype(np.float32), mask)["measures"]["sharpness"], rel=0.05)
    assert "blurred" not in flags(dark, mask)


def with_sensor_noise(photo: np.ndarray, sigma: float = 12.0) -> np.ndarray:
    """``photo`` with Gaussian noise of ``sigma`` grey levels per channel (a high-ISO phone photo)."""
    noisy = photo.astype(np.float64) + np.random.default_rng(0).normal(0, sigma, photo.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def out_of_focus(photo: np.ndarray, fraction: float = 0.005) -> np.ndarray:
    """``photo`` under a Gaussian blur of ``fraction`` of its longest side."""
    return np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(fraction * max(photo.shape[:2]))))


def test_blurred_under_sensor_noise(good):
    photo, mask = good
    for fraction in (0.005, 0.015):
        assert "blurred" in flags(with_sensor_noise(out_of_focus(photo, fraction)), mask), fraction


def test_a_noisy_photo_is_not_taken_for_a_blurred_one(good):
    photo, mask = good
    assert "blurred" not in flags(with_sensor_noise(photo), mask)


def test_sharpness_measured_before_segmenting_gives_the_same_measures_and_flags(good):
    photo, mask = good
    blurred = out_of_focus(photo, 0.015)
    for image in (photo, blurred):
        assert quality(image, mask.astype(np.float32), mask, photo_sharpness(image)) == quality(
            image, mask.astype(np.float32), mask)


def photo_flags(photo: np.ndarray) -> list[str]:
    return quality(photo, np.zeros(photo.shape[:2], np.float32), np.zeros(photo.shape[:2], bool))["flags"]


@pytest.fixture(scope="module")
def real_photos(shared_data) -> dict:
    """The first 20 photos of each source, by file name."""
    return {path: np.asarray(Image.open(path).convert("RGB")) for source in ("biohit", "ntust")
            for path in sorted((shared_data / source / "images").glob("*.jpg"))[:20]}


def test_real_photos_are_not_flagged_blurred_or_badly_exposed(real_photos):
    for path, photo in real_photos.items():
        assert photo_flags(photo) == ["no_tongue"], path


def test_real_photos_under_exposed_are_not_flagged_blurred(real_photos):
    for path, photo in real_photos.items():
        dark = (photo * 0.4).astype(np.uint8)  # about 3 stops under
        assert "blurred" not in photo_flags(dark), path


@pytest.mark.parametrize("fraction", [0.005, 0.015])
def test_real_photos_out_of_focus_are_flagged_blurred_with_or_without_sensor_noise(real_photos, fraction):
    for path, photo in real_photos.items():
        blurred = out_of_focus(photo, fraction)
        assert "blurred" in photo_flags(blurred), path
        assert "blurred" in photo_flags(with_sensor_noise(blurred)), path


def test_real_photos_with_sensor_noise_are_not_flagged_blurred(real_photos):
    for path, photo in real_photos.items():
        assert "blurred" not in photo_flags(with_sensor_noise(photo)), path


def test_flags_are_written_on_the_overlay(good):
    photo, _ = good
    plain = Image.fromarray(photo)
    drawn = draw_flags(plain.copy(), ["blurred", "too_dark"])
    difference = np.abs(np.asarray(drawn, np.int16) - np.asarray(plain, np.int16)).sum(axis=2) > 0
    assert difference[: plain.height // 3, : plain.width // 2].any() and not difference[plain.height // 2:].any()
    assert set(FLAGS) >= {"blurred", "too_dark"}
