"""``nnunet-tongue segment``: outputs, EXIF, odd image modes, failures in a batch, refusal to overwrite.

The model is the session's tiny T-Unet (``trained_tongue_model``, trained on 96x64 synthetic photos);
these tests check behaviour and file contents, not accuracy. It is loaded once for the module.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from nnunet_tongue.photos import list_photos, load_photo
from nnunet_tongue.inference.postprocess import fill_holes, largest_component, postprocess_mask
from nnunet_tongue.inference.segment import OutputExistsError, main, segment_photos
from nnunet_tongue.conversion import CONVERSION_KEY
from nnunet_tongue.inference.segmenter import (
    ModelError,
    TongueSegmenter,
    model_folder_from_dataset,
    training_max_size,
)
from nnunet_tongue.synthetic import make_tongue_photo

#: the tiny model was trained on 96x64 photos: larger test photos are brought to that scale
TRAINING_SIZE = 96


@pytest.fixture(scope="module")
def segmenter(trained_tongue_model) -> TongueSegmenter:
    return TongueSegmenter(trained_tongue_model.model_folder, device="cpu", mirroring=False, postprocess=True,
                           max_size=TRAINING_SIZE)


@pytest.fixture(scope="module")
def photo_rgb() -> np.ndarray:
    rgb, _ = make_tongue_photo(np.random.default_rng(7), 96, 64)
    return rgb


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L"
        arr = np.asarray(im)
    assert set(np.unique(arr)) <= {0, 255}
    return arr


# --- pieces that need no model ---------------------------------------------------------------------------------


def test_postprocess_keeps_largest_component_and_fills_holes():
    mask = np.zeros((40, 40), bool)
    mask[5:30, 5:30] = True
    mask[12:16, 12:16] = False  # a hole
    mask[35:38, 35:38] = True  # a speck
    mask[0:3, 20:25] = False
    out = postprocess_mask(mask)
    assert out[12:16, 12:16].all() and not out[35:38, 35:38].any()
    assert out.sum() == 25 * 25
    assert not largest_component(np.zeros((5, 5), bool)).any()
    ring = np.zeros((9, 9), bool)
    ring[0:5, 0:5] = True
    ring[1:4, 1:4] = False
    assert fill_holes(ring)[2, 2]
    notch = np.ones((5, 5), bool)
    notch[0, 2] = False  # background touching the border is not a hole
    assert not fill_holes(notch)[0, 2]


def test_lab_colour_is_scikit_images():
    from skimage.color import rgb2lab

    from nnunet_tongue.inference.outputs import srgb_to_lab

    pixels = np.concatenate([np.random.default_rng(0).integers(0, 256, (5000, 3)),
                             [[0, 0, 0], [255, 255, 255], [255, 0, 0], [1, 2, 3], [10, 11, 12]]]).astype(np.uint8)
    np.testing.assert_allclose(srgb_to_lab(pixels), rgb2lab(pixels[None] / 255.0)[0], atol=1e-4)


def test_fill_holes_agrees_with_scipys_binary_fill_holes():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for density in (0.3, 0.5, 0.6, 0.7):
        for shape in [(1, 1), (1, 9), (37, 53), (120, 90)]:
            mask = rng.random(shape) < density
            assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask)), (density, shape)
    diagonal = np.ones((5, 5), bool)
    diagonal[2, 2] = diagonal[1, 1] = False
    diagonal[0, 0] = False  # touches the hole only diagonally: the hole stays a hole (4-connected background)
    assert fill_holes(diagonal)[2, 2] and fill_holes(diagonal)[1, 1] and not fill_holes(diagonal)[0, 0]


def test_list_photos_natural_order_and_suffixes(tmp_path):
    for name in ("10.jpg", "2.PNG", "1.jpeg", "notes.txt", "3.webp", "4.tif", "5.bmp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_photos([tmp_path])] == ["1.jpeg", "2.PNG", "3.webp", "4.tif", "5.bmp", "10.jpg"]
    assert [p.name for p in list_photos([tmp_path / "notes.txt", tmp_path / "10.jpg", tmp_path])][:2] == \
        ["notes.txt", "10.jpg"]
    with pytest.raises(FileNotFoundError, match=r"missing\.jpg \(check the path; give photos or folders of photos"):
        list_photos([tmp_path / "missing.jpg"])


def test_load_photo_modes(tmp_path, photo_rgb):
    grey = Image.fromarray(photo_rgb).convert("L")
    grey.save(tmp_path / "g.png")
    arr, _ = load_photo(tmp_path / "g.png")
    assert arr.shape == (64, 96, 3) and (arr[..., 0] == arr[..., 2]).all()
    Image.fromarray((np.asarray(grey).astype(np.uint16) * 257)).save(tmp_path / "g16.png")
    arr16, _ = load_photo(tmp_path / "g16.png")
    assert np.abs(arr16[..., 0].astype(int) - np.asarray(grey)).max() <= 1
    rgba = np.dstack([photo_rgb, np.full(photo_rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "a.png")
    arr, orientation = load_photo(tmp_path / "a.png")
    assert np.array_equal(arr, photo_rgb) and orientation == 1  # alpha dropped, as convert does


def test_scale_rules(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {}, CONVERSION_KEY: {"max_size": 512}}))
    assert training_max_size(tmp_path) == 512
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {}, CONVERSION_KEY: {"max_size": None}}))
    assert training_max_size(tmp_path) is None
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {}}))
    assert training_max_size(tmp_path) is None


def test_refuses_to_overwrite_up_front(tmp_path, photo_rgb, capsys):
    """Clashes are found before any model is loaded; nothing is touched."""
    Image.fromarray(photo_rgb).save(tmp_path / "a.jpg")
    Image.fromarray(photo_rgb).save(tmp_path / "b.jpg")
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    (out / "masks" / "b.png").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError) as info:
        segment_photos([tmp_path / "a.jpg", tmp_path / "b.jpg"], out, lambda: TongueSegmenter(tmp_path / "no-model"))
    assert info.value.clashes == [out / "masks" / "b.png"]
    assert main(["-i", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), "-o", str(out), "-m",
                 str(tmp_path / "no-model"), "--no-progress"]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (out / "masks" / "b.png").read_bytes() == b"keep me"
    assert not (out / "segment.jsonl").exists()


def test_same_name_in_two_folders_is_refused(tmp_path, photo_rgb):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        Image.fromarray(photo_rgb).save(tmp_path / sub / "IMG_0001.jpg")
    with pytest.raises(ValueError, match="IMG_0001"):
        segment_photos([tmp_path / "x", tmp_path / "y"], tmp_path / "out", lambda: TongueSegmenter(tmp_path))


def test_unusable_model_folder_is_reported(tmp_path):
    with pytest.raises(ModelError, match="plans.json"):
        TongueSegmenter(tmp_path, device="cpu")


# --- with the tiny trained model -------------------------------------------------------------------------------


def test_in_process_input_matches_nnunet_reader(segmenter, trained_tongue_model):
    """The array path predicts what nnU-Net's own predictor predicts for the PNG NaturalImage2DIO reads."""
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    png = sorted((trained_tongue_model.raw_dataset / "imagesTs").glob("*.png"))[0]
    data, props = NaturalImage2DIO().read_images([str(png)])
    predictor = nnUNetPredictor(use_mirroring=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(trained_tongue_model.model_folder), segmenter.folds)
    reference = predictor.predict_single_npy_array(data, props, None, None, False)[0] > 0
    photo, _ = load_photo(png)
    ours = segmenter.predict(photo).probability >= 0.5
    assert (ours != reference).sum() <= 0.001 * ours.size  # nnU-Net accumulates logits in float16


def test_outputs_and_jsonl(segmenter, tmp_path, photo_rgb):
    Image.fromarray(photo_rgb).save(tmp_path / "tongue.jpg", quality=95)
    report = segment_photos([tmp_path / "tongue.jpg"], tmp_path / "out", segmenter, progress=False)
    assert report.ok and len(report.records) == 1
    out = tmp_path / "out"
    (record,) = _jsonl(out / "segment.jsonl")
    assert record == report.records[0]
    mask = _mask(out / record["mask"]) > 0
    assert mask.shape == (64, 96)
    assert record["tongue_area_px"] == mask.sum() > 0
    assert record["tongue_area_fraction"] == pytest.approx(mask.mean(), abs=1e-5)
    box = record["bbox"]
    rows, cols = np.nonzero(mask)
    assert (box["x"], box["y"]) == (cols.min(), rows.min())
    assert (box["width"], box["height"]) == (cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
    assert len(record["mean_rgb"]) == 3 and len(record["mean_lab"]) == 3 and 0 <= record["mean_lab"][0] <= 100
    with Image.open(out / record["cutout"]) as cut:
        assert cut.mode == "RGBA" and cut.size == (box["width"], box["height"])
        alpha = np.asarray(cut)[..., 3]
    crop = mask[box["y"]:box["y"] + box["height"], box["x"]:box["x"] + box["width"]]
    assert np.array_equal(alpha > 0, crop)
    with Image.open(out / record["overlay"]) as overlay:
        assert overlay.size == (96, 64)


def test_exif_rotated_jpeg_gives_mask_in_displayed_orientation(segmenter, tmp_path, photo_rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees clockwise (portrait)
    Image.fromarray(photo_rgb).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    report = segment_photos([tmp_path / "phone.jpg"], tmp_path / "out", segmenter, progress=False)
    record = report.records[0]
    assert (record["width"], record["height"], record["exif_orientation"]) == (64, 96, 6)
    mask = _mask(tmp_path / "out" / record["mask"]) > 0
    assert mask.shape == (96, 64)
    displayed, _ = load_photo(tmp_path / "phone.jpg")
    assert displayed.shape == (96, 64, 3)
    assert np.array_equal(mask, segmenter.segment(displayed))
    with Image.open(tmp_path / "out" / record["overlay"]) as overlay:
        assert overlay.size == (64, 96)


@pytest.mark.parametrize("kind", ["grey.png", "rgba.png", "photo.bmp", "photo.tif", "photo.webp"])
def test_greyscale_rgba_and_formats(segmenter, tmp_path, photo_rgb, kind):
    im = Image.fromarray(photo_rgb)
    if kind.startswith("grey"):
        im = im.convert("L")
    elif kind.startswith("rgba"):
        im = im.convert("RGBA")
    im.save(tmp_path / kind)
    report = segment_photos([tmp_path], tmp_path / "out", segmenter, progress=False)
    assert report.ok and len(report.records) == 1
    assert _mask(tmp_path / "out" / "masks" / f"{Path(kind).stem}.png").shape == (64, 96)


def test_large_photo_is_brought_to_training_scale(segmenter, tmp_path):
    rgb, _ = make_tongue_photo(np.random.default_rng(3), 400, 300)
    Image.fromarray(rgb).resize((4000, 3000), Image.Resampling.BILINEAR).save(tmp_path / "big.jpg", quality=90)
    report = segment_photos([tmp_path / "big.jpg"], tmp_path / "out", segmenter, progress=False)
    record = report.records[0]
    assert (record["inference_width"], record["inference_height"]) == (96, 72)
    assert _mask(tmp_path / "out" / "masks" / "big.png").shape == (3000, 4000)


def test_cli_corrupt_photo_in_batch(trained_tongue_model, tmp_path, photo_rgb, monkeypatch, capsys):
    """Bad files are named, the good ones are done, exit status 1; model given as -d/-tr/-c/-f."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(photo_rgb).save(photos / "good1.jpg", quality=95)
    Image.fromarray(photo_rgb[::-1]).save(photos / "good2.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    whole = (photos / "good1.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    monkeypatch.setenv("nnUNet_results", str(trained_tongue_model.results_root))
    out = tmp_path / "out"
    code = main(["-i", str(photos), "-o", str(out), "-d", str(trained_tongue_model.dataset_id),
                 "-tr", trained_tongue_model.trainer, "-p", trained_tongue_model.plans,
                 "-c", trained_tongue_model.configuration, "-f", str(trained_tongue_model.fold),
                 "-device", "cpu", "--no-progress", "--max-size", str(TRAINING_SIZE)])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.jpg" in err and "truncated.jpg" in err
    records = {r["name"]: r for r in _jsonl(out / "segment.jsonl")}
    assert {n for n, r in records.items() if r["status"] == "ok"} == {"good1", "good2"}
    assert {n for n, r in records.items() if r["status"] == "failed"} == {"broken", "truncated"}
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["good1.png", "good2.png"]


def test_model_folder_from_dataset(trained_tongue_model):
    t = trained_tongue_model
    assert model_folder_from_dataset(t.dataset_id, t.trainer, t.plans, t.configuration,
                                     results_root=t.results_root) == t.model_folder
    with pytest.raises(ModelError, match="trained models there"):
        model_folder_from_dataset(t.dataset_id, "nnUNetTrainerNope", results_root=t.results_root)


@pytest.mark.realdata
def test_biohit_photos(segmenter, shared_data, tmp_path):
    photos = [shared_data / "biohit" / "images" / f"{n}.jpg" for n in (1, 2)]
    report = segment_photos(photos, tmp_path / "out", segmenter, progress=False)
    assert report.ok and [r["name"] for r in report.records] == ["1", "2"]
    for record in report.records:
        assert (record["width"], record["height"]) == (768, 576)
        assert _mask(tmp_path / "out" / record["mask"]).shape == (576, 768)
        with Image.open(tmp_path / "out" / record["overlay"]) as overlay:
            assert overlay.size == (768, 576)
        assert (tmp_path / "out" / record["cutout"]).is_file()


def test_model_folder_copy_reads_training_scale(trained_tongue_model, tmp_path):
    """A model whose dataset was downscaled at conversion brings photos to that scale by default."""
    folder = tmp_path / trained_tongue_model.model_folder.name
    shutil.copytree(trained_tongue_model.model_folder, folder)
    dataset = json.loads((folder / "dataset.json").read_text())
    dataset[CONVERSION_KEY] = {"max_size": 48}
    (folder / "dataset.json").write_text(json.dumps(dataset))
    seg = TongueSegmenter(folder, device="cpu")
    assert seg.max_size == 48 and seg.folds == [trained_tongue_model.fold]
    rgb, _ = make_tongue_photo(np.random.default_rng(1), 96, 64)
    prediction = seg.predict(rgb)
    assert prediction.inference_shape == (32, 48) and prediction.probability.shape == (64, 96)


def test_a_size_recorded_for_segmenting_is_the_default_and_an_explicit_size_overrides_it(trained_tongue_model,
                                                                                         tmp_path):
    """A model may record a larger size to be fed at than its training photos had (the bundled model does)."""
    folder = tmp_path / trained_tongue_model.model_folder.name
    shutil.copytree(trained_tongue_model.model_folder, folder)
    dataset = json.loads((folder / "dataset.json").read_text())
    dataset[CONVERSION_KEY] = {"max_size": 48, "segment_max_size": 64}
    (folder / "dataset.json").write_text(json.dumps(dataset))
    seg = TongueSegmenter(folder, device="cpu", rescale=False)
    rgb, _ = make_tongue_photo(np.random.default_rng(1), 384, 288)  # sharp: no quality flag (test_quality.py)
    assert seg.max_size == 64 and seg.predict(rgb).inference_shape == (48, 64)
    assert TongueSegmenter(folder, device="cpu", max_size=48).max_size == 48


def test_a_blurred_photo_gets_the_training_size_unless_a_size_is_given(trained_tongue_model, tmp_path):
    """Fed larger, a blurred photo's blur would grow beyond what the model saw in training, with no detail to gain."""
    folder = tmp_path / trained_tongue_model.model_folder.name
    shutil.copytree(trained_tongue_model.model_folder, folder)
    dataset = json.loads((folder / "dataset.json").read_text())
    dataset[CONVERSION_KEY] = {"max_size": 48, "segment_max_size": 64}
    (folder / "dataset.json").write_text(json.dumps(dataset))
    rgb, _ = make_tongue_photo(np.random.default_rng(1), 384, 288)
    blurred = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(6)))
    assert TongueSegmenter(folder, device="cpu", rescale=False).predict(blurred).inference_shape == (36, 48)
    given = TongueSegmenter(folder, device="cpu", rescale=False, max_size=64)
    assert given.predict(blurred).inference_shape == (48, 64)


# --- model folders: what they record -----------------------------------------------------------------------------


def test_model_folder_records_its_network_so_later_defaults_cannot_change_it(trained_tongue_model, monkeypatch,
                                                                              photo_rgb):
    from nnunet_tongue.networks import from_plans
    from nnunet_tongue.training.trainers import nnUNetTrainerTUNet

    plans = json.loads((trained_tongue_model.model_folder / "plans.json").read_text())
    recorded = plans["configurations"]["2d"]["architecture"]
    assert recorded["network_class_name"] == "nnunet_tongue.networks.tunet.TransformerUNet"
    assert {k: recorded["arch_kwargs"][k] for k in ("embed_dim", "depth", "num_heads")} == \
        {"embed_dim": 512, "depth": 6, "num_heads": 8}
    reference = TongueSegmenter(trained_tongue_model.model_folder, device="cpu").predict(photo_rgb).probability
    # a later release with other defaults and another T-Unet recipe
    later = dict(from_plans.tunet_defaults(), embed_dim=256, depth=2, num_heads=4, mlp_ratio=2.0)
    monkeypatch.setattr(from_plans, "tunet_defaults", lambda: dict(later))
    monkeypatch.setattr(nnUNetTrainerTUNet, "network_options", {"depth": 3, "embed_dim": 128})
    again = TongueSegmenter(trained_tongue_model.model_folder, device="cpu").predict(photo_rgb).probability
    assert np.array_equal(reference, again)


def test_model_folder_written_before_0_2_still_predicts(trained_tongue_model, tmp_path, photo_rgb):
    """0.1 model folders kept nnU-Net's default PlainConvUNet entry in plans.json and a T-Unet whose position
    embedding was learnt at the planned patch's token grid."""
    import shutil

    import torch

    from nnunet_tongue.networks.from_plans import build_from_architecture, legacy_architecture

    old = tmp_path / trained_tongue_model.model_folder.name
    shutil.copytree(trained_tongue_model.model_folder, old, ignore=shutil.ignore_patterns("validation"))
    default_plans = trained_tongue_model.nnunet.preprocessed / "Dataset999_SyntheticTongue" / "nnUNetPlans.json"
    default_entry = json.loads(default_plans.read_text())["configurations"]["2d"]["architecture"]
    plans = json.loads((old / "plans.json").read_text())
    plans["configurations"]["2d"]["architecture"] = default_entry
    (old / "plans.json").write_text(json.dumps(plans))
    patch = plans["configurations"]["2d"]["patch_size"]
    network_of_0_1 = build_from_architecture(legacy_architecture("TUNet", default_entry, patch))
    checkpoint = torch.load(old / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    checkpoint["network_weights"] = network_of_0_1.state_dict()
    torch.save(checkpoint, old / "fold_0" / "checkpoint_final.pth")

    segmenter = TongueSegmenter(old, device="cpu")
    grid = [p // 16 for p in patch]
    assert segmenter.predictor.network.transformer.pos_embed.shape == (1, grid[0] * grid[1], 512)
    assert segmenter.segment(photo_rgb).shape == photo_rgb.shape[:2]


# --- scale: a second pass brings the tongue to the training tongues' size ------------------------------------------


def _with_tongue_extent(model_folder: Path, tmp_path: Path, extent: dict) -> Path:
    import shutil

    folder = tmp_path / model_folder.name
    shutil.copytree(model_folder, folder, ignore=shutil.ignore_patterns("validation"))
    dataset = json.loads((folder / "dataset.json").read_text())
    dataset[CONVERSION_KEY] = {"max_size": TRAINING_SIZE, "tongue_extent_px": extent}
    (folder / "dataset.json").write_text(json.dumps(dataset))
    return folder


def _extent(segmenter: TongueSegmenter, photo: np.ndarray) -> float:
    mask = segmenter.predict(photo).mask
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return float(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)


@pytest.mark.parametrize("times, shape", [(0.5, (32, 48)), (2.0, (64, 96))])
def test_tongue_outside_the_training_range_is_segmented_again_at_the_training_size(trained_tongue_model, tmp_path,
                                                                                   segmenter, photo_rgb, times, shape):
    """Recorded training tongues half (twice) as large as this one: a second pass on the photo shrunk to half
    (on a window around the tongue, enlarged twice)."""
    found = _extent(segmenter, photo_rgb)
    extent = {"p5": 0.9 * times * found, "median": times * found, "p95": 1.1 * times * found}
    folder = _with_tongue_extent(trained_tongue_model.model_folder, tmp_path, extent)
    rescaling = TongueSegmenter(folder, device="cpu", max_size=TRAINING_SIZE)
    prediction = rescaling.predict(photo_rgb)
    assert prediction.rescale_factor == pytest.approx(times, rel=0.02)
    assert prediction.inference_shape == shape
    assert prediction.mask.shape == photo_rgb.shape[:2] and prediction.mask.any()


def test_tongue_within_the_training_range_is_segmented_once(trained_tongue_model, tmp_path, segmenter, photo_rgb):
    found = _extent(segmenter, photo_rgb)
    folder = _with_tongue_extent(trained_tongue_model.model_folder, tmp_path,
                                 {"p5": 0.8 * found, "median": found, "p95": 1.2 * found})
    prediction = TongueSegmenter(folder, device="cpu", max_size=TRAINING_SIZE).predict(photo_rgb)
    assert prediction.rescale_factor == 1.0
    assert np.array_equal(prediction.mask, segmenter.predict(photo_rgb).mask)
    assert not TongueSegmenter(folder, device="cpu", max_size=TRAINING_SIZE, rescale=False).rescale
