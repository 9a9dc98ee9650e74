"""Losses: the paper's pixel-level loss over atoms (Sec. 3.4-3.5) and the baseline's
region-level loss (Eq. 2)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["balanced_weights", "pixel_loss", "pixel_loss_per_pixel", "region_labels", "region_loss"]


def balanced_weights(class_pixels) -> torch.Tensor:
    """Sec. 3.4: inverse class frequency over the training set, per class 1..C (index c - 1).

    Args:
        class_pixels: int[C + 1] pixel counts (index 0 = void, ignored), e.g.
            ``SiftFlow("train").class_pixel_counts()``.

    Classes without training pixels get weight 0. Only ratios matter: :func:`pixel_loss`
    renormalises the weights of each image to sum to 1.
    """
    counts = np.asarray(class_pixels, dtype=np.float64)[1:]
    freq = counts / counts.sum()
    return torch.tensor(np.where(freq > 0, 1.0 / np.where(freq > 0, freq, 1), 0.0), dtype=torch.float32)


def pixel_loss(atom_scores, atom_labels, atom_pixels, class_weights=None, probabilities=False):
    """Eq. 4 over atoms (Sec. 3.5): every pixel of an atom has the atom's scores and label, so
    the per-pixel softmax cross-entropy summed over an image equals the atoms' losses weighted
    by their pixel counts — exactly, at a fraction of the cost.

    Args:
        atom_scores (Tensor[A, C]): logits (or probabilities with ``probabilities=True``, the
            softmax-before-max variant).
        atom_labels (Tensor[A] long): 0 = void (ignored), 1..C.
        atom_pixels (Tensor[A]): pixels per atom.
        class_weights (Tensor[C], optional): per-class weights (balanced loss); the weights of
            the image's labelled pixels are renormalised to sum to 1. None: unbalanced, the
            mean over the image's labelled pixels.

    Returns:
        scalar Tensor (0 when the image has no labelled pixel).
    """
    keep = atom_labels > 0
    if not bool(keep.any()):
        return atom_scores.sum() * 0
    scores = atom_scores[keep]
    target = atom_labels[keep] - 1
    if probabilities:
        nll = F.nll_loss(torch.log(scores.clamp_min(1e-12)), target, reduction="none")
    else:
        nll = F.cross_entropy(scores, target, reduction="none")
    weight = atom_pixels[keep].to(nll.dtype)
    if class_weights is not None:
        weight = weight * class_weights.to(nll.device, nll.dtype)[target]
    return (nll * weight).sum() / weight.sum().clamp_min(1e-12)


def pixel_loss_per_pixel(pixel_scores, labels, class_weights=None, probabilities=False):
    """The same loss, brute force over pixels (Tensor[P, C], Tensor[P]); for tests."""
    return pixel_loss(pixel_scores, labels, torch.ones_like(labels), class_weights, probabilities)


def region_labels(regions, label: np.ndarray, foreground_iou: float = 0.5):
    """Region labels for the baseline's region-level loss (Eq. 2), by overlap with the ground
    truth, as Fast R-CNN labels boxes: a region takes the class of the ground-truth segment it
    overlaps best when that IoU >= ``foreground_iou`` (Fast R-CNN: 0.5); the others are left
    out (-1) — SIFT Flow has no background class to give them.

    Returns:
        int64[R]: 1..C, or -1 for regions that do not enter the loss.
    """
    iou, classes = regions.segment_ious(label)
    if iou.shape[1] == 0:
        return np.full(len(regions), -1, dtype=np.int64)
    best = iou.argmax(1)  # the first best segment, as segments are numbered class by class
    return np.where(iou.max(1) >= foreground_iou, classes[best], -1)


def region_loss(region_scores, labels):
    """Eq. 2: softmax cross-entropy over the labelled regions (labels -1 are left out)."""
    keep = labels > 0
    if not bool(keep.any()):
        return region_scores.sum() * 0
    return F.cross_entropy(region_scores[keep], labels[keep] - 1)
