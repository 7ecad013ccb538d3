"""Post-processing of a predicted tongue mask: keep the largest connected component, fill its holes.

A photo shows one tongue. Stray positives elsewhere (lips, a red shirt, a reflection) are separate
components; a coated or glossy patch on the tongue can come out as a hole. The rule here is
deliberately simple and fixed (no thresholds learned from data):

1. label the foreground with 8-connectivity and keep only the component with the most pixels
   (ties: the first in raster order);
2. fill every background region that does not touch the image border.

Its measured effect on Dice is in ``docs/inference.md``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected foreground component of a 2D mask (bool). An empty mask stays empty."""
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions enclosed by foreground (4-connected background regions touching the image border
    stay background), as ``scipy.ndimage.binary_fill_holes`` does, by labelling the background once."""
    mask = np.asarray(mask, dtype=bool)
    if mask.size == 0:
        return mask.copy()
    labels, n = ndimage.label(~mask)
    outside = np.zeros(n + 1, dtype=bool)
    outside[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    outside[0] = True  # label 0 is the foreground itself
    return mask | ~outside[labels]


def postprocess_mask(mask: np.ndarray) -> np.ndarray:
    """Largest connected component, holes filled (bool [H, W])."""
    return fill_holes(largest_component(mask))
