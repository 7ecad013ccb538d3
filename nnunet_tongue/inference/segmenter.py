"""A trained nnU-Net tongue model, loaded once, segmenting in-memory photos.

:class:`TongueSegmenter` feeds the model an image array exactly as nnU-Net's ``NaturalImage2DIO`` reads a
training PNG and runs nnU-Net's prediction on it (normalisation, Gaussian sliding window, fold averaging):
through :class:`~nnunet_tongue.inference.predictor.PhotoPredictor`, which reproduces it for 2D photo plans
without importing nnU-Net's predictor, or nnU-Net's own ``nnUNetPredictor`` for any other plans. A packed
model is loaded without nnU-Net; an nnU-Net model folder is loaded by nnU-Net. No temporary files.

Scale. nnU-Net sees pixels, not centimetres: a model trained on photos whose longest side was
downscaled to N pixels at conversion (``nnunet_tongue_conversion.max_size`` in the model's
``dataset.json``) expects tongues of that pixel size. A larger photo is therefore downscaled to
longest side N before inference (the converter's own size rule and Lanczos filter) and the tongue
probability is resized back (bilinear) to the photo's size before thresholding at 0.5. This also
bounds memory and time for 12-megapixel phone photos. A model may record a larger size to be fed at
(``segment_max_size``, the bundled model's 256 px for 192-px training photos): its tongues then reach the
network larger, with finer boundaries, and a tongue outside the training tongues' range of sizes is still
brought to their median by the second pass below; a photo the ``blurred`` quality flag would raise on has no
fine detail to gain and gets the training size.
A model trained at full resolution gets the photo as it is (``max_size=None``), whatever its size.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nnunet_tongue.conversion import segment_max_size, training_max_size as conversion_max_size
from nnunet_tongue.conversion import training_tongue_extent
from nnunet_tongue.inference.outputs import bounding_box
from nnunet_tongue.inference.postprocess import largest_component, postprocess_mask
from nnunet_tongue.inference.predictor import PhotoPredictor, configuration, supported
from nnunet_tongue.inference.quality import is_blurred, photo_sharpness
from nnunet_tongue.models.packed import ModelError, PackedModel, is_packed
from nnunet_tongue.photos import resize_photo, scaled_size

DEFAULT_TRAINER = "nnUNetTrainerTUNet"
DEFAULT_PLANS = "nnUNetPlans"
DEFAULT_CONFIGURATION = "2d"
DEFAULT_CHECKPOINT = "checkpoint_final.pth"
#: post-processing (largest component + holes filled) is on unless asked otherwise; see docs/inference.md
DEFAULT_POSTPROCESS = True
#: a second pass brings a tongue much larger or smaller than the training tongues to their size
DEFAULT_RESCALE = True
#: nnU-Net's default sliding-window step (fraction of the patch size)
DEFAULT_TILE_STEP_SIZE = 0.5
#: spacing NaturalImage2DIO gives every 2D image
NATURAL_IMAGE_SPACING = [999.0, 1.0, 1.0]


def model_folder_from_dataset(dataset: str | int, trainer: str = DEFAULT_TRAINER, plans: str = DEFAULT_PLANS,
                              configuration: str = DEFAULT_CONFIGURATION,
                              results_root: str | os.PathLike | None = None) -> Path:
    """``-d/-tr/-p/-c`` as ``nnUNetv2_predict`` takes them -> the model folder under ``nnUNet_results``.

    ``results_root`` defaults to the ``nnUNet_results`` environment variable, read now (not at import).
    """
    from nnunetv2.utilities.file_path_utilities import convert_trainer_plans_config_to_identifier

    root = results_root if results_root is not None else os.environ.get("nnUNet_results")
    if not root:
        raise ModelError("nnUNet_results is not set: give the model folder with -m, or set nnUNet_results")
    root = Path(root)
    name = str(dataset)
    if not name.startswith("Dataset"):
        try:
            number = int(name)
        except ValueError:
            raise ModelError(f"dataset must be an id (e.g. 501) or a name (Dataset501_...), got {dataset!r}") from None
        candidates = sorted(p.name for p in root.glob(f"Dataset{number:03d}_*") if p.is_dir())
        if not candidates:
            raise ModelError(f"no Dataset{number:03d}_* folder in nnUNet_results={root}")
        if len(candidates) > 1:
            raise ModelError(f"several datasets with id {number} in {root}: {', '.join(candidates)}")
        name = candidates[0]
    folder = root / name / convert_trainer_plans_config_to_identifier(trainer, plans, configuration)
    if not folder.is_dir():
        present = sorted(p.name for p in (root / name).glob("*__*__*")) if (root / name).is_dir() else []
        hint = f"; trained models there: {', '.join(present)}" if present else ""
        raise ModelError(f"model folder not found: {folder}{hint}")
    return folder


def detect_folds(model_folder: str | os.PathLike, checkpoint: str = DEFAULT_CHECKPOINT) -> list[int | str]:
    """Folds with ``checkpoint`` in the model folder (nnU-Net's own detection); ``['all']`` if only fold_all has one."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    with contextlib.redirect_stdout(io.StringIO()):  # it prints what it found
        folds = list(nnUNetPredictor.auto_detect_available_folds(str(model_folder), checkpoint))
    if not folds and (Path(model_folder) / "fold_all" / checkpoint).is_file():
        folds = ["all"]
    return folds


def read_model_json(model_folder: str | os.PathLike, name: str) -> dict:
    path = Path(model_folder) / name
    if not path.is_file():
        raise ModelError(f"{path} not found: is {model_folder} an nnU-Net model folder "
                         "(Trainer__Plans__configuration)?")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def training_max_size(model_folder: str | os.PathLike) -> int | None:
    """Longest side the training photos were downscaled to at conversion, from the model's dataset.json (None: not)."""
    return conversion_max_size(read_model_json(model_folder, "dataset.json"))


def _find_budget_trainers(trainer: str) -> None:
    """A model trained with a short-budget trainer (the demo's, a benchmark's) needs that trainer's folder on
    ``nnUNet_extTrainer`` for nnU-Net to rebuild it; add it for this process."""
    from nnunet_tongue.registration import BUDGET_TRAINER_FOLDER, add_trainer_folder
    from nnunet_tongue.training.budget import budget_trainer

    if budget_trainer(trainer) is not None:
        add_trainer_folder(folder=BUDGET_TRAINER_FOLDER)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError("-device cuda: no CUDA device is available to torch (use -device cpu or auto)")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ModelError(f"device must be cpu, cuda or auto, got {device!r}")


def as_model_channels(image: np.ndarray, channels: int = 3) -> np.ndarray:
    """An in-memory image -> what the network takes: uint8 [H, W, 3] (RGB model) or [H, W] (greyscale model).

    Accepts (H, W), (H, W, 1), (H, W, 3) and (H, W, 4) (alpha dropped, as ``convert`` does), uint8 or
    other numbers (floats in [0, 1] are taken as fractions of 255).
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if channels == 3:
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr)
    if channels == 1:
        return arr if arr.ndim == 2 else np.asarray(Image.fromarray(arr).convert("L"))
    raise ValueError(f"models with {channels} input channels are not supported (1 = greyscale, 3 = RGB)")


class StockPredictor:
    """nnU-Net's own ``nnUNetPredictor`` behind :class:`PhotoPredictor`'s interface, for plans that
    :class:`PhotoPredictor` does not cover (see :func:`~nnunet_tongue.inference.predictor.supported`)."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.network = predictor.network
        self.has_regions = predictor.label_manager.has_regions
        self.patch_size = tuple(predictor.configuration_manager.patch_size)

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities (K x H x W) for C x H x W pixel values, read as NaturalImage2DIO reads a PNG."""
        data = image[:, None].astype(np.float32)  # (C, 1, H, W), spacing (999, 1, 1)
        _, probabilities = self.predictor.predict_single_npy_array(data, {"spacing": list(NATURAL_IMAGE_SPACING)},
                                                                   None, None, True)
        return np.asarray(probabilities, dtype=np.float32)[:, 0]


@dataclass
class Prediction:
    """Tongue probability and mask at the photo's size, and the size the network actually saw."""

    probability: np.ndarray  # float32 [H, W] in [0, 1]
    mask: np.ndarray  # bool [H, W]: probability >= 0.5, post-processed when the segmenter post-processes
    inference_shape: tuple[int, int]  # (h, w) fed to nnU-Net (in the second pass when rescaled)
    rescale_factor: float = 1.0  # tongue size change of the second pass (1.0: no second pass)
    sharpness: tuple[float, float, float] | None = None  # the photo's (fine, mid, noise) when measured to pick a size


class TongueSegmenter:
    """A trained nnU-Net model (one or more folds) ready to segment photos given as arrays.

    ``model_folder``: an nnU-Net model folder (``Trainer__Plans__configuration``, checkpoints loaded by
    nnU-Net, which unpickles them) or a packed model (:mod:`nnunet_tongue.models.packed`: hash-checked
    safetensors, no pickle), e.g. from :func:`nnunet_tongue.models.store.find_model`.

    ``max_size``: ``"model"`` (default) reads the size from the model's dataset.json (its recorded
    ``segment_max_size``, the training scale for a blurred photo; else the training scale); an int downscales
    photos to that longest side; ``None`` or 0 feeds photos at their own size.
    ``rescale``: when the tongue found at that scale is larger or smaller than the training tongues (outside
    the 5th-95th percentile of their extent, recorded in the model's dataset.json), segment once more with
    the tongue brought to the training tongues' median extent: a close-up is shrunk, a far shot cropped
    around the tongue and enlarged (see docs/inference.md, "Scale").
    """

    def __init__(self, model_folder: str | os.PathLike, folds: list[int | str] | tuple | None = None,
                 checkpoint: str = DEFAULT_CHECKPOINT, device: str | torch.device = "auto",
                 mirroring: bool = False, postprocess: bool = DEFAULT_POSTPROCESS,
                 tile_step_size: float = DEFAULT_TILE_STEP_SIZE, max_size: int | str | None = "model",
                 rescale: bool = DEFAULT_RESCALE, verbose: bool = False):
        self.model_folder = Path(model_folder)
        if not self.model_folder.is_dir():
            raise ModelError(f"model folder not found: {self.model_folder}")
        self.packed = PackedModel.open(self.model_folder) if is_packed(self.model_folder) else None
        if self.packed:
            plans, dataset_json = self.packed.plans, self.packed.dataset_json
        else:
            plans = read_model_json(self.model_folder, "plans.json")
            dataset_json = read_model_json(self.model_folder, "dataset.json")
        reader = plans.get("image_reader_writer", "NaturalImage2DIO")
        if reader != "NaturalImage2DIO":
            raise ModelError(f"{self.model_folder} was trained on images read by {reader}; segment feeds photos "
                             "the way NaturalImage2DIO reads PNG/BMP/TIFF files and supports only such models")
        self.channels = len(dataset_json.get("channel_names", {"0": "R", "1": "G", "2": "B"}))
        if self.channels not in (1, 3):
            raise ModelError(f"model has {self.channels} input channels; segment supports RGB (3) or "
                             "greyscale (1) models")

        self.checkpoint = checkpoint
        if folds is None or len(folds) == 0:
            folds = self.packed.folds if self.packed else detect_folds(self.model_folder, checkpoint)
        try:
            self.folds = [f if str(f) == "all" else int(f) for f in folds]
        except ValueError:
            raise ModelError(f"folds must be numbers or 'all', got {list(folds)}") from None
        if self.packed:
            missing = [f for f in self.folds if f not in self.packed.folds]
            if missing:
                raise ModelError(f"{self.packed.name} has no fold {', '.join(map(str, missing))}; it has "
                                 f"{', '.join(map(str, self.packed.folds))}")
        else:
            missing = [f for f in self.folds if not (self.model_folder / f"fold_{f}" / checkpoint).is_file()]
        if not self.folds or missing:
            present = sorted(str(p.relative_to(self.model_folder)) for p in self.model_folder.glob("fold_*/*.pth"))
            what = f"fold(s) {', '.join(map(str, missing))}" if missing else "any fold"
            raise ModelError(f"{checkpoint} not found for {what} in {self.model_folder}; checkpoints present: "
                             f"{', '.join(present) or 'none'}")

        self.device = resolve_device(device)
        self.mirroring = bool(mirroring)
        self.postprocess = bool(postprocess)
        self.tile_step_size = float(tile_step_size)
        # a model recorded to be fed larger than its training photos gets a blurred photo at the training size
        self.blurred_max_size: int | None = None
        if max_size == "model":
            self.max_size = segment_max_size(dataset_json)
            if self.max_size != conversion_max_size(dataset_json):
                self.blurred_max_size = conversion_max_size(dataset_json)
        else:
            self.max_size = int(max_size) if max_size else None
        self.tongue_extent = training_tongue_extent(dataset_json)
        self.rescale = bool(rescale) and self.tongue_extent is not None
        # nnU-Net narrates loading on stdout (device remark, trainer search); keep it for --verbose only
        chatter = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
        with chatter:
            if self.packed and supported(plans, configuration(plans, self.packed.card["configuration"])) is None:
                self.predictor = self.packed.predictor(self.folds, use_mirroring=self.mirroring,
                                                       tile_step_size=self.tile_step_size, device=self.device)
                self.trainer_name = self.packed.trainer
            else:
                self.predictor = self._stock_predictor(verbose)
        if len(self.predictor.patch_size) != 2:
            raise ModelError(f"{self.model_folder} is a 3D configuration; photos need a 2D model")

    def _stock_predictor(self, verbose: bool) -> PhotoPredictor | StockPredictor:
        """The model loaded by nnU-Net's own predictor; its network and weights then run in a
        :class:`PhotoPredictor` when its plans are ones that covers."""
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        predictor = nnUNetPredictor(tile_step_size=self.tile_step_size, use_gaussian=True,
                                    use_mirroring=self.mirroring,
                                    perform_everything_on_device=self.device.type == "cuda", device=self.device,
                                    verbose=verbose, verbose_preprocessing=verbose, allow_tqdm=False)
        if self.packed is None:
            _find_budget_trainers(self.model_folder.name.split("__")[0])
            predictor.initialize_from_trained_model_folder(str(self.model_folder), self.folds, self.checkpoint)
        else:
            self.packed.initialize(predictor, self.folds)
        self.trainer_name = predictor.trainer_name
        if supported(predictor.plans_manager.plans, predictor.configuration_manager.configuration) is not None:
            return StockPredictor(predictor)
        return PhotoPredictor(predictor.network, predictor.list_of_parameters, predictor.plans_manager.plans,
                              predictor.configuration_manager.configuration, predictor.dataset_json,
                              mirror_axes=predictor.allowed_mirroring_axes, use_mirroring=self.mirroring,
                              tile_step_size=self.tile_step_size, device=self.device)

    def describe(self) -> dict:
        """What is loaded, for logs and reports."""
        return {"model_folder": str(self.model_folder),
                **({"model": self.packed.name} if self.packed else {}),
                "trainer": self.trainer_name, "folds": self.folds,
                "checkpoint": self.checkpoint, "device": str(self.device), "mirroring": self.mirroring,
                "postprocess": self.postprocess, "tile_step_size": self.tile_step_size, "max_size": self.max_size,
                "blurred_max_size": self.blurred_max_size,
                "rescale": self.rescale, "training_tongue_extent_px": self.tongue_extent,
                "patch_size": list(self.predictor.patch_size)}

    def _probability(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Tongue probability at ``image``'s size, the network fed ``image`` resized to ``size`` (w, h)."""
        height, width = image.shape[:2]
        small = image if size == (width, height) else resize_photo(image, size)  # the converter's filter
        # channel-first pixel values, as NaturalImage2DIO reads a training PNG
        probabilities = self.predictor.probabilities(small.transpose(2, 0, 1) if small.ndim == 3 else small[None])
        # any foreground label or region is tongue; channel 0 is background unless the model predicts regions
        probability = probabilities.max(0) if self.predictor.has_regions else 1.0 - probabilities[0]
        del probabilities
        if size != (width, height):
            small_probability = Image.fromarray(np.ascontiguousarray(probability, dtype=np.float32))  # mode "F"
            probability = np.asarray(small_probability.resize((width, height), Image.Resampling.BILINEAR))
        return probability

    def predict(self, image: np.ndarray) -> Prediction:
        """Tongue probability and mask for a photo array ((H, W), (H, W, 3) or (H, W, 4), displayed orientation);
        the mask is post-processed when :attr:`postprocess` is on (the one place that decides it)."""
        image = as_model_channels(image, self.channels)
        height, width = image.shape[:2]
        max_size, measured = self.max_size, None
        if self.blurred_max_size:
            measured = photo_sharpness(image)
            if is_blurred(*measured[:2]):  # no fine detail to gain; its blur would grow
                max_size = self.blurred_max_size
        w, h, scale = scaled_size(width, height, max_size)  # the converter's rule
        probability = self._probability(image, (w, h))
        box = bounding_box(largest_component(probability >= 0.5)) if self.rescale else None
        factor = self._rescale_factor(box, scale)
        if factor != 1.0:
            probability, (w, h) = self._rescaled_probability(image, probability, box, scale * factor, max_size)
        mask = probability >= 0.5
        return Prediction(probability, postprocess_mask(mask) if self.postprocess else mask, (h, w), factor,
                          measured)

    def _rescale_factor(self, box: dict | None, scale: float) -> float:
        """How much larger the tongue (``box``, in photo pixels) must be at the network's input to match the
        training tongues (1.0: it does, or no tongue was found)."""
        if box is None:
            return 1.0
        extent = max(box["width"], box["height"]) * scale
        low, high = self.tongue_extent["p5"], self.tongue_extent["p95"]
        return 1.0 if low <= extent <= high else float(self.tongue_extent["median"] / extent)

    def _rescaled_probability(self, image: np.ndarray, coarse: np.ndarray, box: dict, scale: float,
                              max_size: int | None) -> tuple[np.ndarray, tuple[int, int]]:
        """Probability from a second pass at ``scale`` (photo pixels -> network pixels). Zoomed out: the whole
        photo, smaller. Zoomed in: a window around the first pass's tongue of the size the network saw then,
        enlarged (``box``: the first pass's tongue); outside it the first pass's probability stays."""
        height, width = image.shape[:2]
        if scale * max(width, height) <= (max_size or max(width, height)):
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            return self._probability(image, size), size
        window_w = min(width, round((max_size or width) / scale * width / max(width, height)))
        window_h = min(height, round((max_size or height) / scale * height / max(width, height)))
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        x0 = int(min(max(0, round(cx - window_w / 2)), width - window_w))
        y0 = int(min(max(0, round(cy - window_h / 2)), height - window_h))
        size = (max(1, round(window_w * scale)), max(1, round(window_h * scale)))
        probability = coarse.copy()
        probability[y0:y0 + window_h, x0:x0 + window_w] = self._probability(
            np.ascontiguousarray(image[y0:y0 + window_h, x0:x0 + window_w]), size)
        return probability, size

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Tongue mask (bool [H, W], the image's size) for a photo array."""
        return self.predict(image).mask
