"""The reproduction's figures from its runs and results (notebooks 06 and 07 show the same).

    python -m rpl figures            # from runs/ and results/ into figures/
    python -m rpl figures --quick    # quick-preset runs (trained if missing) into cache/figures-quick

``FIGURES`` names every file :func:`make_figures` writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data import SiftFlow, scene_category
from ..metrics import boundary_mask
from ..proposals import ProposalCache
from .diagnostics import gradient_figure
from .viz import colorize, label_grid, legend, save_figure

__all__ = [
    "FIGURES",
    "figure_runs",
    "example_names",
    "predictions",
    "paper_vs_ours",
    "examples",
    "boundary_closeups",
    "explorer_snapshot",
    "make_figures",
]

FIGURES = ("05_paper_vs_ours.png", "06_examples.png", "06_boundaries.png", "06_explorer.png", "07_gradients.png")


def figure_runs(runs_dir="runs", quick: bool = False) -> dict[str, Path]:
    """The two finished runs the figures compare, ``{"e2s2_cpu": folder, "fcn_cpu": folder}``:
    each experiment's first seed with a finished run in ``runs_dir`` (its quick run with
    ``quick``; figures read runs, ``python -m rpl reproduce`` trains them)."""
    from ..experiments import finished_run

    runs = {e: finished_run(runs_dir, e, quick) for e in ("e2s2_cpu", "fcn_cpu")}
    for experiment, folder in runs.items():
        if folder is None:
            raise FileNotFoundError(
                f"{Path(runs_dir) / experiment} has no finished run: train it first (`python -m rpl reproduce "
                "--only e2s2_cpu --only fcn_cpu`, with --quick for the quick runs)"
            )
    return runs


def example_names(dataset, count: int = 5) -> list[str]:
    """The first test image of ``count`` different scene categories, in a fixed order."""
    seen, names = set(), []
    for name in dataset.names:
        scene = scene_category(name)
        if scene not in seen:
            seen.add(scene)
            names.append(name)
    return names[:count]


def predictions(run, dataset, names, cache_root=None) -> dict[str, np.ndarray]:
    """{name: label map} of a trained run on some images of ``dataset``."""
    from ..runs import load_run, predict_sample

    model, cfg = load_run(run)
    cache = ProposalCache(dataset, root=cache_root, kind=cfg.regions)
    return {n: predict_sample(model, cfg, dataset[dataset.names.index(n)], cache) for n in names}


def paper_vs_ours(tables: dict):
    """Bars of class-average accuracy, paper versus ours, for the rows of Tables 3-4 and Sec. 4.3."""
    import matplotlib.pyplot as plt

    rows = []
    for title in ("Table 3", "Table 4", "Sec. 4.3"):
        frame = tables[title]
        frame = frame[(frame["measure"] == "class_accuracy") & ~frame["row"].str.endswith(", PASCAL Context")]
        rows += [(f"{title}: {r.row}", r.paper, r.ours, r.ours_min, r.ours_max) for r in frame.itertuples()]
    labels, paper, ours, low, high = zip(*rows)
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8.5, 0.38 * len(rows) + 1.4))
    ax.barh(y - 0.2, paper, 0.4, label="paper (VGG-16, 600 px, 30 epochs)", color="0.6")
    ours = np.array(ours)
    err = np.nan_to_num(np.vstack([ours - np.array(low), np.array(high) - ours]))
    ax.barh(y + 0.2, ours, 0.4, xerr=err, label="ours (MobileNetV2, 256 px, 2 CPU cores)", color="tab:blue")
    ax.set_yticks(y, labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("class-average accuracy (%), SIFT Flow test")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, fontsize="small", frameon=False)
    fig.tight_layout()
    return fig


def examples(dataset, names, ours: dict, fcn: dict):
    """Fig. 4 style: image, ground truth, FCN, ours for each image, with a class legend."""
    rows = []
    for n in names:
        sample = dataset[dataset.names.index(n)]
        rows.append([sample.image, sample.label, fcn[n], ours[n]])
    fig = label_grid(rows, titles=["image", "ground truth", "FCN", "ours (end to end)"], row_titles=names)
    labels = np.unique(np.concatenate([np.ravel(panel) for r in rows for panel in r[1:]]))
    legend(
        fig.axes[-1],
        dataset.classes,
        labels=labels[labels > 0],
        loc="center left",
        bbox_to_anchor=(1.02, 0.5),
        fontsize="x-small",
    )
    return fig


def _busiest_window(band: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the size x size window holding the most boundary-band pixels."""
    h, w = band.shape
    size = min(size, h, w)
    summed = np.pad(band.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    counts = summed[size:, size:] - summed[:-size, size:] - summed[size:, :-size] + summed[:-size, :-size]
    r, c = np.unravel_index(np.argmax(counts), counts.shape)
    return int(r), int(c)


def boundary_closeups(dataset, names, ours: dict, fcn: dict, size: int = 64):
    """Close-ups of the most boundary-dense window of each image: image, ground truth, FCN,
    ours; titles give each model's accuracy on the window's 4-px boundary pixels."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(names), 4, figsize=(8.8, 2.3 * len(names)), squeeze=False)
    for row, n in zip(axes, names):
        sample = dataset[dataset.names.index(n)]
        band = boundary_mask(sample.label) & (sample.label > 0)
        r, c = _busiest_window(band, size)
        crop = (slice(r, r + size), slice(c, c + size))
        panels = [(sample.image[crop], "image"), (sample.label[crop], "ground truth")]
        for name, pred in (("FCN", fcn[n]), ("ours", ours[n])):
            hit = (pred[crop] == sample.label[crop])[band[crop]]
            panels.append((pred[crop], f"{name}: {hit.mean():.0%} of boundary px"))
        for ax, (panel, title) in zip(row, panels):
            ax.imshow(colorize(panel) if panel.ndim == 2 else panel, interpolation="nearest")
            ax.set_title(title, fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(n, fontsize="small")
    fig.tight_layout()
    return fig


def explorer_snapshot(run, dataset, name: str, cache_root=None):
    """The region explorer's view of one pixel: the boundary pixel of ``name`` where the most
    regions overlap, its winning region and runner-ups for the predicted class."""
    from ..runs import load_run
    from .explorer import Explanation

    model, cfg = load_run(run)
    sample = dataset[dataset.names.index(name)]
    regions = ProposalCache(dataset, root=cache_root, kind=cfg.regions).get(name, "rgb")
    exp = Explanation.compute(model, sample.image, regions, dataset.classes, cfg)
    depth = np.asarray(regions.membership.sum(0)).ravel()[regions.superpixels]
    depth = np.where(boundary_mask(sample.label), depth, -1)
    row, col = np.unravel_index(np.argmax(depth), depth.shape)
    return exp.figure(int(row), int(col))


def make_figures(
    out="figures",
    runs_dir="runs",
    results_dir="results",
    examples_count: int = 5,
    data_root=None,
    cache_root=None,
    log=print,
    quick: bool = False,
) -> list[Path]:
    """Write every figure of :data:`FIGURES` into ``out``; returns their paths.

    Tables come from ``results_dir``; example predictions (``examples_count`` scenes) from the
    runs of :func:`figure_runs` in ``runs_dir``."""
    import matplotlib.pyplot as plt

    from .tables import all_tables

    runs = figure_runs(runs_dir, quick)
    dataset = SiftFlow("test", data_root)
    names = example_names(dataset, examples_count)
    ours = predictions(runs["e2s2_cpu"], dataset, names, cache_root)
    fcn = predictions(runs["fcn_cpu"], dataset, names, cache_root)
    figures = {
        "05_paper_vs_ours.png": lambda: paper_vs_ours(all_tables(results_dir)),
        "06_examples.png": lambda: examples(dataset, names, ours, fcn),
        "06_boundaries.png": lambda: boundary_closeups(dataset, names, ours, fcn),
        "06_explorer.png": lambda: explorer_snapshot(runs["e2s2_cpu"], dataset, names[0], cache_root),
        "07_gradients.png": lambda: gradient_figure(json.loads((Path(results_dir) / "gradients.json").read_text())),
    }
    paths = []
    for filename, draw in figures.items():
        fig = draw()
        path = Path(out) / filename
        save_figure(fig, path)
        plt.close(fig)
        log(f"wrote {path}")
        paths.append(path)
    return paths
