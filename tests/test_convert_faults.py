"""Fault injection for ``nnunet-tongue convert``: SIGINT (Ctrl-C) and SIGTERM at random points with 1 and 2 workers,
kill -9, a read-only output folder, broken photos in worker processes. Every run is a real subprocess on small
synthetic photos made in tmp; the whole file takes well under 2 minutes. ``CONVERT_FAULTS_SEED=N`` replays other
random points (the seed is in every assertion message)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import fill_up

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(),
                                reason="needs Linux /proc to find worker processes")

DATASET = "Dataset501_Tongue"
N_CASES = 32
#: a clean stop must end the process within this many seconds of the signal: it takes 0.1-0.5 s on an idle machine,
#: the rest is headroom for a busy 2-core one (a hang, or the old run-every-case-then-fail, runs into RUN_SECONDS)
STOP_SECONDS = 8.0
#: upper bound for one whole run (interpreter start-up included) on a busy 2-core machine
RUN_SECONDS = 60.0
SEED = int(os.environ.get("CONVERT_FAULTS_SEED", "20251201"))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """``images/cNNN.jpg`` + ``masks/cNNN.png``: noisy 480x360 photos, so that a run lasts a second or two."""
    root = tmp_path_factory.mktemp("faults_src")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    w, h = 480, 360
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((((xx - w / 2) / (w * 0.25)) ** 2 + ((yy - h * 0.55) / (h * 0.3)) ** 2) < 1).astype(np.uint8) * 255
    rng = np.random.default_rng(0)
    for i in range(N_CASES):
        photo = np.clip(rng.integers(40, 160, 3) + np.stack([xx, yy, xx + yy], -1) // 8
                        + rng.integers(0, 40, (h, w, 3)), 0, 255)
        Image.fromarray(photo.astype(np.uint8)).save(root / "images" / f"c{i:03d}.jpg", quality=90)
        Image.fromarray(mask).save(root / "masks" / f"c{i:03d}.png")
    return root


def command(src: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "nnunet_tongue.conversion.convert", str(src), "-o", str(out), "-j", str(workers),
            "--no-progress", "--overwrite"]


def start(args: list[str]) -> subprocess.Popen:
    """The command in its own process group (pgid = its pid), as a shell runs a foreground job."""
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are still running (zombies excluded)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _ppid, group = text[text.rindex(")") + 2 :].split()[:3]
        if int(group) == pgid and state != "Z":
            found.append(int(stat.parent.name))
    return found


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for(condition, proc: subprocess.Popen, timeout: float = RUN_SECONDS) -> None:
    """Poll until ``condition()`` holds or the process has ended."""
    end = time.monotonic() + timeout
    while not condition() and proc.poll() is None:
        assert time.monotonic() < end, "the run never got going"
        time.sleep(0.005)


def no_group_left(pgid: int, within: float = 3.0) -> bool:
    end = time.monotonic() + within
    while live_members(pgid):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def hidden(out: Path) -> list[str]:
    """What a run leaves of itself beside the dataset: staging folders, lock file, moved-aside datasets."""
    return sorted(p.name for p in out.glob(f".{DATASET}*")) if out.is_dir() else []


def assert_complete(folder: Path) -> None:
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["numTraining"] == N_CASES
    assert (len(list((folder / "imagesTr").glob("*_0000.png"))) == N_CASES
            == len(list((folder / "labelsTr").glob("*.png"))))
    assert (folder / "conversion_cases.csv").is_file() and (folder / "conversion_report.json").is_file()
    with Image.open(folder / "labelsTr" / "c000.png") as im:
        assert im.size == (480, 360)


def run_to_the_end(args: list[str]) -> subprocess.CompletedProcess:
    proc = start(args)
    try:
        out, err = proc.communicate(timeout=RUN_SECONDS)
        assert no_group_left(proc.pid), "worker processes outlived the run"
    finally:
        kill_group(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_stopping_the_pool_while_its_manager_thread_is_being_started_does_not_fail():
    """Ctrl-C can land inside ``pool.submit()`` after the manager thread is made and before it runs."""
    import threading
    from concurrent.futures import ProcessPoolExecutor

    from nnunet_tongue.conversion.convert import _stop_pool

    pool = ProcessPoolExecutor(max_workers=1)
    pool._executor_manager_thread = threading.Thread(target=lambda: None)  # made, never started
    _stop_pool(pool)


# ---------------------------------------------------------------- signals at random points


@pytest.mark.parametrize(
    ("signum", "to_group", "workers", "trials"),
    [
        (signal.SIGINT, True, 2, 2),  # Ctrl-C in a terminal: the whole foreground group gets it, workers included
        (signal.SIGINT, True, 1, 1),
        (signal.SIGTERM, False, 2, 2),  # kill PID
        (signal.SIGTERM, True, 2, 1),  # a scheduler or timeout ending the whole group
        (signal.SIGTERM, False, 1, 1),
    ],
    ids=["sigint-group-j2", "sigint-group-j1", "sigterm-j2", "sigterm-group-j2", "sigterm-j1"],
)
def test_signal_at_random_points_stops_cleanly_and_the_rerun_completes(tmp_path, source, signum, to_group, workers,
                                                                       trials):
    rng = random.Random(f"{SEED}-{signum}-{to_group}-{workers}")
    out = tmp_path / "raw"
    args = command(source, out, workers)
    for trial in range(trials):
        delay = rng.uniform(0.0, 1.5)
        where = f"seed {SEED}, trial {trial}, {delay:.2f} s after the run began to write"
        had_dataset = (out / DATASET).is_dir()
        proc = start(args)
        try:
            # the lock (main() and its handlers are in place) or a staging folder
            wait_for(lambda: bool(hidden(out)), proc)
            time.sleep(delay)
            sent = time.monotonic()
            if proc.poll() is None:
                (os.killpg if to_group else os.kill)(proc.pid, signum)
            stdout, err = proc.communicate(timeout=RUN_SECONDS)
            stopped_after = time.monotonic() - sent
            workers_gone = no_group_left(proc.pid)
        finally:
            kill_group(proc.pid)
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert "Traceback" not in err, f"{where}:\n{err}"
        assert stopped_after < STOP_SECONDS, f"{where}: took {stopped_after:.1f} s to stop\n{err}"
        assert workers_gone, f"{where}: worker processes left"
        assert hidden(out) == [], f"{where}: left {hidden(out)}"
        if f"wrote {out / DATASET}" in stdout or "it is complete" in err:  # it had published before the signal came
            # exit 0; or the signal's own status (128 + n, or killed by it once main() had returned: a shell shows
            # 128 + n)
            assert proc.returncode in (0, 128 + signum, -signum), f"{where}: {proc.returncode}\n{err}"
            assert_complete(out / DATASET)
        else:
            assert proc.returncode == 128 + signum, f"{where}: exit {proc.returncode}\n{err}"
            message = err.strip().splitlines()[-1]
            assert ("interrupted by" in message and "nothing was published" in message
                    and "Run the same command again" in message), message
            if had_dataset:  # --overwrite was interrupted: the earlier dataset is untouched
                assert "is unchanged" in message
                assert_complete(out / DATASET)
            else:
                assert not (out / DATASET).exists() and not out.exists(), f"{where}: published or left {out}"
    rerun = run_to_the_end(args)
    assert rerun.returncode == 0, rerun.stderr
    assert_complete(out / DATASET)
    assert hidden(out) == []


def test_a_second_ctrl_c_does_not_hang_it(tmp_path, source):
    out = tmp_path / "raw"
    proc = start(command(source, out, 2))
    try:
        wait_for(lambda: any(out.glob(f".{DATASET}.*.partial/imagesTr/*.png")), proc)
        sent = time.monotonic()
        for _ in range(2):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=RUN_SECONDS)
        stopped_after = time.monotonic() - sent
        assert no_group_left(proc.pid)
    finally:
        kill_group(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert stopped_after < STOP_SECONDS and "Traceback" not in err, err
    # -2: the second one came as it exited; a shell shows 130 either way
    assert proc.returncode in (130, -signal.SIGINT), err
    assert not out.exists()


# ---------------------------------------------------------------- kill -9, read-only output, failing cases


def test_after_kill_9_workers_end_and_the_next_run_clears_the_leftovers(tmp_path, source):
    out = tmp_path / "raw"
    args = command(source, out, 2)
    proc = start(args)
    try:
        wait_for(lambda: any(out.glob(f".{DATASET}.*.partial/imagesTr/*.png")), proc)
        proc.kill()
        proc.communicate(timeout=RUN_SECONDS)
        assert no_group_left(proc.pid), "workers outlived their killed parent"
    finally:
        kill_group(proc.pid)
    staged = [n for n in hidden(out) if n.endswith(".partial")]
    assert len(staged) == 1 and not (out / DATASET).exists()
    rerun = run_to_the_end(args)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{out / staged[0]}: removed: staging folder of an earlier interrupted convert" in rerun.stdout
    assert_complete(out / DATASET)
    assert hidden(out) == []


def _make_read_only(folder: Path) -> bool:
    """Read-only for this user; root needs the immutable attribute (False when that is not possible)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return True
    return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0


def _make_writable(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    else:
        folder.chmod(0o755)


def test_read_only_output_folder_exits_2_and_writes_nothing(tmp_path, source):
    out = tmp_path / "raw"
    out.mkdir()
    if not _make_read_only(out):
        pytest.skip("cannot make a folder read-only for root here (chattr +i failed)")
    try:
        started = time.monotonic()
        result = run_to_the_end(command(source, out, 2))
        took = time.monotonic() - started
    finally:
        _make_writable(out)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"{out}: output folder cannot be created or written" in result.stderr and "-o/--output-root" in result.stderr
    assert list(out.iterdir()) == [] and took < RUN_SECONDS


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_stops_the_conversion_with_the_fix_leaves_nothing_and_the_same_command_then_works(source,
                                                                                                    small_disk,
                                                                                                    workers):
    disk, grow = small_disk
    filler = fill_up(disk, leave=64 * 1024)  # room for a few cases of 32
    out = disk / "raw"
    args = [*command(source, out, workers), "--max-size", "96"]
    result = run_to_the_end(args)
    said = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in said, said
    assert "No space left on device" in said and "free disk space, or choose another output folder" in said
    assert said.count("cannot write case") == 1 and "stopped: the disk is full" in said  # not one error per case
    assert not out.exists() or list(out.iterdir()) == []  # no staging folder, no half dataset
    filler.unlink()
    grow()
    result = run_to_the_end(args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list((out / DATASET / "imagesTr").glob("*.png"))) == N_CASES


def test_broken_photos_in_worker_processes_are_reported_by_name_and_the_run_ends_cleanly(tmp_path, source):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").symlink_to(source / "masks")
    for photo in (source / "images").iterdir():
        (src / "images" / photo.name).symlink_to(photo)
    (src / "images" / "c005.jpg").unlink()
    (src / "images" / "c005.jpg").write_bytes((source / "images" / "c005.jpg").read_bytes()[:2000])  # truncated
    (src / "images" / "c007.jpg").unlink()
    (src / "images" / "c007.jpg").symlink_to(tmp_path / "deleted.jpg")  # vanished: the read fails with OSError
    out = tmp_path / "raw"
    result = run_to_the_end(command(src, out, 2))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "images/c005.jpg: truncated or corrupt image" in result.stderr
    assert "images/c007.jpg: cannot read the file (No such file or directory)" in result.stderr
    assert f"FAILED, nothing written to {out / DATASET}" in result.stderr
    assert not out.exists()
