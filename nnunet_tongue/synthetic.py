"""Synthetic tongue photographs with exact masks, for the demo and the tests.

A photo is a face-coloured background with lighting gradient and noise, a dark mouth opening, and a
pink-red tongue (rounded tip, uneven whitish coating, texture) whose size, position and tilt vary.
The mask is the tongue region. It is no substitute for real photos; it is a task a network can learn in
a few hundred iterations, so the whole pipeline can be run and tested on a CPU in minutes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from nnunet_tongue.conversion import RGB_CHANNELS, TONGUE_LABELS


def make_tongue_photo(rng: np.random.Generator, width: int = 192, height: int = 144) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic photo: ``(rgb uint8 [H, W, 3], mask uint8 [H, W] with tongue = 1)``."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    skin = np.array([205, 160, 130], np.float32) + rng.uniform(-35, 35, 3)
    gradient = 1.0 + 0.25 * ((xx / width) * rng.uniform(-1, 1) + (yy / height) * rng.uniform(-1, 1))
    img = skin[None, None, :] * gradient[..., None]

    cx = width * rng.uniform(0.4, 0.6)
    cy = height * rng.uniform(0.45, 0.6)
    rx = width * rng.uniform(0.18, 0.28)
    ry = height * rng.uniform(0.25, 0.38)
    angle = rng.uniform(-0.3, 0.3)
    cos, sin = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * cos + (yy - cy) * sin) / rx
    v = (-(xx - cx) * sin + (yy - cy) * cos) / ry

    mouth = (u / 1.35) ** 2 + ((v + 0.45) / 0.75) ** 2 < 1.0
    img[mouth] = np.array([70, 30, 35], np.float32) + rng.uniform(-15, 15, 3)

    # tongue: an ellipse whose upper half is flattened (it leaves the mouth), rounded tip at the bottom
    tongue = (u**2 + np.where(v < 0, (v / 1.25) ** 2, v**2)) < 1.0
    base = np.array([200, 90, 100], np.float32) + rng.uniform(-30, 30, 3)
    coating = np.clip(1.0 - (u**2 + (v + 0.1) ** 2) * rng.uniform(0.8, 2.0), 0, 1) * rng.uniform(0.0, 0.6)
    texture = rng.normal(0, 8, (height, width, 1)).astype(np.float32)
    tongue_rgb = (base[None, None, :] * (1 - coating[..., None])
                  + np.array([235, 225, 215], np.float32) * coating[..., None])
    img = np.where(tongue[..., None], tongue_rgb + texture, img)

    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), tongue.astype(np.uint8)


def write_photo_folder(folder: str | os.PathLike, n: int, width: int = 192, height: int = 144, seed: int = 0) -> Path:
    """Write ``n`` photos as a user would have them: ``images/tongue_XXX.jpg`` + ``masks/tongue_XXX.png`` (0/255)."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        rgb, mask = make_tongue_photo(rng, width, height)
        Image.fromarray(rgb).save(folder / "images" / f"tongue_{i:03d}.jpg", quality=95)
        Image.fromarray(mask * 255).save(folder / "masks" / f"tongue_{i:03d}.png")
    return folder


def write_raw_dataset(
    raw_root: str | os.PathLike,
    dataset_id: int = 999,
    name: str = "SyntheticTongue",
    n_train: int = 12,
    n_test: int = 4,
    width: int = 96,
    height: int = 64,
    seed: int = 0,
) -> Path:
    """Write an nnU-Net raw dataset directly (``imagesTr``/``labelsTr``/``imagesTs``/``labelsTs``, RGB png, labels
    0/1)."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    folder = Path(raw_root) / f"Dataset{dataset_id:03d}_{name}"
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_train + n_test):
        split = "Tr" if i < n_train else "Ts"
        rgb, mask = make_tongue_photo(rng, width, height)
        Image.fromarray(rgb).save(folder / f"images{split}" / f"case_{i:03d}_0000.png")
        Image.fromarray(mask).save(folder / f"labels{split}" / f"case_{i:03d}.png")
    generate_dataset_json(
        str(folder),
        channel_names=RGB_CHANNELS,
        labels=TONGUE_LABELS,
        num_training_cases=n_train,
        file_ending=".png",
        dataset_name=folder.name,
    )
    return folder


if __name__ == "__main__":  # quick look: python -m nnunet_tongue.synthetic out_dir
    import sys

    out = write_photo_folder(sys.argv[1] if len(sys.argv) > 1 else "synthetic_tongues", 8)
    print(json.dumps({"written": str(out)}))
