"""Report figures: contact sheet of the worst cases and the Dice histogram (matplotlib, Agg canvas).

Figures are drawn on their own Agg canvas, never through pyplot, so the caller's backend is untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from nnunet_tongue.evaluation.cases import read_photo

#: Outline colours: ground truth drawn wide underneath, prediction thin on top, so both stay visible.
GT_COLOUR = "#ffd400"
PRED_COLOUR = "#00c8ff"
_GT_WIDTH, _PRED_WIDTH = 2.6, 1.2
_TILE_INCHES = 3.6
_COLUMNS = 4
_MAX_BINS = 50


@dataclass
class Tile:
    """One case of the contact sheet."""

    case: str
    dice: float
    hd95: float
    pred: np.ndarray
    gt: np.ndarray
    photo: np.ndarray | None = None

    @classmethod
    def of_case(cls, case: str, dice: float, hd95: float, pred: np.ndarray, gt: np.ndarray,
                photo_path: Path | None) -> Tile:
        """The tile of one case, its photo (when there is one) read at the masks' size."""
        photo = read_photo(photo_path, (gt.shape[1], gt.shape[0])) if photo_path else None
        return cls(case, dice, hd95, pred, gt, photo)


def _outline(ax, mask: np.ndarray, colour: str, width: float) -> None:
    if mask.any() and not mask.all():
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=colour, linewidths=width)


def contact_sheet(tiles: list[Tile], path: Path, title: str) -> None:
    """Grid of photos (grey when absent) with ground-truth and prediction outlines, captioned with case, Dice, HD95."""
    sheet_figure(tiles, title).savefig(path)


def sheet_figure(tiles: list[Tile], title: str) -> Figure:
    """The contact sheet's figure: the title on top, the legend under the grid, so a long title never meets it."""
    columns = min(_COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    height, width = tiles[0].gt.shape
    tile_h = _TILE_INCHES * height / width
    fig = Figure(figsize=(columns * _TILE_INCHES, rows * (tile_h + 0.3) + 0.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for index, tile in enumerate(tiles):
        ax = fig.add_subplot(rows, columns, index + 1)
        if tile.photo is not None:
            ax.imshow(tile.photo, interpolation="antialiased")
        else:
            ax.imshow(np.full(tile.gt.shape, 0.5), cmap="gray", vmin=0, vmax=1)
        _outline(ax, tile.gt, GT_COLOUR, _GT_WIDTH)
        _outline(ax, tile.pred, PRED_COLOUR, _PRED_WIDTH)
        detail = f"HD95 {tile.hd95:.1f} px" if tile.pred.any() else "prediction empty"
        ax.set_title(f"{tile.case}   Dice {tile.dice:.4f}   {detail}", fontsize=10)
        ax.set_axis_off()
    legend = [Line2D([], [], color=GT_COLOUR, lw=_GT_WIDTH), Line2D([], [], color=PRED_COLOUR, lw=_PRED_WIDTH)]
    fig.legend(legend, ["ground truth", "prediction"], loc="outside lower center", ncol=2, frameon=False)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    return fig


def dice_histogram(dice: list[float], path: Path) -> None:
    """Histogram of per-case Dice (Freedman-Diaconis bins, at most 50) with the mean and the median marked."""
    values = np.asarray(dice, dtype=float)
    low = float(values.min())
    span = (low - 0.01, 1.0) if low < 1.0 else (0.99, 1.0)
    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    edges = np.histogram_bin_edges(values, bins="fd", range=span)
    bins = edges if len(edges) <= _MAX_BINS + 1 else _MAX_BINS
    ax.hist(values, bins=bins, range=span, color="#4c72b0")
    ax.axvline(values.mean(), color="#c44e52", ls="--", label=f"mean {values.mean():.4f}")
    ax.axvline(float(np.median(values)), color="#222222", ls=":", label=f"median {np.median(values):.4f}")
    ax.set_xlabel("Dice")
    ax.set_ylabel("cases")
    ax.set_title(f"Dice per case ({len(values)} cases)")
    ax.legend(loc="upper left")
    fig.savefig(path)
