"""Which region wins each pixel: the region-to-pixel layer's arg-max, made visible.

    exp = Explanation.compute(model, image, regions)   # one image, a trained region model
    exp.at(row, col)                                    # the pixel's label, winner, runner-ups
    exp.figure(row, col, label=None)                    # the same as a matplotlib figure
    region_explorer(model, dataset, proposals)          # ipywidgets: pick image, pixel, class

For every atom (pixel group sharing the same regions) and class, Eq. 3 picks the region with
the highest score among those containing it; that region's score becomes the pixel's score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..proposals import RegionSet
from .viz import overlay, show_regions

__all__ = ["Explanation", "region_explorer"]


@dataclass
class Explanation:
    """One image through a region model, with everything needed to explain its pixels.

    image (uint8[H, W, 3]), regions (RegionSet), scores (float[R, C]: region logits, or
    probabilities for models that take the softmax first), atom_scores (float[A, C]),
    winners (int[A, C]: the winning region, -1 if none), prediction (int[H, W], 1..C),
    classes (names of 1..C), probabilities (whether scores are probabilities).
    """

    image: np.ndarray
    regions: RegionSet
    scores: np.ndarray
    atom_scores: np.ndarray
    winners: np.ndarray
    prediction: np.ndarray
    classes: list
    probabilities: bool

    @classmethod
    @torch.no_grad()
    def compute(cls, model, image: np.ndarray, regions: RegionSet, classes, cfg=None) -> "Explanation":
        """Run ``model`` (an :class:`~rpl.models.E2S2`) on ``image`` (uint8[H, W, 3]) with
        ``regions`` proposed on that image, prepared as its run's ``cfg`` (a
        :class:`~rpl.runs.TrainConfig`: image size, region kind) prepares test images."""
        from ..data import Sample
        from ..runs import TrainConfig, prepare

        if regions.shape != image.shape[:2]:
            raise ValueError(f"regions cover {regions.shape}, the image is {image.shape[:2]}")
        sample = Sample(image=image, label=np.zeros(image.shape[:2], np.int64), name="")
        tensor, _, regions = prepare(sample, regions, cfg or TrainConfig(), False, training=False)
        image = np.ascontiguousarray(tensor[0].permute(1, 2, 0).mul(255).round().byte().numpy())
        out = model.scores(model.features(tensor), regions, return_winners=True)
        scores = model.maximised_scores(out.logits)
        probabilities = scores is not out.logits
        atoms, winners = out.atoms, out.winners
        prediction = out.labels().numpy()
        return cls(
            image, regions, scores.numpy(), atoms.numpy(), winners.numpy(), prediction, list(classes), probabilities
        )

    def _class_index(self, label) -> int:
        if label is None:
            return None
        if isinstance(label, str):
            if label not in self.classes:
                raise ValueError(f"label {label!r} is not one of the classes {self.classes}")
            return self.classes.index(label) + 1
        if not 1 <= int(label) <= len(self.classes):
            raise ValueError(f"label must be 1..{len(self.classes)} or a class name, got {label!r}")
        return int(label)

    def at(self, row: int, col: int, label=None, runner_ups: int = 3) -> dict:
        """The pixel (row, col): its atom, predicted label and, for ``label`` (class name or
        1..C; default: the predicted one), the winning region, its score and the next best
        regions containing the pixel."""
        h, w = self.prediction.shape
        if not (0 <= row < h and 0 <= col < w):
            raise ValueError(f"pixel ({row}, {col}) is outside the {h}x{w} image")
        atom = int(self.regions.superpixels[row, col])
        predicted = int(self.prediction[row, col])
        c = self._class_index(label) or predicted
        containing = self.regions.membership[:, atom].nonzero()[0]
        winner = int(self.winners[atom, c - 1])
        ranked = containing[np.argsort(-self.scores[containing, c - 1], kind="stable")]
        ranked = ranked[ranked != winner]
        return {
            "atom": atom,
            "predicted": predicted,
            "predicted_name": self.classes[predicted - 1],
            "label": c,
            "label_name": self.classes[c - 1],
            "winner": winner,
            "score": float(self.atom_scores[atom, c - 1]),
            "regions_containing": len(containing),
            "runner_ups": [(int(r), float(self.scores[r, c - 1])) for r in ranked[:runner_ups]],
        }

    def figure(self, row: int, col: int, label=None, runner_ups: int = 3):
        """The winning region of pixel (row, col) for ``label`` on the image, its runner-ups and
        the final label map, the pixel marked with a cross."""
        import matplotlib.pyplot as plt

        info = self.at(row, col, label, runner_ups)
        panels = [(info["winner"], "winner")] + [
            (r, f"runner-up {i + 1}") for i, (r, _) in enumerate(info["runner_ups"])
        ]
        fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.6 * (len(panels) + 1), 3.0), squeeze=False)
        axes = axes[0]
        kind = "p" if self.probabilities else "logit"
        show_regions(axes[: len(panels)], self.image, self.regions, [r for r, _ in panels], boxes=False)
        for ax, (region, title) in zip(axes, panels):
            ax.set_title(
                f"{title}: region {region}\n{info['label_name']} {kind} {self.scores[region, info['label'] - 1]:.2f}",
                fontsize="small",
            )
        final = axes[-1]
        final.imshow(overlay(self.image, self.prediction, alpha=0.6))
        final.set_title(
            f"final label: {info['predicted_name']}\n({info['regions_containing']} regions hold it)", fontsize="small"
        )
        for ax in axes:
            ax.plot([col], [row], marker="+", color="red", markersize=14, markeredgewidth=2)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        return fig


def region_explorer(model, samples, proposals, classes, cfg=None):
    """An ipywidgets explorer: choose an image, a pixel (sliders, or a click on the image with
    ``%matplotlib widget``) and a class; see the winning region's mask and score, the
    runner-ups and the pixel's final label.

    Args:
        model: a trained :class:`~rpl.models.E2S2` in eval mode.
        samples: {name: :class:`~rpl.data.Sample`}.
        proposals: callable name -> RegionSet of that image (e.g. a cache's RGB proposals).
        classes: class names of labels 1..C.
        cfg: the run's :class:`~rpl.runs.TrainConfig` (how it prepares test images).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    names = list(samples)
    cache: dict[str, Explanation] = {}

    def explanation(name) -> Explanation:
        if name not in cache:
            cache[name] = Explanation.compute(model, samples[name].image, proposals(name), classes, cfg)
        return cache[name]

    h, w = samples[names[0]].image.shape[:2]
    image = widgets.Dropdown(options=names, description="image")
    row = widgets.IntSlider(value=h // 2, min=0, max=h - 1, description="row")
    col = widgets.IntSlider(value=w // 2, min=0, max=w - 1, description="column")
    # 0 stands for "the predicted class": a Dropdown's value None means "nothing selected" and
    # blanks the control when chosen again.
    label = widgets.Dropdown(
        options=[("predicted", 0)] + [(c, i + 1) for i, c in enumerate(classes)], description="class"
    )
    out = widgets.Output()
    shown = []  # the figure on display, closed when the next one replaces it

    def pick(event):
        """A click on any panel picks that pixel (with ipympl's interactive backend,
        ``%matplotlib widget``; the inline backend's figures are pictures)."""
        if event.inaxes is not None and event.xdata is not None and event.ydata is not None:
            r, c = min(max(round(event.ydata), 0), row.max), min(max(round(event.xdata), 0), col.max)
            row.value, col.value = r, c

    def redraw(*_):
        exp = explanation(image.value)
        row.max, col.max = exp.prediction.shape[0] - 1, exp.prediction.shape[1] - 1
        with out:
            out.clear_output(wait=True)
            while shown:
                plt.close(shown.pop())
            fig = exp.figure(row.value, col.value, label.value or None)
            fig.canvas.mpl_connect("button_press_event", pick)
            shown.append(fig)
            display(fig)
            info = exp.at(row.value, col.value, label.value or None)
            print(
                f"pixel ({row.value}, {col.value}): atom {info['atom']}, final label {info['predicted_name']}; "
                f"{info['label_name']}: region {info['winner']} wins with {info['score']:.3f} "
                f"among {info['regions_containing']} regions"
            )

    for widget in (image, row, col, label):
        widget.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([image, label]), widgets.HBox([row, col]), out])
