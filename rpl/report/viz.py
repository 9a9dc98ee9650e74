"""Figures: one fixed colour per class, reused by every notebook and figure."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..files import atomic

__all__ = [
    "SIFTFLOW_PALETTE",
    "palette",
    "colorize",
    "overlay",
    "legend",
    "plot_class_frequencies",
    "label_grid",
    "prediction_figure",
    "save_figure",
    "setup_notebook",
    "show_regions",
]

# Row k is the colour of class k; row 0 (void) is black. Chosen so that related classes
# (sky/sea/river, tree/plant/grass) are alike in hue yet distinguishable.
SIFTFLOW_PALETTE = np.array(
    [
        (0, 0, 0),  # void
        (190, 120, 60),  # awning
        (150, 80, 140),  # balcony
        (255, 230, 0),  # bird
        (0, 140, 140),  # boat
        (120, 110, 90),  # bridge
        (70, 70, 70),  # building
        (0, 60, 100),  # bus
        (0, 0, 142),  # car
        (180, 90, 200),  # cow
        (255, 255, 255),  # crosswalk
        (250, 210, 140),  # desert
        (160, 60, 20),  # door
        (190, 153, 153),  # fence
        (170, 200, 80),  # field
        (100, 220, 60),  # grass
        (250, 250, 190),  # moon
        (130, 90, 50),  # mountain
        (220, 20, 60),  # person
        (60, 160, 60),  # plant
        (153, 153, 153),  # pole
        (0, 170, 200),  # river
        (128, 64, 128),  # road
        (100, 100, 60),  # rock
        (194, 178, 128),  # sand
        (0, 90, 160),  # sea
        (244, 35, 232),  # sidewalk
        (220, 220, 0),  # sign
        (135, 206, 235),  # sky
        (200, 120, 200),  # staircase
        (250, 170, 30),  # streetlight
        (255, 120, 0),  # sun
        (20, 110, 20),  # tree
        (255, 160, 160),  # window
    ],
    dtype=np.uint8,
)


def palette(num_classes: int) -> np.ndarray:
    """uint8[C + 1, 3] colours for labels 0..C: SIFT Flow's for C = 33, else PASCAL VOC's
    bit-interleaved palette (distinct for up to 255 classes)."""
    if num_classes == len(SIFTFLOW_PALETTE) - 1:
        return SIFTFLOW_PALETTE
    k = np.arange(num_classes + 1)
    colours = np.zeros((num_classes + 1, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            colours[:, channel] |= ((k >> (3 * bit + channel)) & 1) << (7 - bit)
    return colours.astype(np.uint8)


def colorize(label, colours: np.ndarray | None = None, num_classes: int = 33) -> np.ndarray:
    """uint8[H, W, 3]: each label painted in its class colour (void black)."""
    label = np.asarray(label)
    colours = palette(num_classes) if colours is None else np.asarray(colours)
    if label.size and (label.min() < 0 or label.max() >= len(colours)):
        raise ValueError(f"label values must lie in 0..{len(colours) - 1}")
    return colours[label]


def overlay(image, label, alpha: float = 0.5, colours=None, num_classes: int = 33) -> np.ndarray:
    """uint8[H, W, 3]: ``image`` blended with the label colours; void pixels left as they are."""
    image = np.asarray(image, dtype=np.float32)
    label = np.asarray(label)
    if image.shape[:2] != label.shape:
        raise ValueError(f"image is {image.shape[:2]} but label is {label.shape}")
    painted = colorize(label, colours, num_classes).astype(np.float32)
    blend = np.where((label > 0)[..., None], (1 - alpha) * image + alpha * painted, image)
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)


def legend(ax, classes, labels=None, colours=None, **kwargs):
    """Add a legend of class colours to a matplotlib axis: all classes, or those in ``labels``."""
    from matplotlib.patches import Patch

    colours = palette(len(classes)) if colours is None else np.asarray(colours)
    shown = range(1, len(classes) + 1)
    if labels is not None:
        shown = [k for k in np.unique(np.asarray(labels)) if k > 0]
    handles = [Patch(color=colours[k] / 255, label=classes[k - 1]) for k in shown]
    kwargs.setdefault("loc", "center left")
    kwargs.setdefault("bbox_to_anchor", (1.0, 0.5))
    kwargs.setdefault("fontsize", "small")
    return ax.legend(handles=handles, **kwargs)


def plot_class_frequencies(ax, counts, classes, label=None, **kwargs):
    """Bar chart of class pixel frequencies on a log scale (``counts``: int[C + 1], 0 = void)."""
    counts = np.asarray(counts, dtype=np.float64)
    freq = counts[1:] / counts.sum()
    ax.bar(np.arange(len(classes)), np.where(freq > 0, freq, np.nan), label=label, **kwargs)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(classes)), classes, rotation=90)
    ax.set_ylabel("fraction of all pixels")
    ax.set_xlim(-0.6, len(classes) - 0.4)
    return ax


def label_grid(rows, titles=None, row_titles=None, size=2.2):
    """A figure showing ``rows`` of images (H×W×3) or label maps (H×W, painted in the palette).

    Args:
        rows: list of lists; every row holds the same number of panels.
        titles: column titles; row_titles: one per row (e.g. the image name).
    """
    import matplotlib.pyplot as plt

    ncols = len(rows[0])
    fig, axes = plt.subplots(len(rows), ncols, figsize=(size * ncols, size * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            panel = np.asarray(panel)
            ax = axes[r, c]
            ax.imshow(colorize(panel) if panel.ndim == 2 else panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if titles is not None and r == 0:
                ax.set_title(titles[c], fontsize="small")
            if row_titles is not None and c == 0:
                ax.set_ylabel(row_titles[r], fontsize="small")
    fig.tight_layout()
    return fig


def prediction_figure(image, labels, classes):
    """The image, its label map over it and alone, and a legend of the classes it holds."""
    import matplotlib.pyplot as plt

    colours = palette(len(classes))
    h, w = labels.shape
    fig, axes = plt.subplots(1, 3, figsize=(3 * 3 * w / max(h, w) + 2.5, 3 * h / max(h, w) + 0.3))
    for ax, shown, title in zip(
        axes, (image, overlay(image, labels, colours=colours), colours[labels]), ("image", "prediction", "label map")
    ):
        ax.imshow(shown)
        ax.set_title(title, fontsize="small")
        ax.axis("off")
    legend(axes[-1], classes, labels, colours)
    fig.tight_layout()
    return fig


def save_figure(fig, path, dpi: int = 100) -> None:
    """Save ``fig`` to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    with atomic(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or None)


class NotebookSetup(NamedTuple):
    """What every notebook (run from ``notebooks/``) needs: quick mode (``RPL_QUICK``), where it
    writes figures (``$RPL_FIGURES``, default ``../figures``; quick runs ``../cache/figures-quick``,
    never the real ones), the cache (``$RPL_CACHE`` or ``../cache``) and the results it reads
    (``$RPL_RESULTS``, default the committed ``../results``, which quick mode reads too).
    ``make reproduce`` points them at its own folder."""

    quick: bool
    figures: Path
    cache: Path
    results: Path


def setup_notebook(dpi: int = 72) -> NotebookSetup:
    """A notebook's first call: inline figures as small JPEGs, so committed notebooks stay light
    (full-resolution copies go to ``figures/`` through :func:`save_figure`); prints the
    versions; returns the notebook's :class:`NotebookSetup`."""
    import sys

    import matplotlib.pyplot as plt
    import torch
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    from .. import __version__
    from ..config import quick_mode

    set_matplotlib_formats("jpeg", pil_kwargs={"quality": 60})
    plt.rcParams["figure.dpi"] = dpi
    quick = quick_mode()
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, torch {torch.__version__}, rpl {__version__}, "
        f"quick mode: {quick}"
    )
    figures = Path(os.environ.get("RPL_FIGURES") or ("../cache/figures-quick" if quick else "../figures"))
    results = Path(os.environ.get("RPL_RESULTS") or "../results")
    return NotebookSetup(quick, figures, Path(os.environ.get("RPL_CACHE", "../cache")), results)


def show_regions(axes, image, regions, indices, boxes=True, fill=True, colour=(255, 200, 0)):
    """One region per axis: its mask highlighted on the image (``fill``), its box outlined.

    Args:
        axes: matplotlib axes, one per index (any array shape).
        image (ndarray[H, W, 3] uint8), regions (RegionSet), indices: which regions.
        boxes, fill: bool, or one bool per index.
    """
    from matplotlib.patches import Rectangle

    axes = np.ravel(axes)
    n = len(indices)
    boxes = np.broadcast_to(boxes, n)
    fill = np.broadcast_to(fill, n)
    for ax, i, show_box, show_fill in zip(axes, indices, boxes, fill):
        shown = np.asarray(image, dtype=np.float32)
        if show_fill:
            m = regions.mask(int(i))[..., None]
            shown = np.where(m, 0.55 * shown + 0.45 * np.array(colour), 0.4 * shown)
        ax.imshow(shown.astype(np.uint8))
        if show_box:
            x1, y1, x2, y2 = regions.boxes[int(i)]
            ax.add_patch(
                Rectangle(
                    (x1 - 0.5, y1 - 0.5),
                    x2 - x1 + 1,
                    y2 - y1 + 1,
                    fill=False,
                    edgecolor=np.array(colour) / 255,
                    linewidth=1.5,
                )
            )
        ax.set_xticks([])
        ax.set_yticks([])
    return axes
