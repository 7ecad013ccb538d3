"""Specification of ``nnunet-tongue evaluate``: metrics, conventions, input checks and report files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from conftest import SHARED_DATA
from nnunet_tongue import cli
from nnunet_tongue.evaluation import figures
from nnunet_tongue.evaluation.cases import EvaluationError, find_photos
from nnunet_tongue.evaluation.evaluate import REPORT_FILES, evaluate_folders, main
from nnunet_tongue.evaluation.metrics import binary_metrics
from nnunet_tongue.evaluation.report import CSV_COLUMNS

BIOHIT = SHARED_DATA / "biohit"


def square(shape: tuple[int, int], top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + side, left : left + side] = True
    return mask


def save_mask(path: Path, mask: np.ndarray, value: int = 255) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * value).save(path)
    return path


def make_pair(tmp_path: Path, cases: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[Path, Path]:
    """Prediction folder (0/1 PNGs, as nnU-Net writes them) and ground-truth folder (0/255 PNGs)."""
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    for case, (pred, gt) in cases.items():
        save_mask(pred_dir / f"{case}.png", pred, value=1)
        save_mask(gt_dir / f"{case}.png", gt)
    return pred_dir, gt_dir


def three_cases(shape: tuple[int, int] = (48, 64)) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    gt = square(shape, 10, 10, 20)
    return {
        "1": (gt, gt),
        "2": (square(shape, 12, 10, 20), gt),
        "10": (square(shape, 20, 25, 20), gt),
    }


# --- metrics -------------------------------------------------------------------------------------


def test_dice_and_iou_of_two_overlapping_squares():
    # two 10x10 squares overlapping in a 5x5 corner: Dice = 2*25/200, IoU = 25/175
    m = binary_metrics(square((30, 30), 0, 0, 10), square((30, 30), 5, 5, 10))
    assert m["dice"] == pytest.approx(0.25)
    assert m["iou"] == pytest.approx(1 / 7)


def test_identical_masks_score_perfectly():
    gt = square((40, 40), 5, 5, 20)
    assert binary_metrics(gt, gt) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}


def test_bar_shifted_by_k_pixels_has_hd95_and_assd_k():
    # a one-pixel-wide bar is all boundary; each of its pixels is exactly k from the shifted bar
    k = 3
    pred = np.zeros((50, 50), bool)
    gt = np.zeros((50, 50), bool)
    pred[10:40, 20] = True
    gt[10:40, 20 + k] = True
    m = binary_metrics(pred, gt)
    assert m["hd95"] == pytest.approx(k)
    assert m["assd"] == pytest.approx(k)


def test_square_inside_a_one_pixel_larger_square():
    # prediction side s, ground truth one pixel larger on every side. Each of the 4(s-1) prediction
    # boundary pixels is 1 from the ground-truth boundary; of the 4(s+1) ground-truth boundary
    # pixels the 4 corners are sqrt(2) away, the rest 1. Pooled, 4 of 8s distances exceed 1.
    s = 20
    pred = square((40, 40), 10, 10, s)
    gt = square((40, 40), 9, 9, s + 2)
    m = binary_metrics(pred, gt)
    assert m["hd95"] == pytest.approx(1.0)
    assert m["assd"] == pytest.approx((8 * s - 4 + 4 * math.sqrt(2)) / (8 * s))


def test_hd95_ignores_one_stray_pixel_that_assd_counts():
    # 50x50 square (196 boundary pixels) plus one stray predicted pixel 31 below its boundary:
    # 197 + 196 pooled distances, one of them 31, the rest 0
    gt = square((120, 120), 20, 20, 50)
    pred = gt.copy()
    pred[100, 44] = True
    m = binary_metrics(pred, gt)
    assert m["hd95"] == 0.0
    assert m["assd"] == pytest.approx(31 / (197 + 196))


def test_both_masks_empty_is_a_perfect_score():
    empty = np.zeros((30, 40), bool)
    assert binary_metrics(empty, empty) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}


@pytest.mark.parametrize("empty_side", ["pred", "gt"])
def test_one_empty_mask_scores_zero_overlap_and_the_image_diagonal(empty_side):
    full = square((30, 40), 5, 5, 10)
    empty = np.zeros_like(full)
    pred, gt = (empty, full) if empty_side == "pred" else (full, empty)
    diagonal = math.hypot(29, 39)
    assert binary_metrics(pred, gt) == {"dice": 0.0, "iou": 0.0, "hd95": diagonal, "assd": diagonal}


def test_metrics_refuse_masks_of_different_shapes():
    with pytest.raises(ValueError, match="shape"):
        binary_metrics(np.ones((4, 4)), np.ones((4, 5)))


# --- reading masks -------------------------------------------------------------------------------


def test_masks_0_255_and_0_1_mean_the_same(tmp_path):
    gt = square((32, 32), 4, 4, 12)
    pred_dir, gt_dir = make_pair(tmp_path, {"a": (gt, gt)})  # 0/1 vs 0/255
    summary = evaluate_folders(pred_dir, gt_dir, tmp_path / "out", worst=0, workers=1)
    assert summary["metrics"]["dice"]["min"] == 1.0


def test_label_selects_one_value_of_a_label_map(tmp_path):
    gt = np.zeros((32, 32), np.uint8)
    gt[15:30, 15:30] = 2
    gt[2:10, 2:10] = 1
    pred = gt.copy()
    pred[2:10, 2:10] = 0  # disagrees on label 1 only
    for folder, labels in (("pred", pred), ("gt", gt)):
        (tmp_path / folder).mkdir()
        Image.fromarray(labels).save(tmp_path / folder / "x.png")
    any_label = evaluate_folders(tmp_path / "pred", tmp_path / "gt", tmp_path / "a", worst=0, workers=1)
    label_2 = evaluate_folders(tmp_path / "pred", tmp_path / "gt", tmp_path / "b", worst=0, workers=1, label=2)
    assert any_label["metrics"]["dice"]["min"] < 1.0
    assert label_2["metrics"]["dice"]["min"] == 1.0
    assert label_2["conventions"]["foreground"] == "value == 2"


def test_colour_mask_is_refused_with_its_name(tmp_path):
    pred_dir, gt_dir = make_pair(tmp_path, {"a": (square((8, 8), 1, 1, 3),) * 2})
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[1:4, 1:4, 0] = 255
    Image.fromarray(rgb).save(pred_dir / "a.png")
    with pytest.raises(EvaluationError, match=r"a\.png is a colour image"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out", worst=0, workers=1)


def test_photos_match_by_stem_or_nnunet_channel_suffix(tmp_path):
    for name in ("1.jpg", "2_0000.png", "unrelated.webp"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    assert find_photos(tmp_path, ["1", "2", "3"]) == {"1": tmp_path / "1.jpg", "2": tmp_path / "2_0000.png"}


# --- input checks --------------------------------------------------------------------------------


def test_missing_prediction_is_an_error_naming_the_file(tmp_path):
    pred_dir, gt_dir = make_pair(tmp_path, three_cases())
    (pred_dir / "2.png").unlink()
    with pytest.raises(EvaluationError, match=r"no prediction.*2\.png.*--ignore-missing"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out", workers=1)


def test_ignore_missing_scores_the_predicted_subset(tmp_path):
    pred_dir, gt_dir = make_pair(tmp_path, three_cases())
    (pred_dir / "2.png").unlink()
    summary = evaluate_folders(pred_dir, gt_dir, tmp_path / "out", worst=0, workers=1, ignore_missing=True)
    assert summary["n_cases"] == 2
    assert summary["skipped_without_prediction"] == ["2"]


def test_prediction_without_ground_truth_is_an_error_naming_the_file(tmp_path):
    pred_dir, gt_dir = make_pair(tmp_path, three_cases())
    save_mask(pred_dir / "99.png", square((48, 64), 0, 0, 5))
    with pytest.raises(EvaluationError, match=r"no ground truth.*99\.png"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out", workers=1, ignore_missing=True)


def test_size_mismatch_is_an_error_naming_both_sizes_and_the_fix(tmp_path):
    pred_dir, gt_dir = make_pair(tmp_path, three_cases())
    save_mask(pred_dir / "10.png", square((24, 32), 5, 5, 10), value=1)
    with pytest.raises(EvaluationError, match=r"10\.png is 32x24 \(WxH\).*is 64x48.*--resize-to-gt"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out", workers=1)


def test_resize_to_gt_rescales_a_half_size_prediction(tmp_path):
    gt = square((48, 64), 10, 10, 20)
    pred_dir, gt_dir = make_pair(tmp_path, {"a": (gt, gt)})
    save_mask(pred_dir / "a.png", square((24, 32), 5, 5, 10), value=1)
    summary = evaluate_folders(pred_dir, gt_dir, tmp_path / "out", worst=0, workers=1, resize_to_gt=True)
    assert summary["metrics"]["dice"]["min"] == 1.0


def test_resize_to_gt_refuses_another_aspect_ratio(tmp_path):
    gt = square((48, 64), 10, 10, 20)
    pred_dir, gt_dir = make_pair(tmp_path, {"a": (gt, gt)})
    save_mask(pred_dir / "a.png", square((48, 48), 5, 5, 10))
    with pytest.raises(EvaluationError, match="aspect ratios differ"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out", worst=0, workers=1, resize_to_gt=True)


def test_refuses_to_overwrite_a_report_unless_asked(tmp_path):
    pred_dir, gt_dir = make_pair(tmp_path, three_cases())
    evaluate_folders(pred_dir, gt_dir, tmp_path / "out", worst=1, workers=1)
    with pytest.raises(EvaluationError, match="already holds a report.*--overwrite"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out", worst=1, workers=1)
    evaluate_folders(pred_dir, gt_dir, tmp_path / "out", worst=0, workers=1, overwrite=True)
    assert not (tmp_path / "out" / "worst_cases.png").exists()  # the stale sheet went with the old report


def test_report_into_an_input_folder_is_refused(tmp_path):
    pred_dir, gt_dir = make_pair(tmp_path, three_cases())
    with pytest.raises(EvaluationError, match="is an input folder"):
        evaluate_folders(pred_dir, gt_dir, pred_dir, workers=1)


def test_images_folder_without_any_matching_photo_is_an_error(tmp_path):
    pred_dir, gt_dir = make_pair(tmp_path, three_cases())
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (64, 48)).save(tmp_path / "photos" / "other.jpg")
    with pytest.raises(EvaluationError, match="no photo in"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out", images_dir=tmp_path / "photos", workers=1)


# --- report --------------------------------------------------------------------------------------


def test_report_files_columns_and_keys(tmp_path):
    pred_dir, gt_dir = make_pair(tmp_path, three_cases())
    out = tmp_path / "out"
    summary = evaluate_folders(pred_dir, gt_dir, out, worst=2, workers=1)

    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES.values())
    with (out / "per_case.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["case"] for r in rows] == ["1", "2", "10"]  # natural order
    assert json.loads((out / "summary.json").read_text()) == summary
    assert set(summary) == {
        "n_cases", "metrics", "worst_cases", "empty_masks", "skipped_without_prediction",
        "conventions", "inputs", "files",
    }  # fmt: skip
    assert set(summary["metrics"]) == {"dice", "iou", "hd95", "assd"}
    assert set(summary["metrics"]["hd95"]) == {"mean", "sd", "median", "min", "max", "worst_case", "worst_value"}
    assert [w["case"] for w in summary["worst_cases"]] == ["10", "2"]
    for png in ("worst_cases.png", "dice_histogram.png"):
        assert Image.open(out / png).format == "PNG"


def test_worst_means_lowest_overlap_and_largest_distance(tmp_path):
    pred_dir, gt_dir = make_pair(tmp_path, three_cases())
    summary = evaluate_folders(pred_dir, gt_dir, tmp_path / "out", worst=0, workers=1)
    assert summary["metrics"]["dice"]["worst_value"] == summary["metrics"]["dice"]["min"]
    assert summary["metrics"]["hd95"]["worst_value"] == summary["metrics"]["hd95"]["max"]
    assert summary["metrics"]["dice"]["worst_case"] == summary["metrics"]["hd95"]["worst_case"] == "10"


@pytest.mark.parametrize("inside_cwd", [True, False])
def test_worst_case_sheet_title_names_the_prediction_folder_without_the_machines_path(tmp_path, monkeypatch,
                                                                                     inside_cwd):
    pred_dir, gt_dir = make_pair(tmp_path, three_cases())
    titles: list[str] = []
    monkeypatch.setattr(figures, "contact_sheet", lambda tiles, out, title: titles.append(title))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path if inside_cwd else elsewhere)
    evaluate_folders(pred_dir.resolve(), gt_dir, tmp_path / "report", worst=2, workers=1)
    assert titles == [f"2 lowest-Dice case(s) of 3: {'pred' if inside_cwd else pred_dir.resolve()}"]


def test_a_long_sheet_title_never_runs_into_the_legend():
    square = np.zeros((60, 80), dtype=bool)
    square[10:50, 20:60] = True
    tiles = [figures.Tile(str(i), 0.95, 3.0, square, square) for i in range(4)]
    fig = figures.sheet_figure(tiles, "8 lowest-Dice case(s) of 60: " + "a_long_prediction_folder_name/" * 6)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)  # constrained layout places the title and the legend
    title, legend = fig._suptitle.get_window_extent(renderer), fig.legends[0].get_window_extent(renderer)
    assert not title.overlaps(legend)


def test_worker_processes_give_the_same_numbers(tmp_path):
    pred_dir, gt_dir = make_pair(tmp_path, three_cases())
    serial = evaluate_folders(pred_dir, gt_dir, tmp_path / "a", worst=0, workers=1)
    parallel = evaluate_folders(pred_dir, gt_dir, tmp_path / "b", worst=0, workers=2)
    assert serial["metrics"] == parallel["metrics"]


# --- command line --------------------------------------------------------------------------------


def test_cli_prints_a_summary_table_and_returns_zero(tmp_path, capsys):
    pred_dir, gt_dir = make_pair(tmp_path, three_cases())
    assert cli.main(["evaluate", "-p", str(pred_dir), "-g", str(gt_dir), "-o", str(tmp_path / "out"), "-j", "1"]) == 0
    out = capsys.readouterr().out
    assert "dice" in out and "hd95" in out and "3 cases" in out


def test_cli_returns_non_zero_with_the_reason_on_bad_input(tmp_path, capsys):
    pred_dir, gt_dir = make_pair(tmp_path, three_cases())
    (pred_dir / "1.png").unlink()
    assert main(["-p", str(pred_dir), "-g", str(gt_dir), "-o", str(tmp_path / "out")]) == 1
    assert "1.png" in capsys.readouterr().err


# --- real data -----------------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.skipif(not BIOHIT.is_dir(), reason=f"real data not found at {BIOHIT}")
def test_biohit_masks_against_themselves_and_an_eroded_copy(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "eroded"
    for case in ["1", "2", "3", "4", "5"]:
        gt = np.asarray(Image.open(BIOHIT / "masks" / f"{case}.png")) > 0
        save_mask(gt_dir / f"{case}.png", gt)
        save_mask(pred_dir / f"{case}.png", ndimage.binary_erosion(gt, iterations=3), value=1)

    same = evaluate_folders(gt_dir, gt_dir, tmp_path / "same", worst=0, workers=1)
    assert same["metrics"]["dice"]["min"] == 1.0 and same["metrics"]["hd95"]["max"] == 0.0

    out = tmp_path / "report"
    summary = evaluate_folders(
        pred_dir, gt_dir, out, images_dir=BIOHIT / "images", worst=4, workers=2
    )
    assert summary["n_cases"] == 5
    assert 0.9 < summary["metrics"]["dice"]["max"] < 1.0
    # the boundary moved 3 steps inward on the 4-neighbour grid: between 3/sqrt(2) and 3 pixels
    assert 2.0 <= summary["metrics"]["hd95"]["min"] and summary["metrics"]["hd95"]["max"] <= 3.0
    assert summary["inputs"]["photos_matched"] == 5
    assert Image.open(out / "worst_cases.png").size[0] > 1000
