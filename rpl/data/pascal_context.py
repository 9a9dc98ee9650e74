"""PASCAL Context (Mottaghi et al., CVPR 2014) with the 59 most frequent classes.

Reads, under ``$RPL_DATA/pascal-context``, either the official form (what
``python -m rpl fetch pascal-context`` lays out)::

    VOCdevkit/VOC2010/JPEGImages/<id>.jpg
    VOCdevkit/VOC2010/ImageSets/Main/{train,val}.txt      4998 / 5105 ids
    trainval/<id>.mat      LabelMap: indices 1..459 into labels.txt
    labels.txt             "1: accordion" ... "459: wool"

or the common pre-converted form::

    JPEGImages/<id>.jpg
    GroundTruth_trainval_png/<id>.png     values 0..59, 0 = none of the 59 classes
    {train,val}.txt

The 459 full classes are mapped to the 59 by name; everything else becomes 0, which rpl treats
as void (the paper evaluates the 59 classes).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import scipy.io

from .base import SegmentationDataset, data_root, missing_dataset_error, read_label_png

__all__ = ["PascalContext", "PASCAL_CONTEXT_CLASSES", "read_class_list"]

PASCAL_CONTEXT_CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "table",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
    "bag",
    "bed",
    "bench",
    "book",
    "building",
    "cabinet",
    "ceiling",
    "cloth",
    "computer",
    "cup",
    "door",
    "fence",
    "floor",
    "flower",
    "food",
    "grass",
    "ground",
    "keyboard",
    "light",
    "mountain",
    "mouse",
    "curtain",
    "platform",
    "sign",
    "plate",
    "road",
    "rock",
    "shelves",
    "sidewalk",
    "sky",
    "snow",
    "bedclothes",
    "track",
    "tree",
    "truck",
    "wall",
    "water",
    "window",
    "wood",
]

_VOC = Path("VOCdevkit") / "VOC2010"


def read_class_list(path: Path) -> list[str]:
    """Read a PASCAL Context class list (``"1: accordion"`` per line) into names, in order."""
    names = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        index, sep, name = line.partition(":")
        if not sep or not index.strip().isdigit() or int(index) != len(names) + 1:
            raise ValueError(f"{path}:{lineno}: expected '{len(names) + 1}: <name>', got {line!r}")
        names.append(name.strip())
    return names


def _first_existing(*candidates: Path) -> Path | None:
    return next((p for p in candidates if p.exists()), None)


class PascalContext(SegmentationDataset):
    """PASCAL Context, 59 classes (labels 1..59; 0 = background/other, treated as void).

    Args:
        split: ``"train"`` (4998 images) or ``"val"`` (5105 images).
        root: the data root holding ``pascal-context/``; default ``$RPL_DATA``.
        allow_missing: keep only the ids of the split that have an image, with a warning,
            instead of raising (for partial copies such as a small sample).
    """

    key = "pascal-context"
    # The paper's settings on PASCAL Context's larger images (the authors' rpUijlings2013.m).
    proposal_settings = {"k": 400, "min_region_size": 400}

    def __init__(
        self,
        split: str = "train",
        root: str | os.PathLike | None = None,
        allow_missing: bool = False,
    ):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.split = split
        self.root = data_root(root) / "pascal-context"
        self.classes = list(PASCAL_CONTEXT_CLASSES)
        r = self.root
        self.image_dir = _first_existing(r / "JPEGImages", r / _VOC / "JPEGImages")
        self.label_dir = _first_existing(r / "trainval", r / "GroundTruth_trainval_png")
        split_file = _first_existing(r / f"{split}.txt", r / _VOC / "ImageSets/Main" / f"{split}.txt")
        if self.image_dir is None or self.label_dir is None or split_file is None:
            raise missing_dataset_error(
                "PASCAL Context",
                r,
                root,
                f"images (JPEGImages/ or {_VOC}/JPEGImages/), labels (trainval/*.mat or "
                f"GroundTruth_trainval_png/*.png) and a {split}.txt split list",
            )
        self._official = self.label_dir.name == "trainval"
        if self._official:
            labels_txt = r / "labels.txt"
            if not labels_txt.is_file():
                raise FileNotFoundError(f"{labels_txt} missing: the 459-class list is needed to read {self.label_dir}")
            self._lut = self._full_to_59(read_class_list(labels_txt), labels_txt)
        ids = [s.strip() for s in split_file.read_text().split() if s.strip()]
        present = [i for i in ids if (self.image_dir / f"{i}.jpg").is_file()]
        if len(present) < len(ids):
            missing = next(i for i in ids if not (self.image_dir / f"{i}.jpg").is_file())
            msg = (
                f"{len(ids) - len(present)} of the {len(ids)} ids in {split_file} have no image "
                f"(first: {self.image_dir / (missing + '.jpg')})"
            )
            if not allow_missing:
                raise FileNotFoundError(msg + "; pass allow_missing=True to use the rest")
            warnings.warn(msg + f"; using the {len(present)} present", stacklevel=2)
        self.names = present

    @staticmethod
    def _full_to_59(full: list[str], path: Path) -> np.ndarray:
        """Lookup table from the 459 full-class indices (0..459) to 0..59."""
        lut = np.zeros(len(full) + 1, dtype=np.int64)
        for k, name in enumerate(PASCAL_CONTEXT_CLASSES, 1):
            if name not in full:
                raise ValueError(f"{path} lacks the PASCAL Context class {name!r}")
            lut[full.index(name) + 1] = k
        return lut

    def image_path(self, name: str) -> Path:
        return self.image_dir / f"{name}.jpg"

    def label_path(self, name: str) -> Path:
        return self.label_dir / (f"{name}.mat" if self._official else f"{name}.png")

    def _read_label(self, path: Path) -> np.ndarray:
        if not self._official:
            return read_label_png(path)
        try:
            label_map = scipy.io.loadmat(path, variable_names=["LabelMap"]).get("LabelMap")
        except (ValueError, OSError, NotImplementedError, scipy.io.matlab.MatReadError) as e:
            raise ValueError(f"cannot read label file {path}: {str(e) or type(e).__name__}") from e
        if label_map is None:
            raise ValueError(f"label file {path} has no variable 'LabelMap'")
        label_map = np.asarray(label_map, dtype=np.int64)
        if label_map.size and (label_map.min() < 0 or label_map.max() >= len(self._lut)):
            raise ValueError(f"label file {path} holds LabelMap values outside 0..{len(self._lut) - 1}")
        return self._lut[label_map]
