"""Fault injection for ``segment`` and ``evaluate``: interrupts at random points, failing photos, unusable outputs.

Each test states what a user finds afterwards: nothing lost, nothing half-written where a later run would
read it, and the same command run again succeeds. (``convert``: tests/test_convert_faults.py.)
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import fill_up

from nnunet_tongue.inference.segment import OUTPUT_KINDS, segment_photos
from nnunet_tongue.inference.segmenter import TongueSegmenter
from nnunet_tongue.interrupts import signal_name
from nnunet_tongue.synthetic import make_tongue_photo
from nnunet_tongue.workspace import console_script

pytestmark = pytest.mark.integration

N_PHOTOS = 24


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    for i in range(N_PHOTOS):
        rgb, _ = make_tongue_photo(rng, 96, 64)
        Image.fromarray(rgb).save(folder / f"p{i:02d}.jpg", quality=90)
    return folder


def start_segment(model, photos: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [console_script("nnunet-tongue"), "segment", "-i", str(photos), "-o", str(out), "-m",
               str(model.model_folder), "-device", "cpu", "--no-progress", *extra]
    return subprocess.Popen(command, env=model.nnunet.environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_first_line(proc: subprocess.Popen, partial: Path, timeout: float = 600) -> None:
    """Until the command has written its first JSONL line (a loaded 2-core machine can take minutes)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if partial.exists() and partial.read_text().count("\n") >= 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"no JSONL line within {timeout:.0f} s (exit status {proc.poll()})")


def assert_the_same_command_finishes(model, photos: Path, out: Path) -> None:
    """Run the same segment command again: exit 0, every photo done, a finished JSONL listing them all."""
    again = start_segment(model, photos, out)
    _, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr
    names = {p.stem for p in photos.glob("*.jpg")}
    assert assert_whole_outputs(out) == names
    records = [json.loads(line) for line in (out / "segment.jsonl").read_text().splitlines()]
    assert len(records) == len(names) and all(r["status"] == "ok" for r in records)


def assert_whole_outputs(out: Path) -> set[str]:
    """Every photo has all three outputs or none; no temporary file is left. Returns the names done."""
    done = [{p.stem for p in (out / folder).glob(f"*{suffix}")} for folder, suffix in OUTPUT_KINDS.values()]
    assert done[0] == done[1] == done[2], "a photo has some of its outputs but not all"
    assert not [p for p in out.rglob("*.partial") if p.name != ".segment.jsonl.partial"], "temporary files left"
    return done[0]


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory) -> Path:
    """Enough photos that a run lasts seconds: an interrupt lands mid-batch (at the tiny model's training size,
    one patch each)."""
    folder = tmp_path_factory.mktemp("many_photos")
    rng = np.random.default_rng(5)
    for i in range(8 * N_PHOTOS):
        rgb, _ = make_tongue_photo(rng, 96, 64)
        Image.fromarray(rgb).save(folder / f"p{i:03d}.jpg", quality=90)
    return folder


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_segment_interrupted_anywhere_leaves_whole_outputs_and_the_same_command_finishes(
        trained_tongue_model, many_photos, tmp_path, signum, status):
    out = tmp_path / "out"
    proc = start_segment(trained_tongue_model, many_photos, out)
    wait_for_first_line(proc, out / ".segment.jsonl.partial")
    time.sleep(random.uniform(0, 1.0))
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == status and "Traceback" not in stderr, stderr
    assert f"interrupted by {signal_name(signum)}" in stderr and "Run the same command again" in stderr
    assert not (out / "segment.jsonl").exists(), "an interrupted run must not look finished"
    assert 0 < len(assert_whole_outputs(out)) < 8 * N_PHOTOS

    assert_the_same_command_finishes(trained_tongue_model, many_photos, out)


def test_photo_failing_mid_batch_leaves_no_output_of_its_own(trained_tongue_model, photo_folder, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted(photo_folder.glob("*.jpg"))[:3]:
        (photos / p.name).write_bytes(p.read_bytes())
    (photos / "broken.jpg").write_bytes((photo_folder / "p00.jpg").read_bytes()[:300])  # truncated JPEG
    segmenter = TongueSegmenter(trained_tongue_model.model_folder, device="cpu")
    report = segment_photos(photos, tmp_path / "out", segmenter, progress=False)
    assert [Path(f.photo).name for f in report.failures] == ["broken.jpg"]
    assert assert_whole_outputs(tmp_path / "out") == {"p00", "p01", "p02"}


def test_overwrite_removes_the_outputs_an_earlier_run_listed_and_this_one_does_not_write(trained_tongue_model,
                                                                                        photo_folder, tmp_path):
    segmenter = TongueSegmenter(trained_tongue_model.model_folder, device="cpu")
    out = tmp_path / "out"
    segment_photos([photo_folder / "p00.jpg", photo_folder / "p01.jpg"], out, segmenter, progress=False)
    (out / "masks" / "notes.txt").write_bytes(b"not segment's")
    segment_photos([photo_folder / "p00.jpg"], out, segmenter, overwrite=True, progress=False)
    assert assert_whole_outputs(out) == {"p00"}
    assert (out / "masks" / "notes.txt").read_bytes() == b"not segment's"  # not listed by segment: kept
    assert len((out / "segment.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("output", ["a_file", "a_file/below"])
def test_unusable_output_folder_is_refused_before_the_model_loads(tmp_path, photo_folder, capsys, output):
    from nnunet_tongue.inference.segment import main

    (tmp_path / "a_file").write_text("x")
    # the model folder does not exist: reaching the model would give another error
    code = main(["-i", str(photo_folder / "p00.jpg"), "-o", str(tmp_path / output), "-m", str(tmp_path / "nomodel"),
                 "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / output) in err and "-o" in err and "model folder not found" not in err


def test_huge_photo_for_a_model_without_training_size_gets_a_warning_with_the_fix(trained_tongue_model, tmp_path,
                                                                                  capsys):
    rgb, _ = make_tongue_photo(np.random.default_rng(5), 2100, 64)
    Image.fromarray(rgb).save(tmp_path / "wide.jpg")
    segmenter = TongueSegmenter(trained_tongue_model.model_folder, device="cpu")
    assert segmenter.max_size is None
    segment_photos([tmp_path / "wide.jpg"], tmp_path / "out", segmenter, progress=False)
    err = capsys.readouterr().err
    assert "wide.jpg is 2100 px" in err and "--max-size" in err


# --- evaluate ------------------------------------------------------------------------------------------------------


def write_masks(folder: Path, n: int, value: int, seed: int, size: int = 64) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        mask = np.zeros((size, size * 3 // 2), np.uint8)
        top, left = rng.integers(5, size // 3), rng.integers(5, size // 2)
        mask[top:top + size // 2, left:left + size * 2 // 3] = value
        Image.fromarray(mask).save(folder / f"c{i:03d}.png")


def evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([console_script("nnunet-tongue"), "evaluate", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_evaluate_interrupted_leaves_no_finished_looking_report_and_the_same_command_finishes(tmp_path, signum,
                                                                                            status):
    write_masks(tmp_path / "pred", 150, 255, 1, size=384)  # large enough that scoring takes seconds
    write_masks(tmp_path / "gt", 150, 1, 2, size=384)
    command = [console_script("nnunet-tongue"), "evaluate", "-p", str(tmp_path / "pred"), "-g", str(tmp_path / "gt"),
               "-o", str(tmp_path / "report"), "-j", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "report").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # the report folder appears once the inputs are checked and scoring starts
    time.sleep(random.uniform(0, 1.5))
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    if not (tmp_path / "report" / "summary.json").exists():  # stopped before the end (else it had finished
        assert proc.returncode == status and "Traceback" not in stderr  # and the signal met the exiting process)
        assert f"interrupted by {signal_name(signum)}" in stderr, stderr
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 or "already holds a report" in again.stderr  # finished before the signal
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["n_cases"] == 150


def test_evaluate_refuses_a_label_value_one_mask_set_does_not_use(tmp_path):
    write_masks(tmp_path / "pred", 3, 1, 1)  # nnU-Net style 0/1
    write_masks(tmp_path / "gt", 3, 255, 2)  # 0/255
    result = evaluate("-p", str(tmp_path / "pred"), "-g", str(tmp_path / "gt"), "-o", str(tmp_path / "r"),
                      "--label", "255", "-j", "1")
    assert result.returncode == 1 and "no pixel of value 255" in result.stderr and "c000.png" in result.stderr
    assert not (tmp_path / "r" / "summary.json").exists()
    both_other = evaluate("-p", str(tmp_path / "gt"), "-g", str(tmp_path / "gt"), "-o", str(tmp_path / "r2"),
                          "--label", "1", "-j", "1")
    assert both_other.returncode == 1 and "no pixel of value 1" in both_other.stderr  # not Dice 1.0 on empties


def test_evaluate_refuses_an_unwritable_report_folder_before_scoring(tmp_path):
    write_masks(tmp_path / "pred", 3, 255, 1)
    write_masks(tmp_path / "gt", 3, 255, 2)
    (tmp_path / "a_file").write_text("x")
    result = evaluate("-p", str(tmp_path / "pred"), "-g", str(tmp_path / "gt"), "-o", str(tmp_path / "a_file" / "r"))
    assert result.returncode == 1 and "cannot write the report" in result.stderr and "Traceback" not in result.stderr


def test_evaluate_on_a_full_disk_keeps_no_half_report_and_the_same_command_finishes(tmp_path, small_disk):
    disk, _ = small_disk
    write_masks(tmp_path / "pred", 20, 255, 1)
    write_masks(tmp_path / "gt", 20, 255, 2)
    filler = fill_up(disk, leave=4096)  # room for the per-case table, not for the contact sheet
    args = ("-p", str(tmp_path / "pred"), "-g", str(tmp_path / "gt"), "-o", str(disk / "r"), "-j", "1")
    result = evaluate(*args)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "No space left on device" in result.stderr and "run the command again" in result.stderr
    assert list((disk / "r").iterdir()) == []  # the table written before the disk filled up is gone too
    filler.unlink()
    result = evaluate(*args)
    assert result.returncode == 0, result.stderr
    assert json.loads((disk / "r" / "summary.json").read_text())["n_cases"] == 20


def test_evaluate_replaces_what_an_interrupted_run_left_without_overwrite(tmp_path):
    write_masks(tmp_path / "pred", 3, 255, 1)
    write_masks(tmp_path / "gt", 3, 255, 2)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "per_case.csv").write_text("half a table")
    result = evaluate("-p", str(tmp_path / "pred"), "-g", str(tmp_path / "gt"), "-o", str(tmp_path / "r"), "-j", "1")
    assert result.returncode == 0, result.stderr
    assert "half a table" not in (tmp_path / "r" / "per_case.csv").read_text()


def test_ctrl_c_while_a_command_is_still_importing_prints_one_line_not_a_traceback(tmp_path):
    write_masks(tmp_path / "pred", 150, 255, 1, size=384)  # scoring takes seconds, should the imports be quick
    write_masks(tmp_path / "gt", 150, 255, 2, size=384)
    proc = subprocess.Popen([console_script("nnunet-tongue"), "evaluate", "-p", str(tmp_path / "pred"), "-g",
                             str(tmp_path / "gt"), "-o", str(tmp_path / "r"), "-j", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # the dispatcher runs; the command's modules (numpy, scipy, medpy, ...) load, or scoring began
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr


def test_a_full_disk_stops_the_batch_keeps_whole_outputs_and_the_same_command_finishes(trained_tongue_model,
                                                                                       photo_folder, small_disk):
    disk, grow = small_disk
    out = disk / "out"
    proc = start_segment(trained_tongue_model, photo_folder, out)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1
    assert "No space left on device" in err and "run the same command again" in err
    assert "Traceback" not in err
    done = assert_whole_outputs(out)
    assert 0 < len(done) < N_PHOTOS
    assert not (out / "segment.jsonl").exists()  # no finished-looking JSONL
    grow()
    assert_the_same_command_finishes(trained_tongue_model, photo_folder, out)


@pytest.mark.parametrize("stop", ["disk_full", "ctrl_c"])
def test_a_stop_just_before_a_photos_jsonl_line_leaves_no_unlisted_outputs(trained_tongue_model, photo_folder,
                                                                            tmp_path, monkeypatch, stop):
    """The photo's outputs are in place, its line is not written yet: a full disk or Ctrl-C right then takes
    its outputs away too, so the same call finishes the job without --overwrite."""
    import errno

    from nnunet_tongue.inference import segment
    from nnunet_tongue.inference.segment import OutputFullError

    real, calls = segment._write_line, []

    def stops(file, line):
        calls.append(line)
        if len(calls) == 3:
            if stop == "ctrl_c":
                raise KeyboardInterrupt
            raise OSError(errno.ENOSPC, "No space left on device")
        real(file, line)

    monkeypatch.setattr(segment, "_write_line", stops)
    segmenter = TongueSegmenter(trained_tongue_model.model_folder, device="cpu")
    photos = sorted(photo_folder.glob("*.jpg"))[:5]
    if stop == "ctrl_c":
        with pytest.raises(KeyboardInterrupt):
            segment_photos(photos, tmp_path / "out", segmenter, progress=False)
    else:
        with pytest.raises(OutputFullError, match="stopped after 2 photo"):
            segment_photos(photos, tmp_path / "out", segmenter, progress=False)
    assert assert_whole_outputs(tmp_path / "out") == {"p00", "p01"}  # p02's outputs went with its line
    monkeypatch.undo()
    report = segment_photos(photos, tmp_path / "out", segmenter, progress=False)  # no --overwrite needed
    assert len(report.records) == 5
