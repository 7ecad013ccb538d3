"""nnU-Net's prediction of one 2D photo, without nnU-Net's predictor module.

:class:`PhotoPredictor` does for a photo array what ``nnUNetPredictor.predict_single_npy_array`` does for
an image read by ``NaturalImage2DIO`` (spacing 1 x 1, so nothing is resampled): crop to the non-zero
bounding box, normalise each channel with the plans' scheme, pad to the patch size, slide the patch over
the image with a Gaussian weight (step ``tile_step_size`` x patch), optionally average mirrored passes,
average the folds' logits, apply softmax (sigmoid for region models) and put the crop back, the region
outside it background. Logits are accumulated in float32 (nnU-Net's predictor uses float16), so class
probabilities agree with nnU-Net's to about 1e-3 and masks to a few boundary pixels.

Why not nnU-Net's predictor: importing it (and the trainer module it loads networks through) costs
about 6 s on 2 CPU cores, most of the time to a tongue photo's first mask. nnU-Net's light modules do the
parts they can (Gaussian weight, window steps, padding, the normalisation classes); the crop, the
configuration's inheritance and the label counts are done here because nnU-Net's modules for them import
its image readers (about 0.2-0.8 s each). :func:`supported` says which plans this covers (2D,
natural-image spacing, nnU-Net's intensity normalisations); the segmenter falls back to nnU-Net's
predictor for any other.
"""

from __future__ import annotations

import contextlib
from copy import deepcopy
from typing import Sequence

import numpy as np
import torch
# nnU-Net's own pieces that import nothing heavy (its predictor, plans and label modules take seconds)
from acvl_utils.cropping_and_padding.padding import pad_nd_image
from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
from nnunetv2.preprocessing.normalization import default_normalization_schemes

from nnunet_tongue.inference.postprocess import fill_holes


def configuration(plans: dict, name: str) -> dict:
    """The plans' configuration ``name`` with the entries it inherits (``inherits_from``) filled in."""
    configurations = plans["configurations"]
    if name not in configurations:
        raise KeyError(f"the plans have no configuration {name!r} (they have {', '.join(configurations)})")
    entry = deepcopy(configurations[name])
    parent = entry.pop("inherits_from", None)
    return {**configuration(plans, parent), **entry} if parent else entry


def has_regions(dataset_json: dict) -> bool:
    """Whether the model predicts overlapping regions (sigmoid per region) rather than classes (softmax)."""
    return any(isinstance(v, (list, tuple)) and len(v) > 1 for k, v in dataset_json["labels"].items() if k != "ignore")


def num_segmentation_heads(dataset_json: dict) -> int:
    """The network's output channels for ``dataset_json``'s labels (as nnU-Net's ``LabelManager`` counts them)."""
    labels = {k: v for k, v in dataset_json["labels"].items() if k != "ignore"}
    if has_regions(dataset_json):
        return sum(1 for v in labels.values() if v not in (0, [0], (0,)))
    return len(labels)


def supported(plans: dict, config: dict) -> str | None:
    """``None`` when :class:`PhotoPredictor` reproduces nnU-Net's prediction for ``config`` (a configuration of
    ``plans``, see :func:`configuration`), else why not."""
    if len(config["patch_size"]) != 2:
        return "not a 2D configuration"
    if list(plans.get("transpose_forward", [0, 1, 2])) != [0, 1, 2]:
        return f"transposed axes {plans['transpose_forward']}"
    if [float(s) for s in config["spacing"]] != [1.0, 1.0]:
        return f"spacing {config['spacing']} (photos are resampled)"
    unknown = sorted(name for name in config["normalization_schemes"] if _normaliser(name) is None)
    if unknown:
        return f"normalisation {', '.join(unknown)}"
    return None


def nonzero_box(image: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of pixels non-zero in any channel (``image``: C x H x W); the whole image if none is."""
    nonzero = (image != 0).any(axis=0)
    rows, cols = np.flatnonzero(nonzero.any(axis=1)), np.flatnonzero(nonzero.any(axis=0))
    if rows.size == 0:
        return slice(0, image.shape[1]), slice(0, image.shape[2])
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _normaliser(name: str) -> type | None:
    """nnU-Net's normalisation class ``name`` (``ZScoreNormalization``, ``CTNormalization``, ...), None if unknown."""
    found = getattr(default_normalization_schemes, name, None)
    return found if isinstance(found, type) and issubclass(found, default_normalization_schemes.ImageNormalization) \
        else None


class PhotoPredictor:
    """A network with one or more folds' weights, predicting class probabilities for 2D images.

    ``parameters``: one state dict per fold (averaged as nnU-Net averages folds); ``plans`` and ``config``: the
    plans and their configuration (:func:`configuration`), checked by :func:`supported`; ``mirror_axes``: the
    axes the model allows mirroring on (used when ``use_mirroring``).
    """

    def __init__(self, network: torch.nn.Module, parameters: list[dict[str, torch.Tensor]], plans: dict,
                 config: dict, dataset_json: dict, *, mirror_axes: Sequence[int] | None = None,
                 use_mirroring: bool = False, tile_step_size: float = 0.5, device: torch.device = torch.device("cpu")):
        if not 0 < tile_step_size <= 1:
            raise ValueError(f"tile_step_size must be in (0, 1], got {tile_step_size}")
        self.network = network.to(device).eval()
        self.parameters = parameters
        self.patch_size = tuple(int(p) for p in config["patch_size"])
        use_mask = config.get("use_mask_for_norm") or [False] * len(config["normalization_schemes"])
        intensities = plans.get("foreground_intensity_properties_per_channel", {})
        self.normalisers = [_normaliser(name)(bool(mask), intensities.get(str(c), {}))
                            for c, (name, mask) in enumerate(zip(config["normalization_schemes"], use_mask))]
        self.has_regions = has_regions(dataset_json)
        self.mirror_axes = tuple(mirror_axes) if use_mirroring and mirror_axes else ()
        self.tile_step_size = float(tile_step_size)
        self.device = device
        self.gaussian = compute_gaussian(self.patch_size, sigma_scale=1 / 8, value_scaling_factor=10,
                                         dtype=torch.float32, device=device)
        if len(parameters) == 1:
            self.network.load_state_dict(parameters[0])

    def _preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]]:
        box = nonzero_box(image)
        data = image[(slice(None), *box)].astype(np.float32)
        # nnU-Net's "seg" of the crop: -1 outside the non-zero region (holes filled), where masked schemes skip
        outside = np.where(fill_holes((data != 0).any(axis=0)), 0, -1) if any(
            n.use_mask_for_norm for n in self.normalisers) else None
        for c, normaliser in enumerate(self.normalisers):
            data[c] = normaliser.run(data[c], outside)
        return data, box

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of patches, averaged over the allowed mirrorings."""
        logits = self.network(x)
        flips = [[axis + 2 for k, axis in enumerate(self.mirror_axes) if (i >> k) & 1]
                 for i in range(1, 2 ** len(self.mirror_axes))]
        for axes in flips:
            logits += torch.flip(self.network(torch.flip(x, axes)), axes)
        return logits / (len(flips) + 1)

    @torch.inference_mode()
    def _sliding_window(self, data: torch.Tensor) -> torch.Tensor:
        """Gaussian-weighted logits of the sliding window over ``data`` (C x H x W, at least the patch size)."""
        height, width = data.shape[1:]
        logits = weights = None
        rows, cols = compute_steps_for_sliding_window((height, width), self.patch_size, self.tile_step_size)
        for y in rows:
            for x in cols:
                window = (slice(y, y + self.patch_size[0]), slice(x, x + self.patch_size[1]))
                patch = self._network(data[(slice(None), *window)][None])[0] * self.gaussian
                if logits is None:
                    logits = torch.zeros((patch.shape[0], height, width), device=self.device)
                    weights = torch.zeros((height, width), device=self.device)
                logits[(slice(None), *window)] += patch
                weights[window] += self.gaussian
        return logits / weights

    @torch.inference_mode()
    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class (or region) probabilities, float32 K x H x W, for an image given as C x H x W pixel values."""
        data, box = self._preprocess(image)
        tensor, inside = pad_nd_image(torch.from_numpy(data).to(self.device), self.patch_size, "constant",
                                      {"value": 0}, True)
        logits = None
        # on CUDA the network runs under autocast, as in nnU-Net's predictor; on CPU in float32
        precision = torch.autocast("cuda") if self.device.type == "cuda" else contextlib.nullcontext()
        for parameters in self.parameters:
            if len(self.parameters) > 1:
                self.network.load_state_dict(parameters)
            with precision:
                fold = self._sliding_window(tensor)
            logits = fold if logits is None else logits + fold
        logits = logits[(slice(None), *inside[1:])] / len(self.parameters)
        cropped = torch.sigmoid(logits) if self.has_regions else torch.softmax(logits, 0)
        probabilities = np.zeros((cropped.shape[0], *image.shape[1:]), dtype=np.float32)
        if not self.has_regions:
            probabilities[0] = 1.0  # outside the crop: background
        probabilities[(slice(None), *box)] = cropped.float().cpu().numpy()
        return probabilities
