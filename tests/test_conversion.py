"""Specification of ``nnunet-tongue convert`` (nnunet_tongue/conversion/): small photos and masks made in tmp_path."""

from __future__ import annotations

import base64
import csv
import fcntl
import io
import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnunet_tongue.conversion import cases as conversion_cases
from nnunet_tongue.conversion import convert as conversion_convert
from nnunet_tongue.conversion.convert import ConversionError, Interrupted, OutputError, convert_dataset, main
from nnunet_tongue.photos import scaled_size
from nnunet_tongue.conversion.masks import looks_inverted
from nnunet_tongue.conversion.naming import case_id
from nnunet_tongue.conversion import CONVERSION_KEY
from nnunet_tongue.conversion.output import CASES_CSV, CSV_COLUMNS, REPORT_JSON, REPORT_TXT

REPO = Path(__file__).resolve().parents[1]
W, H = 64, 48
DATASET = "Dataset501_Tongue"


# ---------------------------------------------------------------- helpers: photos, masks, layouts


def photo(w: int = W, h: int = H, seed: int = 0) -> np.ndarray:
    """A smooth colour photo (JPEG-friendly)."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, 3)
    return np.clip(base + np.stack([xx, yy, xx + yy], -1), 0, 255).astype(np.uint8)


def tongue(w: int = W, h: int = H) -> np.ndarray:
    """An ellipse in the lower middle, away from the image border (tongue = True)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - w / 2) / (w * 0.25)) ** 2 + ((yy - h * 0.55) / (h * 0.3)) ** 2 < 1


def save(array_or_image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    im.save(path, **kwargs)
    return path


def paired(root: Path, stems=("a", "b", "c", "d"), masks_folder: str = "masks") -> Path:
    """``root/images/<stem>.jpg`` + ``root/<masks_folder>/<stem>.png`` (0/255)."""
    for i, stem in enumerate(stems):
        save(photo(seed=i), root / "images" / f"{stem}.jpg", quality=95)
        save(tongue().astype(np.uint8) * 255, root / masks_folder / f"{stem}.png")
    return root


def convert(source, tmp_path: Path, **kwargs):
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("progress", False)
    return convert_dataset(source, tmp_path / "raw", **kwargs)


def failure(source, tmp_path: Path, **kwargs):
    """The report of a conversion that must fail."""
    with pytest.raises(ConversionError) as info:
        convert(source, tmp_path, **kwargs)
    return info.value.report


def messages(problems) -> str:
    return "\n".join(str(p) for p in problems)


def label(tmp_path: Path, case: str, subset: str = "Tr") -> np.ndarray:
    return np.asarray(Image.open(tmp_path / "raw" / DATASET / f"labels{subset}" / f"{case}.png"))


def csv_rows(tmp_path: Path) -> dict[str, dict]:
    with open(tmp_path / "raw" / DATASET / CASES_CSV, newline="", encoding="utf-8") as f:
        return {row["case_id"]: row for row in csv.DictReader(f)}


def labelme_json(path: Path, polygons, image_path: str | None, image_data: bytes | None = None, w: int = W,
                 h: int = H) -> Path:
    shapes = [{"label": name, "points": points, "group_id": None, "shape_type": "polygon", "flags": {}}
              for name, points in polygons]
    doc = {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": base64.b64encode(image_data).decode() if image_data else None,
        "imageHeight": h,
        "imageWidth": w,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


TONGUE_POLYGON = [[20, 15], [44, 15], [48, 30], [32, 42], [16, 30]]


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def rgb16_png(array16: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write those)."""
    h, w, _ = array16.shape
    raw = b"".join(b"\x00" + array16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def with_exif_orientation(array: np.ndarray, path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(array, path, exif=exif, quality=95)


# ---------------------------------------------------------------- output: an nnU-Net raw dataset


def test_paired_folders_become_an_nnunet_raw_dataset(tmp_path):
    report = convert(paired(tmp_path / "src"), tmp_path)
    folder = tmp_path / "raw" / DATASET
    assert report.dataset_folder == folder and report.layout == "paired" and not report.warnings
    image = np.asarray(Image.open(folder / "imagesTr" / "a_0000.png"))
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert set(np.unique(label(tmp_path, "a"))) == {0, 1}
    assert np.array_equal(label(tmp_path, "a"), tongue())
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["a.png", "b.png", "c.png", "d.png"]


def test_dataset_json_is_nnunets_with_the_conversion_key(tmp_path):
    convert(paired(tmp_path / "src"), tmp_path, max_size=32)
    meta = json.loads((tmp_path / "raw" / DATASET / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert meta["labels"] == {"background": 0, "tongue": 1}
    assert meta["numTraining"] == 4 and meta["file_ending"] == ".png"
    assert meta[CONVERSION_KEY]["max_size"] == 32 and meta[CONVERSION_KEY]["converter_version"]


def test_dataset_json_records_the_training_tongues_extent_for_segment(tmp_path):
    convert(paired(tmp_path / "src"), tmp_path, max_size=32)
    folder = tmp_path / "raw" / DATASET
    extent = json.loads((folder / "dataset.json").read_text())[CONVERSION_KEY]["tongue_extent_px"]
    sides = []
    for path in (folder / "labelsTr").glob("*.png"):
        rows, cols = np.nonzero(np.asarray(Image.open(path)))
        sides.append(max(np.ptp(rows), np.ptp(cols)) + 1)
    assert extent["n_cases"] == 4 and extent["median"] == pytest.approx(float(np.median(sides)))
    assert min(sides) <= extent["p5"] <= extent["median"] <= extent["p95"] <= max(sides)


def test_output_root_defaults_to_nnUNet_raw(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "env_raw"))
    convert_dataset(paired(tmp_path / "src"), workers=1, progress=False)
    assert (tmp_path / "env_raw" / DATASET / "dataset.json").is_file()


def test_dataset_id_and_name_choose_the_folder(tmp_path):
    report = convert(paired(tmp_path / "src"), tmp_path, dataset_id=7, dataset_name="MyTongues")
    assert report.dataset_folder == tmp_path / "raw" / "Dataset007_MyTongues"


def test_split_json_sends_its_test_ids_to_imagesTs_and_labelsTs(tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["a", "b", "c"], "test": ["d"]}))
    convert(paired(tmp_path / "src"), tmp_path, split_json=split)
    folder = tmp_path / "raw" / DATASET
    assert [p.name for p in (folder / "imagesTs").iterdir()] == ["d_0000.png"]
    assert [p.name for p in (folder / "labelsTs").iterdir()] == ["d.png"]
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 3


def test_test_ids_hold_cases_out(tmp_path):
    report = convert(paired(tmp_path / "src"), tmp_path, test_ids=["b", "c"])
    assert {c.case_id for c in report.cases if c.subset == "test"} == {"b", "c"}


def test_unknown_test_id_is_an_error(tmp_path):
    report = failure(paired(tmp_path / "src"), tmp_path, test_ids=["zz"])
    assert "test id 'zz' matches no case" in messages(report.errors)


def test_case_missing_from_split_json_lists_is_a_warning(tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["a", "b"], "test": ["d"]}))
    report = convert(paired(tmp_path / "src"), tmp_path, split_json=split)
    assert "case 'c' is in neither the train nor the test list" in messages(report.warnings)


def test_folds_write_splits_final_json_into_the_raw_dataset(tmp_path):
    convert(paired(tmp_path / "src", stems="abcdef"), tmp_path, test_ids=["f"], folds=5)
    splits = json.loads((tmp_path / "raw" / DATASET / "splits_final.json").read_text())
    assert len(splits) == 5
    assert sorted(sum((s["val"] for s in splits), [])) == list("abcde")
    assert all(sorted(s["train"] + s["val"]) == list("abcde") for s in splits)


def test_max_size_shrinks_the_longest_side_and_records_the_scale(tmp_path):
    convert(paired(tmp_path / "src"), tmp_path, max_size=32)
    row = csv_rows(tmp_path)["a"]
    assert (row["original_width"], row["original_height"], row["stored_width"], row["stored_height"]) == (
        "64", "48", "32", "24")
    assert float(row["scale"]) == 0.5
    assert Image.open(tmp_path / "raw" / DATASET / "imagesTr" / "a_0000.png").size == (32, 24)
    assert set(np.unique(label(tmp_path, "a"))) == {0, 1}


def test_scaled_size_never_enlarges():
    assert scaled_size(640, 480, 1000) == (640, 480, 1.0)
    assert scaled_size(4032, 3024, 1024) == (1024, 768, 1024 / 4032)
    assert scaled_size(100, 50, None) == (100, 50, 1.0)


def test_csv_maps_every_original_file_to_its_case(tmp_path):
    convert(paired(tmp_path / "src"), tmp_path)
    rows = csv_rows(tmp_path)
    assert tuple(next(iter(rows.values())).keys()) == CSV_COLUMNS
    assert rows["b"]["source_image"] == "images/b.jpg" and rows["b"]["source_mask"] == "masks/b.png"
    assert rows["b"]["subset"] == "train" and len(rows) == 4


def test_report_is_written_into_the_dataset_folder(tmp_path):
    save(photo().mean(axis=2).astype(np.uint8), tmp_path / "src" / "images" / "grey.png")
    save(tongue().astype(np.uint8) * 255, tmp_path / "src" / "masks" / "grey.png")
    convert(paired(tmp_path / "src"), tmp_path)
    folder = tmp_path / "raw" / DATASET
    assert "greyscale photo" in (folder / REPORT_TXT).read_text()
    assert json.loads((folder / REPORT_JSON).read_text())["warnings"][0]["file"] == "images/grey.png"


def test_dry_run_checks_everything_and_writes_nothing(tmp_path):
    report = convert(paired(tmp_path / "src"), tmp_path, dry_run=True)
    assert report.dataset_folder is None and len(report.cases) == 4
    assert not (tmp_path / "raw").exists()


def test_parallel_workers_give_the_same_dataset(tmp_path):
    source = paired(tmp_path / "src", stems="abcdef")
    one = convert(source, tmp_path / "one", workers=1)
    two = convert(source, tmp_path / "two", workers=2)
    assert [c.case_id for c in one.cases] == [c.case_id for c in two.cases]
    for case in "abcdef":
        a = np.asarray(Image.open(one.dataset_folder / "imagesTr" / f"{case}_0000.png"))
        b = np.asarray(Image.open(two.dataset_folder / "imagesTr" / f"{case}_0000.png"))
        assert np.array_equal(a, b)


def test_nnunet_integrity_check_passes(tmp_path):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    source = paired(tmp_path / "src")
    save(np.array(Image.fromarray(photo()).convert("L")), source / "images" / "grey.bmp")
    save(tongue(), source / "masks" / "grey.bmp")  # 1-bit mask
    report = convert(source, tmp_path, test_ids=["d"])
    verify_dataset_integrity(str(report.dataset_folder), 1)


@pytest.mark.integration
def test_stock_plan_and_preprocess_verifies_the_dataset_and_takes_its_folds(tmp_path):
    convert(paired(tmp_path / "src", stems="abcdefg"), tmp_path, test_ids=["g"], folds=3)
    env = dict(os.environ, nnUNet_raw=str(tmp_path / "raw"), nnUNet_preprocessed=str(tmp_path / "pre"),
               nnUNet_results=str(tmp_path / "res"), nnUNet_def_n_proc="1")
    command = [str(Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"), "-d", "501",
               "--verify_dataset_integrity", "-c", "2d", "-np", "1", "-npfp", "1", "--no_pp"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    copied = json.loads((tmp_path / "pre" / DATASET / "splits_final.json").read_text())
    assert copied == json.loads((tmp_path / "raw" / DATASET / "splits_final.json").read_text())


# ---------------------------------------------------------------- layouts


def test_masks_folder_may_be_called_labels(tmp_path):
    report = convert(paired(tmp_path / "src", masks_folder="labels"), tmp_path)
    assert len(report.cases) == 4


def test_mask_named_with_a_mask_suffix_matches_its_photo(tmp_path):
    save(photo(), tmp_path / "src" / "images" / "IMG_1.jpg")
    save(tongue().astype(np.uint8) * 255, tmp_path / "src" / "masks" / "img_1_mask.png")
    report = convert(tmp_path / "src", tmp_path)
    assert [c.case_id for c in report.cases] == ["IMG_1"]


def test_photo_whose_stem_ends_like_a_mask_suffix_keeps_its_own_mask(tmp_path):
    save(photo(), tmp_path / "src" / "images" / "scan_gt.jpg")
    save(tongue().astype(np.uint8) * 255, tmp_path / "src" / "masks" / "scan_gt.png")
    assert [c.case_id for c in convert(tmp_path / "src", tmp_path).cases] == ["scan_gt"]


def test_mask_and_suffixed_mask_for_one_photo_are_duplicates(tmp_path):
    source = paired(tmp_path / "src")
    save(tongue().astype(np.uint8) * 255, source / "masks" / "a_mask.png")
    report = failure(source, tmp_path)
    assert "2 masks share the stem 'a': masks/a.png, masks/a_mask.png" in messages(report.errors)


def test_explicit_images_and_masks_folders(tmp_path):
    paired(tmp_path / "src", masks_folder="annotations_v2")
    report = convert(None, tmp_path, images=tmp_path / "src" / "images", masks=tmp_path / "src" / "annotations_v2")
    assert len(report.cases) == 4 and report.layout == "paired"


def test_undetectable_layout_is_an_error_that_names_the_options(tmp_path):
    save(photo(), tmp_path / "src" / "a.jpg")
    report = failure(tmp_path / "src", tmp_path)
    assert "cannot tell the layout" in messages(report.errors) and "--layout" in messages(report.errors)


def test_original_biohit_release_with_mixed_1bit_and_8bit_bmp_masks(tmp_path):
    root = tmp_path / "TongeImageDataset"
    for n in (1, 2, 3):
        save(photo(seed=n), root / "dataset" / f"{n}.bmp")
    save(tongue(), root / "groundtruth" / "mask1" / "1.bmp")  # 1-bit
    save(tongue().astype(np.uint8) * 255, root / "groundtruth" / "mask1" / "2.bmp")  # 8-bit
    save(~tongue(), root / "groundtruth" / "mask1" / "3.bmp")  # 1-bit, inverted
    report = convert(root, tmp_path)
    assert report.layout == "biohit"
    assert {c.case_id: c.inverted for c in report.cases} == {"1": False, "2": False, "3": True}
    for n in "123":
        assert np.array_equal(label(tmp_path, n), tongue())


def test_biohit_release_with_a_groundtruth_mask_folder(tmp_path):
    root = tmp_path / "biohit"
    save(photo(), root / "dataset" / "1.bmp")
    save(tongue(), root / "groundtruth" / "mask" / "1.bmp")
    assert convert(root, tmp_path, layout="biohit").cases[0].case_id == "1"


def test_labelme_polygon_with_the_photo_beside_the_json(tmp_path):
    save(photo(), tmp_path / "lm" / "p1.jpg", quality=95)
    labelme_json(tmp_path / "lm" / "p1.json", [("tongue", TONGUE_POLYGON)], "p1.jpg")
    report = convert(tmp_path / "lm", tmp_path)
    assert report.layout == "labelme" and report.cases[0].source_image == "p1.jpg"
    mask = label(tmp_path, "p1").astype(bool)
    assert mask[30, 32] and not mask[2, 2] and 300 < mask.sum() < 900


def test_labelme_photo_embedded_as_image_data(tmp_path):
    labelme_json(tmp_path / "lm" / "p2.json", [("Tongue", TONGUE_POLYGON)], "gone/p2.jpg", png_bytes(photo()))
    report = convert(tmp_path / "lm", tmp_path)
    assert report.cases[0].source_image == "p2.json#imageData"
    assert label(tmp_path, "p2")[30, 32] == 1


def test_labelme_shapes_with_other_labels_are_ignored_with_a_warning(tmp_path):
    save(photo(), tmp_path / "lm" / "p3.png")
    labelme_json(tmp_path / "lm" / "p3.json", [("tongue", TONGUE_POLYGON), ("teeth", [[0, 0], [10, 0], [5, 5]])],
                 "p3.png")
    report = convert(tmp_path / "lm", tmp_path)
    assert "shapes not labelled 'tongue' ignored: 'teeth'" in messages(report.warnings)
    assert label(tmp_path, "p3")[1, 5] == 0


def test_labelme_photo_without_annotation_is_an_error(tmp_path):
    save(photo(), tmp_path / "lm" / "p1.png")
    labelme_json(tmp_path / "lm" / "p1.json", [("tongue", TONGUE_POLYGON)], "p1.png")
    save(photo(), tmp_path / "lm" / "p2.png")
    report = failure(tmp_path / "lm", tmp_path)
    assert "p2.png: missing annotation" in messages(report.errors)


def test_labelme_tongue_drawn_as_a_rectangle_is_an_error(tmp_path):
    save(photo(), tmp_path / "lm" / "r.png")
    path = labelme_json(tmp_path / "lm" / "r.json", [("tongue", [[10, 10], [40, 30]])], "r.png")
    doc = json.loads(path.read_text())
    doc["shapes"][0]["shape_type"] = "rectangle"
    path.write_text(json.dumps(doc))
    report = failure(tmp_path / "lm", tmp_path)
    assert "r.json: a 'tongue' shape is a rectangle, not a polygon" in messages(report.errors)


def test_labelme_annotation_for_another_image_size_is_an_error(tmp_path):
    save(photo(w=32, h=24), tmp_path / "lm" / "s.png")
    labelme_json(tmp_path / "lm" / "s.json", [("tongue", TONGUE_POLYGON)], "s.png")
    report = failure(tmp_path / "lm", tmp_path)
    assert "s.json: annotation is for a 64x48 image but the photo is 32x24" in messages(report.errors)


def test_labelme_tongue_under_another_label_is_an_error_naming_the_labels_and_the_fix(tmp_path):
    save(photo(), tmp_path / "lm" / "z.png")
    labelme_json(tmp_path / "lm" / "z.json", [("Zunge", TONGUE_POLYGON), ("Zaehne", [[0, 0], [10, 0], [5, 5]])],
                 "z.png")
    report = failure(tmp_path / "lm", tmp_path)
    assert "z.json: no shape labelled 'tongue' (labels found: 'Zaehne', 'Zunge')" in messages(report.errors)
    assert "--labelme-label" in messages(report.errors)
    assert not (tmp_path / "raw" / DATASET).exists()
    convert(tmp_path / "lm", tmp_path, labelme_label="zunge")
    assert label(tmp_path, "z")[30, 32] == 1


def test_labelme_error_suggests_the_one_other_label(tmp_path, capsys):
    save(photo(), tmp_path / "lm" / "z.png")
    labelme_json(tmp_path / "lm" / "z.json", [("Zunge", TONGUE_POLYGON)], "z.png")
    assert main([str(tmp_path / "lm"), "-o", str(tmp_path / "raw"), "-j", "1", "--no-progress"]) == 1
    assert "Fix: pass --labelme-label Zunge" in capsys.readouterr().err


def test_labelme_annotation_without_shapes_is_a_photo_without_tongue(tmp_path):
    save(photo(), tmp_path / "lm" / "n.png")
    labelme_json(tmp_path / "lm" / "n.json", [], "n.png")
    report = convert(tmp_path / "lm", tmp_path)
    assert "n.json: empty mask" in messages(report.warnings) and not label(tmp_path, "n").any()


def test_labelme_image_path_outside_the_project_is_an_error(tmp_path):
    save(photo(), tmp_path / "elsewhere" / "x.jpg")
    labelme_json(tmp_path / "lm" / "p.json", [("tongue", TONGUE_POLYGON)], "../elsewhere/x.jpg")
    report = failure(tmp_path / "lm", tmp_path)
    text = messages(report.errors)
    assert "p.json: imagePath '../elsewhere/x.jpg' points outside the project folder" in text
    assert "put the photo in the project folder" in text and "imageData" in text


def test_labelme_image_path_outside_the_project_is_not_needed_with_the_photo_moved_in_or_embedded(tmp_path):
    save(photo(), tmp_path / "lm" / "x.jpg")
    labelme_json(tmp_path / "lm" / "p.json", [("tongue", TONGUE_POLYGON)], "../../elsewhere/x.jpg")
    labelme_json(tmp_path / "lm" / "q.json", [("tongue", TONGUE_POLYGON)], "../elsewhere/q.jpg", png_bytes(photo()))
    report = convert(tmp_path / "lm", tmp_path)
    assert {c.case_id: c.source_image for c in report.cases} == {"p": "x.jpg", "q": "q.json#imageData"}


def test_two_labelme_files_naming_one_photo_is_an_error(tmp_path):
    save(photo(), tmp_path / "lm" / "x.jpg")
    labelme_json(tmp_path / "lm" / "first.json", [("tongue", TONGUE_POLYGON)], "x.jpg")
    labelme_json(tmp_path / "lm" / "second.json", [("tongue", TONGUE_POLYGON)], "x.jpg")
    report = failure(tmp_path / "lm", tmp_path, test_ids=["second"])
    assert "x.jpg: 2 annotations name this photo: first.json and second.json" in messages(report.errors)


# ---------------------------------------------------------------- photos: orientation and pixel formats


def test_exif_orientation_is_applied_to_photos_but_not_to_masks(tmp_path):
    portrait = photo(w=H, h=W)  # what the camera app shows: 48 wide, 64 high
    stored = np.ascontiguousarray(np.rot90(portrait, 1))  # sensor layout, shown after a 90° clockwise turn
    with_exif_orientation(stored, tmp_path / "src" / "images" / "phone.jpg", 6)
    save(tongue(w=H, h=W).astype(np.uint8) * 255, tmp_path / "src" / "masks" / "phone.png")  # drawn on the shown photo
    report = convert(tmp_path / "src", tmp_path)
    written = np.asarray(Image.open(tmp_path / "raw" / DATASET / "imagesTr" / "phone_0000.png")).astype(int)
    assert written.shape == (W, H, 3) and np.abs(written - portrait).mean() < 4
    assert np.array_equal(label(tmp_path, "phone"), tongue(w=H, h=W))
    assert "photo EXIF orientation 6 applied" in report.cases[0].notes


def test_a_mask_with_its_own_exif_orientation_is_rotated_too(tmp_path):
    portrait = tongue(w=H, h=W).astype(np.uint8) * 255
    save(photo(w=H, h=W), tmp_path / "src" / "images" / "m.png")
    with_exif_orientation(np.ascontiguousarray(np.rot90(portrait, 1)), tmp_path / "src" / "masks" / "m.png", 6)
    convert(tmp_path / "src", tmp_path)
    assert np.array_equal(label(tmp_path, "m"), tongue(w=H, h=W))


def test_mask_that_fits_the_unrotated_photo_is_a_size_mismatch_with_a_hint(tmp_path):
    with_exif_orientation(photo(), tmp_path / "src" / "images" / "phone.jpg", 6)
    save(tongue().astype(np.uint8) * 255, tmp_path / "src" / "masks" / "phone.png")
    report = failure(tmp_path / "src", tmp_path)
    assert "the annotation tool ignored EXIF" in messages(report.errors)


@pytest.mark.parametrize(("size", "orientation"), [((W, W), 6), ((W, W), 8), ((W, H), 3), ((W, H), 2)])
def test_exif_orientation_that_keeps_the_size_warns_that_the_mask_cannot_be_checked(tmp_path, size, orientation):
    w, h = size
    with_exif_orientation(photo(w=w, h=h), tmp_path / "src" / "images" / "sq.jpg", orientation)
    save(tongue(w=w, h=h).astype(np.uint8) * 255, tmp_path / "src" / "masks" / "sq.png")
    report = convert(tmp_path / "src", tmp_path)
    text = messages(report.warnings)
    assert (f"masks/sq.png: photo images/sq.jpg has EXIF orientation {orientation}" in text
            and "cannot be checked" in text)
    assert "labelsTr/sq.png over imagesTr/sq_0000.png" in text


def test_exif_rotation_of_a_non_square_photo_needs_no_warning(tmp_path):
    portrait = photo(w=H, h=W)
    with_exif_orientation(np.ascontiguousarray(np.rot90(portrait, 1)), tmp_path / "src" / "images" / "phone.jpg", 6)
    save(tongue(w=H, h=W).astype(np.uint8) * 255, tmp_path / "src" / "masks" / "phone.png")
    assert not convert(tmp_path / "src", tmp_path).warnings


@pytest.mark.parametrize(
    ("kind", "make", "warning"),
    [
        ("greyscale", lambda p: save(photo().mean(axis=2).astype(np.uint8), p.with_suffix(".png")), "greyscale photo"),
        ("rgba", lambda p: save(np.dstack([photo(), np.full((H, W), 200, np.uint8)]), p.with_suffix(".png")),
         "alpha channel"),
        ("16-bit grey", lambda p: save(Image.fromarray(photo()[..., 0].astype(np.uint16) * 257), p.with_suffix(".png")),
         "16-bit greyscale photo"),
        ("16-bit rgb", lambda p: p.with_suffix(".png").write_bytes(rgb16_png(photo().astype(np.uint16) * 257)),
         "16-bit-per-channel photo"),
        ("cmyk", lambda p: save(Image.fromarray(photo()).convert("CMYK"), p.with_suffix(".jpg"), quality=95),
         "CMYK photo"),
        ("palette", lambda p: save(Image.fromarray(photo()).convert("P"), p.with_suffix(".png")),
         "palette (indexed-colour) photo"),
    ],
)
def test_unusual_photo_formats_become_rgb_with_a_warning(tmp_path, kind, make, warning):
    (tmp_path / "src" / "images").mkdir(parents=True)
    make(tmp_path / "src" / "images" / "x")
    save(tongue().astype(np.uint8) * 255, tmp_path / "src" / "masks" / "x.png")
    report = convert(tmp_path / "src", tmp_path)
    assert warning in messages(report.warnings)
    written = np.asarray(Image.open(tmp_path / "raw" / DATASET / "imagesTr" / "x_0000.png"))
    assert written.shape == (H, W, 3) and written.dtype == np.uint8 and written.max() > 100


# ---------------------------------------------------------------- masks: binarisation, inversion, specks


def _mask_encodings():
    t = tongue()
    grey_palette = Image.fromarray(t.astype(np.uint8)).convert("P")
    grey_palette.putpalette([0, 0, 0, 255, 255, 255])
    voc = Image.fromarray(t.astype(np.uint8), mode="L").convert("P")
    voc.putpalette([0, 0, 0, 128, 0, 0])
    return {
        "0/255 png": (t.astype(np.uint8) * 255, ".png", {}),
        "0/1 png": (t.astype(np.uint8), ".png", {}),
        "1-bit png": (t, ".png", {}),
        "1-bit bmp": (t, ".bmp", {}),
        "grey palette": (grey_palette, ".png", {}),
        "coloured palette (VOC)": (voc, ".png", {}),
        "16-bit": (Image.fromarray(t.astype(np.uint16) * 65535), ".png", {}),
        "red on black rgb": (np.dstack([t * 200, t * 0, t * 0]).astype(np.uint8), ".png", {}),
        "jpeg 0/255": (t.astype(np.uint8) * 255, ".jpg", {"quality": 90}),
    }


@pytest.mark.parametrize("encoding", list(_mask_encodings()))
def test_every_common_mask_encoding_gives_the_same_label(tmp_path, encoding):
    mask, suffix, options = _mask_encodings()[encoding]
    save(photo(), tmp_path / "src" / "images" / "x.jpg")
    save(mask, tmp_path / "src" / "masks" / f"x{suffix}", **options)
    convert(tmp_path / "src", tmp_path)
    written = label(tmp_path, "x")
    assert written.dtype == np.uint8 and set(np.unique(written)) == {0, 1}
    assert (written != tongue()).sum() <= 10  # JPEG may move a few edge pixels


def test_lossy_mask_is_thresholded_at_128_with_a_warning(tmp_path):
    save(photo(), tmp_path / "src" / "images" / "x.jpg")
    save(tongue().astype(np.uint8) * 255, tmp_path / "src" / "masks" / "x.jpg", quality=90)
    report = convert(tmp_path / "src", tmp_path)
    assert "tongue = value >= 128" in messages(report.warnings)


@pytest.mark.parametrize("patch", [10, 3], ids=["large third label", "small third label"])
def test_multi_valued_mask_is_an_error_naming_the_fix(tmp_path, patch):
    mask = tongue().astype(np.uint8) * 255
    mask[:patch, :patch] = 128
    save(photo(), tmp_path / "src" / "images" / "x.jpg")
    save(mask, tmp_path / "src" / "masks" / "x.png")
    report = failure(tmp_path / "src", tmp_path)
    assert "masks/x.png: multi-valued mask: 3 values [0, 128, 255]" in messages(report.errors)
    assert "--mask-values" in messages(report.errors)


def test_anti_aliased_mask_is_thresholded_at_128(tmp_path):
    smooth = Image.fromarray(tongue(w=4 * W, h=4 * H).astype(np.uint8) * 255).resize((W, H), Image.Resampling.BILINEAR)
    save(photo(), tmp_path / "src" / "images" / "x.jpg")
    save(smooth, tmp_path / "src" / "masks" / "x.png")
    report = convert(tmp_path / "src", tmp_path)
    assert "lossy or anti-aliased" in messages(report.warnings)
    assert np.array_equal(label(tmp_path, "x"), np.asarray(smooth) >= 128)


def test_mask_values_map_multi_valued_masks(tmp_path):
    mask = tongue().astype(np.uint8) * 255
    mask[:10, :10] = 128
    save(photo(), tmp_path / "src" / "images" / "x.jpg")
    save(mask, tmp_path / "src" / "masks" / "x.png")
    convert(tmp_path / "src", tmp_path, mask_values="0:0,128:0,255:1")
    assert np.array_equal(label(tmp_path, "x"), tongue())


def test_mask_value_missing_from_mask_values_is_an_error(tmp_path):
    save(photo(), tmp_path / "src" / "images" / "x.jpg")
    save(tongue().astype(np.uint8) * 255, tmp_path / "src" / "masks" / "x.png")
    report = failure(tmp_path / "src", tmp_path, mask_values={0: 0, 1: 1})
    assert "mask values [255] are not in --mask-values" in messages(report.errors)


def test_inverted_mask_is_fixed_and_reported(tmp_path):
    save(photo(), tmp_path / "src" / "images" / "inv.jpg")
    save((~tongue()).astype(np.uint8) * 255, tmp_path / "src" / "masks" / "inv.png")
    report = convert(tmp_path / "src", tmp_path)
    assert np.array_equal(label(tmp_path, "inv"), tongue())
    assert report.cases[0].inverted
    assert "masks/inv.png: inverted mask" in messages(report.warnings)


def test_on_inverted_fail_makes_an_inverted_mask_an_error(tmp_path):
    save(photo(), tmp_path / "src" / "images" / "inv.jpg")
    save((~tongue()).astype(np.uint8) * 255, tmp_path / "src" / "masks" / "inv.png")
    report = failure(tmp_path / "src", tmp_path, on_inverted="fail")
    assert "masks/inv.png: inverted mask" in messages(report.errors)


def test_on_inverted_keep_keeps_the_mask_and_warns(tmp_path):
    save(photo(), tmp_path / "src" / "images" / "inv.jpg")
    save((~tongue()).astype(np.uint8) * 255, tmp_path / "src" / "masks" / "inv.png")
    report = convert(tmp_path / "src", tmp_path, on_inverted="keep")
    assert np.array_equal(label(tmp_path, "inv"), ~tongue())
    assert "kept as given" in messages(report.warnings)


def test_inverted_rule_leaves_close_up_tongues_alone_and_catches_inverted_close_ups():
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w]
    touching_bottom = ((xx - 80) / 50) ** 2 + ((yy - 110) / 60) ** 2 < 1  # tongue running off the bottom edge
    filling_frame = yy > 30  # tongue fills the frame below a band of lips
    assert not looks_inverted(touching_bottom) and looks_inverted(~touching_bottom)
    assert not looks_inverted(filling_frame)
    assert not looks_inverted(tongue()) and looks_inverted(~tongue())
    assert not looks_inverted(np.zeros((h, w), bool)) and not looks_inverted(np.ones((h, w), bool))


def test_stray_specks_are_kept_and_reported(tmp_path):
    mask = tongue().astype(np.uint8) * 255
    mask[2, 2] = mask[4, 60] = 255
    save(photo(), tmp_path / "src" / "images" / "s.jpg")
    save(mask, tmp_path / "src" / "masks" / "s.png")
    report = convert(tmp_path / "src", tmp_path)
    assert report.cases[0].specks == 2 and label(tmp_path, "s")[2, 2] == 1
    assert "2 stray region(s) besides the tongue (1, 1 px): kept" in messages(report.warnings)


def test_clean_specks_removes_regions_smaller_than_the_limit(tmp_path):
    mask = tongue().astype(np.uint8) * 255
    mask[2, 2] = 255
    save(photo(), tmp_path / "src" / "images" / "s.jpg")
    save(mask, tmp_path / "src" / "masks" / "s.png")
    convert(tmp_path / "src", tmp_path, clean_specks=10)
    assert np.array_equal(label(tmp_path, "s"), tongue())


def test_empty_mask_is_kept_with_a_warning(tmp_path):
    save(photo(), tmp_path / "src" / "images" / "e.jpg")
    save(np.zeros((H, W), np.uint8), tmp_path / "src" / "masks" / "e.png")
    report = convert(tmp_path / "src", tmp_path)
    assert "masks/e.png: empty mask" in messages(report.warnings)
    assert not label(tmp_path, "e").any()


# ---------------------------------------------------------------- bad input: every problem, one report


def test_missing_mask_is_an_error(tmp_path):
    source = paired(tmp_path / "src")
    (source / "masks" / "b.png").unlink()
    report = failure(source, tmp_path)
    assert ("images/b.jpg: missing mask: no mask with the stem 'b' in masks/ Fix: add its mask, or remove the photo"
            in messages(report.errors))


def test_orphan_mask_is_an_error(tmp_path):
    source = paired(tmp_path / "src")
    (source / "images" / "c.jpg").unlink()
    report = failure(source, tmp_path)
    assert "masks/c.png: orphan mask" in messages(report.errors)


def test_duplicate_stem_is_an_error(tmp_path):
    source = paired(tmp_path / "src")
    save(photo(), source / "images" / "a.png")
    report = failure(source, tmp_path)
    assert "2 photos share the stem 'a': images/a.jpg, images/a.png" in messages(report.errors)


def test_image_and_mask_size_mismatch_is_an_error(tmp_path):
    source = paired(tmp_path / "src")
    save(tongue(w=32, h=24).astype(np.uint8) * 255, source / "masks" / "a.png")
    report = failure(source, tmp_path)
    assert "masks/a.png: size mismatch: mask is 32x24 but photo images/a.jpg is 64x48" in messages(report.errors)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty (0 bytes)"),
        (b"this is a text file", "not an image Pillow can read"),
        ("truncated", "truncated or corrupt image"),
    ],
)
def test_unreadable_photo_is_an_error(tmp_path, content, message):
    source = paired(tmp_path / "src")
    path = source / "images" / "a.jpg"
    path.write_bytes(path.read_bytes()[:300] if content == "truncated" else content)
    report = failure(source, tmp_path)
    assert f"images/a.jpg: {message}" in messages(report.errors)


def test_files_that_are_not_images_are_ignored_with_a_warning(tmp_path):
    source = paired(tmp_path / "src")
    (source / "images" / "notes.txt").write_text("x")
    (source / "images" / ".DS_Store").write_text("x")
    report = convert(source, tmp_path)
    assert messages(report.warnings).startswith("images/notes.txt: ignored: not a photo file type")
    assert len(report.warnings) == 1


def test_non_ascii_file_names_get_safe_ascii_case_ids_and_a_csv_entry(tmp_path):
    save(photo(), tmp_path / "src" / "images" / "舌头 1.jpg")
    save(tongue().astype(np.uint8) * 255, tmp_path / "src" / "masks" / "舌头 1.png")
    save(photo(), tmp_path / "src" / "images" / "café.jpg")
    save(tongue().astype(np.uint8) * 255, tmp_path / "src" / "masks" / "café.png")
    report = convert(tmp_path / "src", tmp_path)
    ids = sorted(c.case_id for c in report.cases)
    assert all(i.isascii() for i in ids) and ids[0].startswith("1_") and ids[1].startswith("cafe_")
    rows = csv_rows(tmp_path)
    assert rows[case_id("舌头 1")]["source_image"] == "images/舌头 1.jpg"
    assert (report.dataset_folder / "imagesTr" / f"{case_id('café')}_0000.png").is_file()


def test_case_ids_keep_safe_stems_and_are_stable():
    assert case_id("tongue_001") == "tongue_001" and case_id("17") == "17"
    assert case_id("IMG 0001") == case_id("IMG 0001") != case_id("IMG_0001")
    assert case_id("舌头").startswith("case_") and case_id("舌头").isascii()


def test_existing_dataset_is_refused_without_overwrite(tmp_path):
    source = paired(tmp_path / "src")
    convert(source, tmp_path)
    report = failure(source, tmp_path)
    assert "dataset already exists" in messages(report.errors) and "--overwrite" in messages(report.errors)


def test_overwrite_replaces_the_dataset(tmp_path):
    convert(paired(tmp_path / "src"), tmp_path)
    report = convert(paired(tmp_path / "src2", stems="xy"), tmp_path, overwrite=True)
    assert sorted(p.name for p in (report.dataset_folder / "labelsTr").iterdir()) == ["x.png", "y.png"]
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [DATASET]


def test_overwrite_keeps_the_old_dataset_when_the_new_one_has_errors(tmp_path):
    convert(paired(tmp_path / "src"), tmp_path)
    broken = paired(tmp_path / "src2", stems="xy")
    (broken / "masks" / "y.png").unlink()
    failure(broken, tmp_path, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "raw" / DATASET / "labelsTr").iterdir()) == [
        "a.png", "b.png", "c.png", "d.png"]
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [DATASET]


def test_another_dataset_with_the_same_id_is_an_error(tmp_path):
    (tmp_path / "raw" / "Dataset501_Other").mkdir(parents=True)
    report = failure(paired(tmp_path / "src"), tmp_path)
    assert "dataset id 501 is already used by Dataset501_Other" in messages(report.errors)


def test_output_that_cannot_be_created_stops_at_once_with_exit_2(tmp_path, capsys):
    (tmp_path / "raw").write_text("a file where the output folder should be")
    source = paired(tmp_path / "src")
    with pytest.raises(OutputError, match="output folder cannot be created or written"):
        convert(source, tmp_path)
    assert main([str(source), "-o", str(tmp_path / "raw"), "-j", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'raw'}: output folder cannot be created or written" in err and "--dry-run" in err
    assert (tmp_path / "raw").read_text().startswith("a file")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output_folder_is_an_error(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw").chmod(0o500)
    try:
        with pytest.raises(OutputError, match="output folder cannot be created or written"):
            convert(paired(tmp_path / "src"), tmp_path)
    finally:
        (tmp_path / "raw").chmod(0o700)
    assert not list((tmp_path / "raw").iterdir())


def test_all_problems_are_listed_in_one_report_and_nothing_is_left_behind(tmp_path):
    source = paired(tmp_path / "src", stems="abcdefg")
    (source / "masks" / "a.png").unlink()  # missing mask
    save(tongue().astype(np.uint8) * 255, source / "masks" / "orphan.png")  # orphan mask
    save(photo(), source / "images" / "b.png")  # duplicate stem
    save(tongue(w=10, h=10).astype(np.uint8) * 255, source / "masks" / "c.png")  # size mismatch
    (source / "images" / "d.jpg").write_bytes(b"")  # zero bytes
    save((~tongue()).astype(np.uint8) * 255, source / "masks" / "e.png")  # inverted: a warning
    report = failure(source, tmp_path)
    text = messages(report.errors)
    for expected in ("images/a.jpg: missing mask", "masks/orphan.png: orphan mask", "share the stem 'b'",
                     "masks/c.png: size mismatch", "images/d.jpg: file is empty"):
        assert expected in text
    assert len(report.errors) == 5 and "masks/e.png: inverted mask" in messages(report.warnings)
    assert report.dataset_folder is None and not (tmp_path / "raw").exists()


# ---------------------------------------------------------------- interruptions, concurrent runs, leftovers, faults


def _interrupt_at_dataset_json(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_publishes_nothing_and_exits_130_with_one_line(tmp_path, capsys, monkeypatch, workers):
    monkeypatch.setattr(conversion_convert, "write_dataset_json", _interrupt_at_dataset_json)
    code = main([str(paired(tmp_path / "src")), "-o", str(tmp_path / "raw"), "-j", workers, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 130 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "interrupted by Ctrl-C (SIGINT) while writing dataset.json" in err
    assert f"nothing was published to {tmp_path / 'raw' / DATASET}" in err and "Run the same command again" in err
    assert not (tmp_path / "raw").exists()
    assert (signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler)


def test_interrupted_api_call_raises_a_keyboard_interrupt_that_says_what_is_left(tmp_path, monkeypatch):
    convert(paired(tmp_path / "src"), tmp_path)
    monkeypatch.setattr(conversion_convert, "write_dataset_json", _interrupt_at_dataset_json)
    with pytest.raises(Interrupted) as info:
        convert(paired(tmp_path / "src2", stems="xy"), tmp_path, overwrite=True)
    assert isinstance(info.value, KeyboardInterrupt) and info.value.signum == signal.SIGINT
    assert f"the existing {DATASET} is unchanged" in info.value.message
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [DATASET]
    assert (tmp_path / "raw" / DATASET / "labelsTr" / "a.png").is_file()


def test_a_second_convert_of_the_same_dataset_fails_at_once_with_exit_2(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    with open(tmp_path / "raw" / f".{DATASET}.lock", "w") as held:  # what a running convert holds
        fcntl.flock(held, fcntl.LOCK_EX)
        code = main([str(paired(tmp_path / "src")), "-o", str(tmp_path / "raw"), "-j", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'raw' / DATASET}: another convert is writing this dataset" in err
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [f".{DATASET}.lock"]


def test_another_dataset_can_be_converted_meanwhile(tmp_path):
    (tmp_path / "raw").mkdir()
    with open(tmp_path / "raw" / ".Dataset502_Other.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert convert(paired(tmp_path / "src"), tmp_path).dataset_folder == tmp_path / "raw" / DATASET


def test_leftover_staging_folders_of_interrupted_runs_are_removed_and_reported(tmp_path):
    leftover = tmp_path / "raw" / f".{DATASET}.k3v9x_1q.partial"
    save(photo(), leftover / "imagesTr" / "a_0000.png")
    others = tmp_path / "raw" / ".Dataset502_Other.abcdefgh.partial"
    others.mkdir()
    report = convert(paired(tmp_path / "src"), tmp_path)
    assert not leftover.exists() and others.is_dir()
    assert f"{leftover}: removed: staging folder of an earlier interrupted convert" in messages(report.warnings)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [".Dataset502_Other.abcdefgh.partial", DATASET]


def test_dry_run_reports_leftovers_and_removes_nothing(tmp_path):
    leftover = tmp_path / "raw" / f".{DATASET}.k3v9x_1q.partial"
    leftover.mkdir(parents=True)
    report = convert(paired(tmp_path / "src"), tmp_path, dry_run=True)
    assert leftover.is_dir() and "the next convert of this dataset clears it" in messages(report.warnings)


def test_dataset_an_interrupted_overwrite_moved_aside_is_put_back(tmp_path):
    convert(paired(tmp_path / "src"), tmp_path)
    aside = tmp_path / "raw" / f".{DATASET}.1234abcd.old"
    os.replace(tmp_path / "raw" / DATASET, aside)  # killed between the two renames of --overwrite
    report = failure(paired(tmp_path / "src"), tmp_path)
    assert "dataset already exists" in messages(report.errors) and "put back from" in messages(report.warnings)
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [DATASET]


def test_remains_of_a_replaced_dataset_are_removed(tmp_path):
    convert(paired(tmp_path / "src"), tmp_path)
    for name in (f".{DATASET}.1234abcd.old", f".{DATASET}.5678abcd.trash"):  # killed after the second rename
        save(photo(), tmp_path / "raw" / name / "imagesTr" / "x_0000.png")
    report = convert(paired(tmp_path / "src2", stems="xy"), tmp_path, overwrite=True)
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [DATASET]
    assert sorted(p.name for p in (report.dataset_folder / "labelsTr").iterdir()) == ["x.png", "y.png"]
    assert messages(report.warnings).count("removed:") == 2


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_dataset_folder_gets_the_usual_mode_of_a_new_folder(tmp_path, umask):
    previous = os.umask(umask)
    try:
        folder = convert(paired(tmp_path / "src"), tmp_path).dataset_folder
    finally:
        os.umask(previous)
    for path in (folder, folder / "imagesTr", folder / "labelsTr"):
        assert path.stat().st_mode & 0o777 == 0o777 & ~umask, path


def _fail_on_case_b(tongue, options, mask_name, found):
    if mask_name == "masks/b.png":
        raise RuntimeError("boom")
    return _REAL_CHECK_MASK(tongue, options, mask_name, found)


_REAL_CHECK_MASK = conversion_cases._check_mask


@pytest.mark.parametrize("workers", [1, 2])
def test_unexpected_error_in_one_case_is_reported_with_its_files(tmp_path, monkeypatch, workers):
    monkeypatch.setattr(conversion_cases, "_check_mask", _fail_on_case_b)  # forked workers inherit it
    report = failure(paired(tmp_path / "src"), tmp_path, workers=workers)
    assert "images/b.jpg: unexpected error while converting case b (RuntimeError: boom)" in messages(report.errors)
    assert "masks/b.png" in messages(report.errors) and len(report.errors) == 1
    assert not (tmp_path / "raw").exists()


def test_a_worker_that_dies_is_an_error_not_a_crash(tmp_path, monkeypatch):
    parent = os.getpid()
    real = conversion_cases.convert_case

    def killed_on_c(task, options, out_dir):
        if task.case_id == "c" and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(task, options, out_dir)

    monkeypatch.setattr(conversion_cases, "convert_case", killed_on_c)
    report = failure(paired(tmp_path / "src", stems="abcdef"), tmp_path, workers=2)
    assert "a worker process died" in messages(report.errors) and "-j 1" in messages(report.errors)
    assert not (tmp_path / "raw").exists()


def test_photo_that_is_a_broken_link_is_an_error_naming_it(tmp_path):
    source = paired(tmp_path / "src")
    (source / "images" / "b.jpg").unlink()
    (source / "images" / "b.jpg").symlink_to(tmp_path / "gone.jpg")
    report = failure(source, tmp_path)
    assert "images/b.jpg: cannot read the file (No such file or directory)" in messages(report.errors)


# ---------------------------------------------------------------- command line


def test_command_exits_0_and_prints_warnings(tmp_path, capsys):
    source = paired(tmp_path / "src")
    save((~tongue()).astype(np.uint8) * 255, source / "masks" / "a.png")
    assert main([str(source), "-o", str(tmp_path / "raw"), "-j", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'raw' / DATASET}" in out and "masks/a.png: inverted mask" in out


def test_command_exits_1_and_lists_errors_on_stderr(tmp_path, capsys):
    source = paired(tmp_path / "src")
    (source / "masks" / "a.png").unlink()
    assert main([str(source), "-o", str(tmp_path / "raw"), "-j", "1", "--no-progress"]) == 1
    assert "images/a.jpg: missing mask" in capsys.readouterr().err


def test_nnunet_tongue_convert_dispatches_here(tmp_path):
    from nnunet_tongue.cli import main as cli_main

    source = paired(tmp_path / "src")
    assert cli_main(["convert", str(source), "-o", str(tmp_path / "raw"), "-j", "1", "--no-progress",
                     "--test-ids", "a,b"]) == 0
    assert len(list((tmp_path / "raw" / DATASET / "imagesTs").iterdir())) == 2


def test_runs_as_a_python_module(tmp_path):
    source = paired(tmp_path / "src")
    proc = subprocess.run(
        [sys.executable, "-m", "nnunet_tongue.conversion.convert", str(source), "-o", str(tmp_path / "raw"), "-j", "2",
         "--no-progress", "--folds", "2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "raw" / DATASET / "splits_final.json").is_file()
