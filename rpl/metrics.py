"""The paper's evaluation measures, accumulated in one confusion matrix over a whole test set.

Label convention: 0 = void (never counted), 1..C = classes. As in the authors' evaluation
(``confMatToAccuracies`` in matconvnet-calvin, and FCN's), class-average accuracy and mean IoU
average over the classes present in the test ground truth only: SIFT Flow's test set has no
cow, desert or moon pixels, so its class average runs over 30 classes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["ConfusionMatrix", "boundary_mask"]


class ConfusionMatrix:
    """A C×C confusion matrix over labelled pixels: ``matrix[t - 1, p - 1]`` counts pixels of
    ground-truth class t predicted as class p.

    Args:
        num_classes: C.

    Example::

        cm = ConfusionMatrix(33)
        for pred, label in results:                      # label maps, 0 = void
            cm.update(pred, label)                         # all pixels
            cm_b.update(pred, label, mask=boundary_mask(label))   # Table 3
        cm.global_accuracy(), cm.class_accuracy(), cm.mean_iou()
    """

    def __init__(self, num_classes: int):
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred, target, mask=None) -> "ConfusionMatrix":
        """Add one image (or any batch of pixels).

        Args:
            pred (array[...] int): predicted classes 1..C (any value where target is void).
            target (array[...] int): ground truth, 0 = void (ignored), 1..C.
            mask (array[...] bool, optional): count only these pixels (e.g. a boundary band).

        Arrays may be NumPy arrays or CPU tensors of the same shape.
        """
        pred = np.asarray(pred)
        target = np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"pred has shape {pred.shape} but target has shape {target.shape}")
        for arg, a in (("pred", pred), ("target", target)):
            if a.dtype.kind not in "iu":
                raise ValueError(f"{arg} must hold integer class labels, got dtype {a.dtype}")
        keep = target != 0
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != target.shape:
                raise ValueError(f"mask has shape {mask.shape} but target has {target.shape}")
            keep &= mask
        t = target[keep].astype(np.int64)
        p = pred[keep].astype(np.int64)
        c = self.num_classes
        if t.size and (t.min() < 1 or t.max() > c):
            raise ValueError(f"target holds values outside 0..{c}: {np.unique(t[(t < 1) | (t > c)])}")
        if p.size and (p.min() < 1 or p.max() > c):
            bad = np.unique(p[(p < 1) | (p > c)])
            raise ValueError(f"pred holds values outside 1..{c} on labelled pixels: {bad}")
        self.matrix += np.bincount((t - 1) * c + (p - 1), minlength=c * c).reshape(c, c)
        return self

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot add {other.num_classes} classes to {self.num_classes}")
        self.matrix += other.matrix
        return self

    @property
    def total(self) -> int:
        """Labelled pixels counted so far."""
        return int(self.matrix.sum())

    @property
    def present(self) -> np.ndarray:
        """bool[C]: classes with at least one ground-truth pixel."""
        return self.matrix.sum(axis=1) > 0

    def global_accuracy(self) -> float:
        """Correct pixels / labelled pixels (NaN when nothing was counted)."""
        total = self.total
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def per_class_accuracy(self) -> np.ndarray:
        """float[C]: recall of each class (index k is class k + 1); NaN for absent classes."""
        positives = self.matrix.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(positives > 0, np.diag(self.matrix) / positives, np.nan)

    def per_class_iou(self) -> np.ndarray:
        """float[C]: TP / (TP + FP + FN) of each class; NaN for classes absent from the truth."""
        tp = np.diag(self.matrix)
        union = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.present, tp / union, np.nan)

    def class_accuracy(self) -> float:
        """Mean per-class accuracy over the classes present in the ground truth."""
        return _mean_present(self.per_class_accuracy())

    def mean_iou(self) -> float:
        """Mean IoU over the classes present in the ground truth."""
        return _mean_present(self.per_class_iou())

    def summary(self, classes=None) -> dict:
        """All measures as a JSON-ready dict (per-class values keyed by class name)."""
        names = list(classes) if classes is not None else [str(k) for k in range(1, self.num_classes + 1)]
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for {self.num_classes} classes")
        return {
            "global_accuracy": self.global_accuracy(),
            "class_accuracy": self.class_accuracy(),
            "mean_iou": self.mean_iou(),
            "pixels": self.total,
            "classes_present": int(self.present.sum()),
            "per_class_accuracy": {
                n: (None if np.isnan(a) else float(a)) for n, a in zip(names, self.per_class_accuracy())
            },
        }

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix({self.num_classes} classes, {self.total} pixels: "
            f"global {self.global_accuracy():.4f}, class {self.class_accuracy():.4f}, "
            f"mIoU {self.mean_iou():.4f})"
        )


def _mean_present(values: np.ndarray) -> float:
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else float("nan")


def boundary_mask(label, width: int = 4) -> np.ndarray:
    """Pixels within ``width`` px of a ground-truth label boundary (Table 3's evaluation band).

    A boundary runs between two 4-adjacent pixels with different labels; borders between a
    class and void count (SIFT Flow's unlabelled pixels often form thin gaps between objects),
    void–void pixel pairs never differ and never count. A pixel is in the band when its
    Euclidean distance to the boundary line is at most ``width``, i.e. the band is ``width``
    pixels deep on each side of a straight boundary. Void pixels inside the band are ignored by
    :class:`ConfusionMatrix` anyway.

    Args:
        label (array[H, W] int): ground truth, 0 = void.
        width: band half-width in pixels (the paper: 4).

    Returns:
        array[H, W] bool.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label must be a 2-D label map, got shape {label.shape}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    edge = np.zeros(label.shape, dtype=bool)
    dy = label[1:, :] != label[:-1, :]
    dx = label[:, 1:] != label[:, :-1]
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    if not edge.any():
        return edge
    # Pixels next to a boundary are 0.5 px from it: distance to the nearest such pixel + 0.5.
    return ndimage.distance_transform_edt(~edge) + 0.5 <= width
