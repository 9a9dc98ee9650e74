"""Bring your own data: a folder of images with same-named PNG label maps."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import SegmentationDataset, read_label_png

__all__ = ["ImageFolder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageFolder(SegmentationDataset):
    """Images in one folder, label maps in another, matched by file stem.

    Args:
        images_dir: folder of images (any of :data:`IMAGE_SUFFIXES`, any case).
        labels_dir: folder of single-channel PNGs ``<stem>.png`` with values 0..C
            (0 = void, k = ``classes[k - 1]``), the same size as their image.
        classes: the C class names, in label order.

    Every image must have its label map; the error names the first one that does not.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike,
        labels_dir: str | os.PathLike,
        classes: Sequence[str],
    ):
        self.image_dir = Path(images_dir)
        self.label_dir = Path(labels_dir)
        if isinstance(classes, (str, bytes)):  # "road" would be four classes r, o, a, d
            raise TypeError(f"classes must be a list of names, got the string {classes!r}")
        self.classes = [str(c) for c in classes]
        if not self.classes:
            raise ValueError("classes must name at least one class")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes has duplicate names: {self.classes}")
        for arg, folder in (("images_dir", self.image_dir), ("labels_dir", self.label_dir)):
            if not folder.is_dir():
                raise FileNotFoundError(f"{arg}: {folder} is not a folder")
        self._images = {}
        for p in sorted(self.image_dir.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                if p.stem in self._images:  # a.jpg and a.png: which one goes with a.png's labels?
                    raise ValueError(f"images_dir: {self._images[p.stem].name} and {p.name} share the name "
                                     f"{p.stem!r}; keep one image per label map")  # fmt: skip
                self._images[p.stem] = p
        if not self._images:
            raise FileNotFoundError(
                f"images_dir: {self.image_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        self.names = sorted(self._images)
        for name in self.names:
            if not self.label_path(name).is_file():
                raise FileNotFoundError(
                    f"label file missing for image {self._images[name]}: expected "
                    f"{self.label_path(name)}"
                )

    def image_path(self, name: str) -> Path:
        return self._images[name]

    def label_path(self, name: str) -> Path:
        return self.label_dir / f"{name}.png"

    def _read_label(self, path: Path) -> np.ndarray:
        return read_label_png(path)
