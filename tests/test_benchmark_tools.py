"""The benchmark scripts' own rules: operation counts and which settings a published table may change."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(script: str):
    spec = importlib.util.spec_from_file_location(script, BENCHMARKS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_operation_count_ranks_the_lean_decoder_between_plainconvunet_and_the_tunet():
    count = load("network_speed").count_flops
    patch = [64, 96]
    plain, tunet, lean = (count(n, patch) for n in ("PlainConvUNet", "TUNet", "TUNetLean"))
    assert plain < lean < tunet


def test_fast_tunet_needs_fewer_operations_than_plainconvunet_at_the_biohit_plan():
    count = load("network_speed").count_flops
    patch = [640, 768]  # nnU-Net's 2d patch for the full-resolution BioHit photos
    assert count("TUNetFast", patch) < 0.9 * count("PlainConvUNet", patch)


def test_operation_count_grows_with_the_patch():
    count = load("network_speed").count_flops
    assert count("TUNet", [128, 192]) > 3 * count("TUNet", [64, 96])


def test_benchmark_refuses_to_change_a_published_tier_without_a_study_name():
    run = subprocess.run([sys.executable, str(BENCHMARKS / "biohit_benchmark.py"), "--tier", "gpu", "--compile",
                          "--epochs", "3"], capture_output=True, text=True)
    assert run.returncode == 2
    assert "--epochs, --compile change the settings" in run.stderr and "--study NAME" in run.stderr


def test_a_resumed_cross_dataset_training_counts_the_epochs_done_before_it_stopped(tmp_path, monkeypatch):
    import torch

    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling biohit_benchmark
    epochs_done_s = load("cross_dataset").epochs_done_s
    checkpoint = tmp_path / "checkpoint_latest.pth"
    torch.save({"logging": {"epoch_start_timestamps": [100.0, 130.0], "epoch_end_timestamps": [125.0, 160.0]}},
               checkpoint)
    assert epochs_done_s(checkpoint) == 55.0


def test_cross_dataset_tiers_keep_their_worst_case_sheets_apart(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    cross_dataset = load("cross_dataset")
    names = {tier: cross_dataset.sheet_name(tier, "nnUNetTrainerAdamW", "biohit", "ntust")
             for tier in cross_dataset.TIERS}
    assert len(set(names.values())) == len(cross_dataset.TIERS)
    assert names["cpu"] == "nnUNetTrainerAdamW_biohit_on_ntust"  # the names docs/cross_dataset.md links


def test_cross_dataset_trainings_of_one_cell_keep_their_worst_case_sheets_apart(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sheet_name = load("cross_dataset").sheet_name
    names = [sheet_name("cpu_long", "nnUNetTrainerUNet320CoatingAug", "biohit", "ntust", repeat)
             for repeat in (1, 2, 3)]
    assert len(set(names)) == 3
    assert names[0] == "cpu_long_nnUNetTrainerUNet320CoatingAug_biohit_on_ntust"  # the first training's, as linked


def test_cross_dataset_tiers_at_one_resolution_share_their_prepared_data(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    tier_workdir = load("cross_dataset").tier_workdir
    assert tier_workdir("cpu_long") == tier_workdir("cpu") == "cpu"
    assert tier_workdir("gpu") == "gpu"  # full resolution: converted and preprocessed apart


def _tongue(top: int) -> np.ndarray:
    """A rectangular 'tongue' from row ``top`` down to row 90."""
    mask = np.zeros((100, 80), dtype=bool)
    mask[top:90, 20:60] = True
    return mask


def test_root_errors_count_a_root_drawn_higher_in_the_truth_as_root_under():
    root = load("root_errors")
    gt, pred = _tongue(10), _tongue(20)  # the truth reaches 10 rows higher; the rest agrees
    row = root.case_errors(pred, gt)
    assert (row["fn_root"], row["fp_root"], row["fp_rest"], row["fn_rest"]) == (400, 0, 0, 0)
    assert root.side(row) == "under" and row["dice_true_roots"] == 1.0


def test_root_errors_leave_errors_below_the_root_band_out_of_the_root():
    root = load("root_errors")
    gt = _tongue(10)
    pred = gt.copy()
    pred[80:90] = False  # the tip cut short
    row = root.case_errors(pred, gt)
    assert row["fn_rest"] == 400 and row["fn_root"] == 0 and root.side(row) is None
    assert row["dice_true_roots"] == row["dice"] < 1.0


def test_moving_the_predicted_root_line_up_by_the_gap_matches_the_truth():
    root = load("root_errors")
    gt, pred = _tongue(10), _tongue(14)
    assert root.case_errors(pred, gt)["dice_root_moved_+4"] == 1.0
    assert root.case_errors(_tongue(6), gt)["dice_root_moved_-4"] == 1.0


def _coloured_tongue() -> tuple:
    """A 240 x 180 photo whose tongue (an off-centre ellipse) is red on blue, and its truth mask (0 / 1)."""
    from PIL import Image

    yy, xx = np.mgrid[:180, :240]
    mask = ((xx - 140) / 50) ** 2 + ((yy - 100) / 60) ** 2 <= 1
    photo = np.where(mask[..., None], [220, 40, 40], [40, 40, 220]).astype(np.uint8)
    return Image.fromarray(photo), Image.fromarray(mask.astype(np.uint8))


def test_camera_shift_tilt_moves_the_truth_with_the_photo_and_shows_no_fill(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    shift = load("camera_shift").tilted(15)
    photo, mask = shift(*_coloured_tongue(), "case")
    rgb, truth = np.asarray(photo).astype(int), np.asarray(mask).astype(bool)
    assert rgb.shape[:2] == truth.shape and truth.shape[0] < 180 and truth.any()
    red = rgb[..., 0] > rgb[..., 2]
    assert (red == truth).mean() > 0.99  # the truth follows the rotated tongue, up to its interpolated edge
    assert (rgb.sum(axis=2) > 250).all()  # no black (or half-black) corner from outside the photo


def test_camera_shift_shrunk_photo_gets_a_truth_of_its_size(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    photo, mask = _coloured_tongue()
    small_photo, small_mask = load("camera_shift").shrunk(120, 70)(photo, mask, "case")
    assert small_photo.size == small_mask.size == (120, 90)
    share = np.asarray(small_mask).astype(bool).mean()
    assert abs(share - np.asarray(mask).mean()) < 0.01


def test_camera_shift_light_is_applied_in_linear_light(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    camera_shift = load("camera_shift")
    photo, mask = _coloured_tongue()
    same, _ = camera_shift.gains(1.0, 1.0, 1.0)(photo, mask, "case")
    assert np.array_equal(np.asarray(same), np.asarray(photo))  # sRGB -> linear -> sRGB loses nothing
    darker, kept = camera_shift.gains(0.5, 0.5, 0.5)(photo, mask, "case")
    assert kept is mask and np.asarray(darker)[100, 140, 0] == 161  # half the light of 220 is 161 in sRGB, not 110


def test_sharpness_calibration_puts_the_lens_before_the_sensor(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sharpness_flag = load("sharpness_flag")
    photo, mask = _coloured_tongue()
    lens_first = np.asarray(sharpness_flag.shifted(photo, mask, "case", "blurred_noisy"), dtype=float)
    blurred = np.asarray(sharpness_flag.shifted(photo, mask, "case", "blurred"), dtype=float)
    assert np.abs(lens_first - blurred).mean() > 5  # the noise lies on top of the blur, not blurred away


def test_only_the_bundled_recipe_and_budget_replace_the_bundled_model(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bundled_model = load("bundled_model")
    parse = bundled_model.parser().parse_args
    assert not bundled_model.is_candidate(parse([]))
    assert not bundled_model.is_candidate(parse(["--epochs", "25", "--iterations", "250"]))  # the bundled budget
    assert bundled_model.is_candidate(parse(["--epochs", "128", "--iterations", "12"]))  # the earlier studies'
    assert bundled_model.is_candidate(parse(["--iterations", "12"]))
    assert bundled_model.is_candidate(parse(["--repeat", "2"]))


def test_a_candidate_trained_at_the_bundled_size_is_fed_as_the_bundled_model_is(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bundled_model = load("bundled_model")
    parse = bundled_model.parser().parse_args
    name, fed_at = bundled_model.candidate_name(parse(["--repeat", "2"]), "T_25epochs")
    assert fed_at == bundled_model.SEGMENT_MAX_SIZE != bundled_model.MAX_SIZE
    assert name == f"T_25epochs_repeat2_at{fed_at}px"  # never scored from masks made at the training size
    name, fed_at = bundled_model.candidate_name(parse(["--max-size", "256", "--from-bundled"]), "T_16epochs")
    assert fed_at is None and name == f"T_16epochs_256px_from_{bundled_model.DEFAULT_MODEL}"


def test_the_two_source_dataset_reaches_the_gpu_machine_with_the_same_pixels(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    name = load("cross_dataset").dataset_name("both")
    work = tmp_path / "work"
    raw, preprocessed = work / "raw" / name, work / "preprocessed" / name
    for folder in (raw / "imagesTr", raw / "labelsTr", preprocessed):
        folder.mkdir(parents=True)
    photo = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)  # noise: no lossy codec keeps it
    Image.fromarray(photo).save(raw / "imagesTr" / "biohit_1_0000.png")
    Image.fromarray((photo[..., 0] > 127).astype(np.uint8)).save(raw / "labelsTr" / "biohit_1.png")
    (raw / "dataset.json").write_text('{"name": "BioHitNTUST"}')
    (preprocessed / "nnUNetPlans.json").write_text("{}")

    load("device_bundle").pack_two_source(work, tmp_path / "carried")
    load("device_bundled").unpack(tmp_path / "carried", tmp_path / "there")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "there" / "imagesTr" / "biohit_1_0000.png")), photo)
    assert (tmp_path / "there" / "labelsTr" / "biohit_1.png").read_bytes() == \
        (raw / "labelsTr" / "biohit_1.png").read_bytes()
    assert (tmp_path / "there" / "dataset.json").read_text() == '{"name": "BioHitNTUST"}'


def _gpu_trained_model(results: Path) -> tuple[Path, dict]:
    import torch

    model = results / "nnUNetTrainerUNet320CoatingAug_2epochs_250its_3val_bs11__nnUNetPlans__2d"
    (model / "fold_all").mkdir(parents=True)
    (model / "plans.json").write_text("{}")
    weights = {"conv.weight": torch.arange(600.0)}
    torch.save({"network_weights": weights, "optimizer_state": {"exp_avg": torch.zeros(600)},
                "logging": {"epoch_start_timestamps": [100.0, 110.0], "epoch_end_timestamps": [109.0, 119.0]}},
               model / "fold_all" / "checkpoint_final.pth")
    torch.save({"network_weights": weights}, model / "fold_all" / "checkpoint_best.pth")
    return model, weights


def test_the_gpu_trained_model_comes_home_in_parts_without_its_optimiser_state(tmp_path, monkeypatch):
    import torch

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    device_bundled = load("device_bundled")
    monkeypatch.setattr(device_bundled, "PART_BYTES", 1024)
    model, weights = _gpu_trained_model(tmp_path / "there")
    out = tmp_path / "out"
    out.mkdir()
    device_bundled.package(model, tmp_path, out, started=0.0, device="cpu")
    assert len(list(out.glob("bundled_model.tar.*"))) > 2

    home = device_bundled.bring_home(out, tmp_path / "home")
    checkpoint = torch.load(home / "fold_all" / "checkpoint_final.pth", weights_only=False)
    assert "optimizer_state" not in checkpoint
    assert torch.equal(checkpoint["network_weights"]["conv.weight"], weights["conv.weight"])
    assert not (home / "fold_all" / "checkpoint_best.pth").exists()
    assert json.loads((home / "fold_all" / "device.json").read_text())["train_wall_s"] == 19


def test_bringing_a_gpu_trained_model_home_never_overwrites_one_there(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    device_bundled = load("device_bundled")
    model, _ = _gpu_trained_model(tmp_path / "there")
    out = tmp_path / "out"
    out.mkdir()
    device_bundled.package(model, tmp_path, out, started=0.0, device="cpu")
    home = device_bundled.bring_home(out, tmp_path / "home")
    (home / "fold_all" / "mine.txt").write_text("kept")
    with pytest.raises(SystemExit, match="exists"):
        device_bundled.bring_home(out, tmp_path / "home")
    assert (home / "fold_all" / "mine.txt").read_text() == "kept"


def test_convex_hull_benchmark_scores_a_mask_with_a_bite_out_of_it_higher_after_the_hull(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    compare = load("convex_hull").compare
    rows, cols = np.mgrid[:80, :80]
    tongue = (rows - 40) ** 2 + (cols - 40) ** 2 < 30 ** 2
    bitten = tongue & ~((rows < 40) & (abs(cols - 40) < 12))  # the coated back left out: a bite from the top
    for folder, mask in (("pred", bitten), ("truth", tongue)):
        (tmp_path / folder).mkdir()
        for case in ("a", "b"):
            Image.fromarray(mask.astype(np.uint8)).save(tmp_path / folder / f"{case}.png")
    scored = compare(tmp_path / "pred", tmp_path / "truth")
    assert scored["dice_mean"] < 90 < scored["hull_dice_mean"]
    assert (scored["hull_vs_as_written"]["photos_higher"], scored["below_90"], scored["hull_below_90"]) == (2, 2, 0)


def _training(folder: Path, plans: dict) -> Path:
    """A model folder as a finished cross-dataset training leaves it (checkpoint contents not needed)."""
    (folder / "fold_0").mkdir(parents=True)
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"weights")
    (folder / "plans.json").write_text(json.dumps(plans))
    for name in ("dataset.json", "dataset_fingerprint.json"):
        (folder / name).write_text("{}")
    return folder


def test_an_ensemble_folder_holds_each_training_as_one_of_its_folds(tmp_path, monkeypatch):
    from nnunet_tongue.inference.segmenter import detect_folds

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    trainings = [_training(tmp_path / f"results{i}" / "model", {"plans_name": "nnUNetPlans"}) for i in range(3)]
    folder = load("ensemble").ensemble_folder(tmp_path / "ensemble", trainings)
    assert detect_folds(folder) == [0, 1, 2]  # segment averages the logits of all three
    assert [(folder / f"fold_{i}").resolve() for i in range(3)] == [t / "fold_0" for t in trainings]


def test_trainings_with_different_plans_are_not_ensembled(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    trainings = [_training(tmp_path / name, {"plans_name": name}) for name in ("nnUNetPlans", "nnUNetPlansBundledNet")]
    with pytest.raises(SystemExit, match="different plans"):
        load("ensemble").ensemble_folder(tmp_path / "ensemble", trainings)


def _segmented_and_scored(tmp_path: Path, photos: dict[str, tuple[float, list[str]]]) -> tuple[Path, Path]:
    """A segment output folder (JSON lines) and an evaluate output folder (per_case.csv) for {case: (Dice, flags)}."""
    segmented, evaluation = tmp_path / "seg", tmp_path / "report"
    segmented.mkdir()
    evaluation.mkdir()
    (segmented / "segment.jsonl").write_text("".join(json.dumps({"name": case, "flags": flags}) + "\n"
                                                     for case, (_, flags) in photos.items()))
    (evaluation / "per_case.csv").write_text("case,dice,iou\n" + "".join(f"{case},{d / 100},0.5\n"
                                                                         for case, (d, _) in photos.items()))
    return segmented, evaluation


def test_flag_recall_counts_a_wrong_photo_as_caught_only_when_a_flag_was_raised_on_it(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    segmented, evaluation = _segmented_and_scored(tmp_path, {
        "lost": (60.0, ["low_confidence"]), "root": (85.0, []), "edge": (98.0, ["cut_by_border"]), "fine": (97.0, [])})
    roots = tmp_path / "roots.json"
    roots.write_text(json.dumps({"cases": {"root": {"dice_true_roots": 0.95}}}))
    out = tmp_path / "recall.json"
    load("flag_recall").main(["--segmented", str(segmented), "--evaluation", str(evaluation),
                              "--root-errors", str(roots), "--json", str(out)])
    found = json.loads(out.read_text())
    assert (found["wrong"], found["wrong_flagged"], found["flagged"]) == (2, 1, 2)
    assert found["per_flag"] == {"cut_by_border": {"raised": 1, "wrong_among_them": 0},
                                 "low_confidence": {"raised": 1, "wrong_among_them": 1}}
    assert found["wrong_unflagged"] == {"root": 85.0}
    assert found["wrong_unflagged_reaching_below_with_true_roots"] == 1


def test_flag_recall_refuses_scores_of_photos_it_has_no_segment_line_for(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    segmented, evaluation = _segmented_and_scored(tmp_path, {"a": (95.0, [])})
    (evaluation / "per_case.csv").write_text("case,dice\na,0.95\nb,0.5\n")
    with pytest.raises(ValueError, match="no segment line for 1 scored photo"):
        load("flag_recall").main(["--segmented", str(segmented), "--evaluation", str(evaluation)])
