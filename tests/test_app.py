"""The app in a real browser (headless Chromium): upload -> segment -> download, and the same masks as segment.

Skips when Gradio, Selenium or Debian's chromium / chromium-driver are absent.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio = pytest.importorskip("gradio")
webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="chromium and chromium-driver are not installed")]


from nnunet_tongue.app import MAX_UPLOAD_MB  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(trained_tongue_model):
    from nnunet_tongue.app import build_app

    page = build_app(str(trained_tongue_model.model_folder), "cpu")
    page.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                        max_file_size=f"{MAX_UPLOAD_MB}mb")
    yield page
    page.close()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver import Chrome, ChromeOptions, ChromeService

    options = ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1600"):
        options.add_argument(argument)
    driver = Chrome(service=ChromeService(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> list[Path]:
    from nnunet_tongue.synthetic import make_tongue_photo

    folder = tmp_path_factory.mktemp("uploads")
    rng = np.random.default_rng(21)
    paths = []
    for name in ("first.jpg", "second.png"):
        rgb, _ = make_tongue_photo(rng, 96, 64)
        Image.fromarray(rgb).save(folder / name)
        paths.append(folder / name)
    (folder / "broken.jpg").write_bytes(paths[0].read_bytes()[:200])
    return [*paths, folder / "broken.jpg"]


def segment_in_browser(browser, app, files: list[Path]) -> str:
    """Upload ``files``, press Segment, wait for the result; the zip's address."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(app.local_url)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photos input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#photos input[type=file]").send_keys("\n".join(map(str, files)))
    # the file list shows each name as stem and ending on two lines
    WebDriverWait(browser, 60).until(lambda d: all(f.stem in d.find_element(By.ID, "photos").text for f in files))
    browser.find_element(By.ID, "segment").click()
    WebDriverWait(browser, 180).until(lambda d: "segmented in" in d.find_element(By.ID, "message").text)
    link = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#download a"))[0]
    return link.get_attribute("href")


def test_upload_segment_download_gives_what_the_segment_command_gives(app, browser, uploads, trained_tongue_model,
                                                                     tmp_path):
    from selenium.webdriver.common.by import By

    from nnunet_tongue.inference.segment import main as segment

    archive = zipfile.ZipFile(io.BytesIO(urllib.request.urlopen(segment_in_browser(browser, app, uploads)).read()))
    names = set(archive.namelist())
    assert {"masks/first.png", "masks/second.png", "cutouts/first.png", "overlays/second.jpg",
            "segment.jsonl"} <= names
    lines = [json.loads(line) for line in archive.read("segment.jsonl").decode().splitlines()]
    assert {r["name"]: r["status"] for r in lines} == {"broken": "failed", "first": "ok", "second": "ok"}
    table = browser.find_element(By.ID, "results").text
    assert "broken" in table and "truncated or corrupt" in table  # the command line's message

    assert segment(["-i", *map(str, uploads), "-o", str(tmp_path / "cli"), "-m",
                    str(trained_tongue_model.model_folder), "-device", "cpu", "--no-progress"]) == 1
    for name in ("first", "second"):
        from_app = np.asarray(Image.open(io.BytesIO(archive.read(f"masks/{name}.png"))))
        assert np.array_equal(from_app, np.asarray(Image.open(tmp_path / "cli" / "masks" / f"{name}.png")))


def test_two_sessions_do_not_see_each_others_files(app, uploads, trained_tongue_model):
    from gradio_client import Client, handle_file

    zips = []
    for upload in uploads[:2]:  # two clients: two sessions, as two users' browsers
        client = Client(app.local_url, verbose=False)
        outputs = client.predict([handle_file(str(upload))], str(trained_tongue_model.model_folder), api_name="/run")
        zips.append(zipfile.ZipFile(next(o for o in outputs if isinstance(o, str) and o.endswith(".zip"))).namelist())
    assert "masks/first.png" in zips[0] and "masks/second.png" not in zips[0]
    assert "masks/second.png" in zips[1] and "masks/first.png" not in zips[1]


def test_an_upload_above_the_stated_limit_is_refused(app, tmp_path, trained_tongue_model):
    from gradio_client import Client, handle_file

    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.truncate((MAX_UPLOAD_MB + 1) * 2**20)
    with pytest.raises(Exception, match="(?i)size|large"):
        Client(app.local_url, verbose=False).predict([handle_file(str(huge))], str(trained_tongue_model.model_folder),
                                                     api_name="/run")
