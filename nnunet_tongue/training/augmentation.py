"""Data augmentation for tongue photos, as mixins placed before an nnU-Net trainer.

- :class:`UprightPhotoAugmentation`: photos are upright, so mirror left-right only and rotate a little.
- :class:`PhotoAugmentation`: photos from any camera: the upright rules, plus scale from far shots to
  close-ups (crops that cut the tongue at the border come with the zoom-in), and colour changes that
  survive nnU-Net's per-image, per-channel z-score normalisation (which already removes white balance and
  exposure, i.e. per-channel gains and offsets): saturation and channel mixing (hue / colour cast).
  Blur, noise, low resolution, brightness, contrast and gamma stay nnU-Net's own (batchgeneratorsv2).
- :class:`CoatingAugmentation`: :class:`PhotoAugmentation` plus synthetic tongue coating (a pale, white to
  yellow, textured patch painted over the middle and back of the labelled tongue), for training sets whose
  tongues are mostly uncoated: a model that learnt "pink = tongue" leaves the coating out.
- :class:`TexturedCoatingAugmentation`: the same coating with real coating's grain and cracks.
- :class:`DarkCoatingAugmentation`: the same coating, which may also be darker than the tongue (brown, shadowed).
- :class:`ContextAugmentation`: :class:`CoatingAugmentation` plus zoom-outs onto a made-up surrounding (skin,
  clothes), for training sets of close-ups that never show the face, chin or a towel below it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from batchgeneratorsv2.helpers.scalar_type import RandomScalar, sample_scalar
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform, ImageOnlyTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.random import RandomTransform
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size


class UprightPhotoAugmentation:
    """Augmentation for upright photos (2d): mirror left-right only and rotate within ±``max_rotation_deg``.

    nnU-Net's 2d default mirrors both axes and rotates by up to ±180° when the patch is near-square, so it
    also trains on upside-down photos, where the tongue lies above the lips. Test-time mirroring
    (``inference_allowed_mirroring_axes``) follows the training's axes.
    """

    max_rotation_deg = 15.0  # nnU-Net's own 2d range for elongated patches
    scaling = (0.85, 1.25)  # the scale range nnU-Net sizes its initial patch with

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        if len(self.configuration_manager.patch_size) != 2:
            return super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        rotation = (-np.deg2rad(self.max_rotation_deg), np.deg2rad(self.max_rotation_deg))
        mirror_axes = (1,)  # (rows, columns): columns = left-right
        initial_patch_size = get_patch_size(self.configuration_manager.patch_size, rotation, rotation, rotation,
                                            self.scaling)
        self.inference_allowed_mirroring_axes = mirror_axes
        return rotation, False, initial_patch_size, mirror_axes


class SaturationTransform(ImageOnlyTransform):
    """Pull RGB channels towards (factor < 1) or away from (factor > 1) their mean: less or more saturated."""

    def __init__(self, factor: RandomScalar = (0.3, 1.5)):
        super().__init__()
        self.factor = factor

    def get_parameters(self, **data_dict) -> dict:
        return {"factor": sample_scalar(self.factor, data_dict["image"])}

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        if img.shape[0] != 3:
            return img
        grey = img.mean(0, keepdim=True)
        return grey + params["factor"] * (img - grey)


class ChannelMixTransform(ImageOnlyTransform):
    """Multiply the RGB channels by a random matrix near the identity (off-diagonal entries within
    ±``strength``): hue shifts and colour casts that a per-channel normalisation cannot undo."""

    def __init__(self, strength: float = 0.25):
        super().__init__()
        self.strength = strength

    def get_parameters(self, **data_dict) -> dict:
        mix = torch.eye(3) + (torch.rand(3, 3) * 2 - 1) * self.strength * (1 - torch.eye(3))
        return {"mix": mix / mix.sum(1, keepdim=True)}  # rows sum to 1: a grey pixel stays grey

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        if img.shape[0] != 3:
            return img
        return torch.einsum("ij,j...->i...", params["mix"].to(img), img)


class PhotoAugmentation(UprightPhotoAugmentation):
    """Augmentation for photos from any camera, distance and light (2d RGB); see the module docstring.

    Scale: with probability ``p_scaling`` per sample (nnU-Net: 0.2 within (0.7, 1.4)) a patch samples ``s`` times
    its width and height around its centre, ``s`` drawn from ``scaling``, so the photo appears 1 / ``s`` times as
    large: (0.5, 1.8) spans twice as large (close-ups, tongues cut by the border) to 0.56 times (far shots).
    """

    scaling = (0.5, 1.8)
    p_scaling = 0.6
    p_colour = 0.3

    def get_training_transforms(self, *args, **kwargs):
        composed = super().get_training_transforms(*args, **kwargs)
        transforms = composed.transforms
        after = _after_spatial(transforms)
        transforms[after - 1].scaling = self.scaling
        transforms[after - 1].p_scaling = self.p_scaling
        transforms[after:after] = [
            RandomTransform(SaturationTransform(), apply_probability=self.p_colour),
            RandomTransform(ChannelMixTransform(), apply_probability=self.p_colour),
        ]
        return composed


class CoatingTransform(ImageOnlyTransform):
    """Paint synthetic coating on the tongue (label > 0): a pale, desaturated, white-to-yellow, textured patch.

    Works on nnU-Net's normalised image (per-channel z-scores), so "pale" is a lift of ``lift`` standard
    deviations over the pixel's grey level and "yellow" a tint towards red + green and away from blue (up to
    ``yellow``; slightly negative: grey-blue). The patch is a smooth random field weighted towards the back of the
    tongue (the top of an upright photo), where coating lies, fading out towards the tongue's edge, over most of
    the tongue (``sparsity`` 0) down to a small patch at the back (0.8); blended with opacity ``opacity``.
    The mask is unchanged: coated tongue is tongue. Real coating's own texture is off by default: ``papillae``
    (standard deviations of per-pixel speckle, the grain of filiform papillae) and ``fissures`` (how many standard
    deviations thin, winding cracks are darker than the coating, one of them often along the midline).
    """

    def __init__(self, lift: RandomScalar = (0.0, 1.5), yellow: RandomScalar = (-0.1, 0.6),
                 opacity: RandomScalar = (0.5, 1.0), sparsity: RandomScalar = (0.0, 0.8), texture: float = 0.15,
                 papillae: RandomScalar = 0.0, fissures: RandomScalar = 0.0):
        super().__init__()
        self.lift, self.yellow, self.opacity, self.sparsity, self.texture = lift, yellow, opacity, sparsity, texture
        self.papillae, self.fissures = papillae, fissures

    def get_parameters(self, **data_dict) -> dict:
        image, segmentation = data_dict["image"], data_dict.get("segmentation")
        if image.shape[0] != 3 or segmentation is None or not (segmentation[0] > 0).any():
            return {"patch": None}
        sparsity = sample_scalar(self.sparsity, image)
        return {"patch": coating_patch(segmentation[0] > 0, sparsity), "lift": sample_scalar(self.lift, image),
                "yellow": sample_scalar(self.yellow, image), "opacity": sample_scalar(self.opacity, image),
                "papillae": sample_scalar(self.papillae, image), "fissures": sample_scalar(self.fissures, image)}

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        patch = params["patch"]
        if patch is None:
            return img
        grey = img.mean(0, keepdim=True) + params["lift"]
        tint = params["yellow"] * torch.tensor([0.5, 0.5, -1.0]).view(3, 1, 1)
        coat = grey + tint + self.texture * smooth_noise(img.shape[1:], cells=img.shape[-1] // 4)
        if params["papillae"]:
            coat = coat + params["papillae"] * torch.randn(img.shape[1:])
        if params["fissures"]:
            coat = coat - params["fissures"] * crack_lines(patch > 0)
        weight = (params["opacity"] * patch).to(img)
        return img * (1 - weight) + coat.to(img) * weight


def smooth_noise(shape: tuple[int, int], cells: int) -> torch.Tensor:
    """Zero-mean, unit-variance-ish noise varying over about ``shape / cells`` pixels (bilinear upsampling)."""
    coarse = torch.randn(1, 1, max(2, shape[0] * cells // shape[1]), max(2, cells))
    return F.interpolate(coarse, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0]


def crack_lines(tongue: torch.Tensor, width: float = 0.06) -> torch.Tensor:
    """Thin winding lines (0..1, about 1-3 px wide) inside the boolean ``tongue`` mask (H, W): where a smooth
    random field crosses zero, and, half of the time, a crack wandering along the tongue's middle column."""
    field = smooth_noise(tongue.shape, cells=int(torch.randint(4, 10, ())))
    lines = torch.exp(-(field / width) ** 2)
    columns = torch.nonzero(tongue.any(0)).flatten()
    if len(columns) and torch.rand(()) < 0.5:
        left, right = int(columns[0]), int(columns[-1]) + 1
        x = torch.arange(tongue.shape[1], dtype=torch.float32).view(1, -1)
        across = (x - (left + right) / 2) / max(right - left, 1) * 8 + 0.5 * smooth_noise(tongue.shape, cells=3)
        lines = torch.maximum(lines, torch.exp(-(across / (2 * width)) ** 2))
    return lines * tongue


def coating_patch(tongue: torch.Tensor, sparsity: float) -> torch.Tensor:
    """A soft (0..1) coating patch inside the boolean ``tongue`` mask (H, W): more towards its top rows (the
    back of the tongue), less towards its edges, in a random blob shape; the larger ``sparsity``, the smaller."""
    rows = torch.nonzero(tongue.any(1)).flatten()
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    y = torch.arange(tongue.shape[0], dtype=torch.float32).view(-1, 1)
    towards_back = ((bottom - y) / max(bottom - top, 1)).clamp(0, 1)  # 1 at the back, 0 at the tip
    field = towards_back + 0.6 * smooth_noise(tongue.shape, cells=4) - sparsity
    blob = torch.sigmoid(field / 0.1)
    width = max(3, int(tongue.any(0).sum()) // 6) | 1  # odd kernel: the patch fades out over ~1/12 of the width
    inside = F.avg_pool2d(tongue[None, None].float(), width, stride=1, padding=width // 2)[0, 0]
    return blob * inside.clamp(0, 1) * tongue


class CoatingAugmentation(PhotoAugmentation):
    """:class:`PhotoAugmentation` plus :class:`CoatingTransform` (lift ``coating_lift``, tint ``coating_yellow``)
    on a fraction ``p_coating`` of the samples, painted before the colour changes (which then recolour the
    coating too)."""

    p_coating = 0.4
    coating_lift: RandomScalar = (0.0, 1.5)
    coating_yellow: RandomScalar = (-0.1, 0.6)
    coating_papillae: RandomScalar = 0.0
    coating_fissures: RandomScalar = 0.0

    def get_training_transforms(self, *args, **kwargs):
        composed = super().get_training_transforms(*args, **kwargs)
        transforms = composed.transforms
        coating = CoatingTransform(lift=self.coating_lift, yellow=self.coating_yellow,
                                   papillae=self.coating_papillae, fissures=self.coating_fissures)
        transforms.insert(_after_spatial(transforms), RandomTransform(coating, apply_probability=self.p_coating))
        return composed


class TexturedCoatingAugmentation(CoatingAugmentation):
    """:class:`CoatingAugmentation` whose coating has real coating's texture (:class:`CoatingTransform`'s
    ``papillae`` and ``fissures``): grainy papillae and dark cracks, as on the coated tongues of clinical close-ups,
    rather than a smooth pale patch only."""

    coating_papillae: RandomScalar = (0.1, 0.5)
    coating_fissures: RandomScalar = (0.0, 1.5)


class DarkCoatingAugmentation(CoatingAugmentation):
    """:class:`CoatingAugmentation` whose coating may also be darker than the tongue's grey level and more
    yellow: thick yellow-brown coating and the shadowed back of the tongue, which a paler-only coating never
    shows."""

    coating_lift = (-1.0, 1.5)
    coating_yellow = (-0.1, 0.9)


class ContextCanvasTransform(BasicTransform):
    """Zoom out onto a made-up surrounding: the sample shrunk by ``shrink`` (a fraction of its height and
    width) and placed at a random spot of a canvas of its own size; the canvas is background (label 0).

    The canvas is a smooth field with a brightness gradient and texture (``texture`` standard deviations) around
    one colour: with equal chance the mean colour of the sample's own background (lips, skin, chin rest in a
    close-up), or a random level from dark to pale with a random cast (clothes, towels, walls). 2d only; other
    samples pass unchanged.
    """

    def __init__(self, shrink: RandomScalar = (0.45, 0.85), texture: float = 0.3):
        super().__init__()
        self.shrink, self.texture = shrink, texture

    def get_parameters(self, **data_dict) -> dict:
        image, segmentation = data_dict["image"], data_dict.get("segmentation")
        if image.ndim != 3 or segmentation is None:
            return {"canvas": None}
        channels, height, width = image.shape
        shrink = sample_scalar(self.shrink, image)
        small = (max(2, round(height * shrink)), max(2, round(width * shrink)))
        corner = (int(torch.randint(0, height - small[0] + 1, ())), int(torch.randint(0, width - small[1] + 1, ())))
        background = segmentation[0] == 0
        if torch.rand(()) < 0.5 and background.any():
            colour = image[:, background].mean(1)
        else:
            colour = (torch.rand(()) * 3 - 1.5) + (torch.rand(channels) - 0.5) * 0.6
        rows = torch.linspace(-1, 1, height).view(-1, 1) * (torch.rand(()) - 0.5)
        field = rows + self.texture * smooth_noise((height, width), cells=int(torch.randint(2, 9, ())))
        canvas = colour.view(-1, 1, 1) + field + 0.5 * self.texture * torch.stack(
            [smooth_noise((height, width), cells=width // 8) for _ in range(channels)])
        return {"canvas": canvas, "small": small, "corner": corner}

    @staticmethod
    def _paste(background: torch.Tensor, content: torch.Tensor, mode: str, small: tuple[int, int],
               corner: tuple[int, int], **_) -> torch.Tensor:
        (h, w), (top, left) = small, corner
        shrunk = F.interpolate(content[None].float(), size=(h, w), mode=mode,
                               **({"align_corners": False, "antialias": True} if mode == "bilinear" else {}))[0]
        background[:, top:top + h, left:left + w] = shrunk.to(background.dtype)
        return background

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        if params["canvas"] is None:
            return img
        return self._paste(params["canvas"].to(img), img, "bilinear", **params)

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        if params["canvas"] is None:
            return segmentation
        return self._paste(torch.zeros_like(segmentation), segmentation, "nearest", **params)


class ContextAugmentation(CoatingAugmentation):
    """:class:`CoatingAugmentation` plus :class:`ContextCanvasTransform` on a fraction ``p_context`` of the
    samples, right after the spatial transform (the coating and colour changes then apply to the whole canvas)."""

    p_context = 0.3

    def get_training_transforms(self, *args, **kwargs):
        composed = super().get_training_transforms(*args, **kwargs)
        transforms = composed.transforms
        transforms.insert(_after_spatial(transforms),
                          RandomTransform(ContextCanvasTransform(), apply_probability=self.p_context))
        return composed


def _after_spatial(transforms: list) -> int:
    """The index just after nnU-Net's spatial transform in a list of transforms."""
    return next(i for i, t in enumerate(transforms) if isinstance(t, SpatialTransform)) + 1
