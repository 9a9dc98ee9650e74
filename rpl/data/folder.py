"""Bring your own data: a folder of images with same-named PNG label maps.

A data set folder, as ``--dataset DIR`` and :meth:`ImageFolder.from_dir` read it::

    DIR/classes.txt        one class name per line: label value k is line k (0 = void)
    DIR/images/NAME.jpg    (or .png, .jpeg, .bmp, .tif, .webp) any size, any aspect ratio
    DIR/labels/NAME.png    single channel, the image's size, values 0..C
    DIR/train.txt          optional: the training images' names, one per line
    DIR/test.txt           optional: the test images' names
    DIR/proposals.json     optional: Selective Search settings, e.g. {"k": 400, "min_region_size": 400}

Without the split files, every image whose name's SHA-1 digest is 0 modulo 5 is a test image
(a fifth of them, the same on every machine and whatever images are added later).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import SegmentationDataset, read_label_png

__all__ = ["ImageFolder", "IMAGE_SUFFIXES", "is_dataset_folder"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test", "all")
PROPOSAL_SETTINGS = ("k", "sigma", "min_size", "min_region_size")


def is_dataset_folder(path) -> bool:
    """Whether ``path`` is a data set folder (it holds ``classes.txt``)."""
    return Path(path).expanduser().joinpath("classes.txt").is_file()


def _default_test(name: str) -> bool:
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % 5 == 0


class ImageFolder(SegmentationDataset):
    """Images in one folder, label maps in another, matched by file stem.

    Args:
        images_dir: folder of images (any of :data:`IMAGE_SUFFIXES`, any case).
        labels_dir: folder of single-channel PNGs ``<stem>.png`` with values 0..C
            (0 = void, k = ``classes[k - 1]``), the same size as their image.
        classes: the C class names, in label order.

    Every image must have its label map; the error names the first one that does not.
    ``split`` is ``"all"``; :meth:`from_dir` reads a data set folder's splits.
    """

    split = "all"
    proposal_settings: dict = {}

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
                    raise ValueError(
                        f"images_dir: {self._images[p.stem].name} and {p.name} share the name "
                        f"{p.stem!r}; keep one image per label map"
                    )
                self._images[p.stem] = p
        if not self._images:
            raise FileNotFoundError(f"images_dir: {self.image_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.names = sorted(self._images)
        for name in self.names:
            if not self.label_path(name).is_file():
                raise FileNotFoundError(
                    f"label file missing for image {self._images[name]}: expected {self.label_path(name)}"
                )

    @classmethod
    def from_dir(cls, folder: str | os.PathLike, split: str = "all") -> "ImageFolder":
        """The data set folder ``folder`` (layout in this module's docstring); ``split`` is
        ``"train"``, ``"test"`` or ``"all"``."""
        root = Path(folder).expanduser()
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        classes_txt = root / "classes.txt"
        if not classes_txt.is_file():
            raise FileNotFoundError(
                f"{root} is not a data set folder: expected {classes_txt} (one class name per "
                "line), images/ and labels/"
            )
        classes = [line.strip() for line in classes_txt.read_text().splitlines() if line.strip()]
        ds = cls(root / "images", root / "labels", classes)
        ds.root, ds.split = root, split
        ds.proposal_settings = _proposal_settings(root / "proposals.json")
        if split != "all":
            lists = {s: root / f"{s}.txt" for s in ("train", "test")}
            if lists[split].is_file():
                wanted = [n.strip() for n in lists[split].read_text().splitlines() if n.strip()]
                unknown = sorted(set(wanted) - set(ds.names))
                if unknown:
                    raise FileNotFoundError(
                        f"{lists[split]} names {len(unknown)} images not in {root / 'images'}, e.g. {unknown[0]!r}"
                    )
                ds.names = sorted(set(wanted))
            elif lists["train" if split == "test" else "test"].is_file():
                other = {n.strip() for n in lists["train" if split == "test" else "test"].read_text().splitlines()}
                ds.names = [n for n in ds.names if n not in other]
            else:
                ds.names = [n for n in ds.names if _default_test(n) == (split == "test")]
            if not ds.names:
                raise ValueError(f"{root}: the {split} split holds no images")
        return ds

    @property
    def key(self) -> str:
        """Names this data set's images in caches: the resolved images folder, hashed (two
        folders that both hold an ``0001.jpg`` never share proposals)."""
        return self.key_of(self.image_dir)

    @staticmethod
    def key_of(image_dir: str | os.PathLike) -> str:
        """The :attr:`key` of the images in ``image_dir``, without reading them."""
        image_dir = Path(image_dir).resolve()
        digest = hashlib.sha1(str(image_dir).encode()).hexdigest()[:12]
        return f"folder-{image_dir.parent.name}-{digest}"

    def image_path(self, name: str) -> Path:
        return self._images[name]

    def label_path(self, name: str) -> Path:
        return self.label_dir / f"{name}.png"

    def _read_label(self, path: Path) -> np.ndarray:
        return read_label_png(path)


def _proposal_settings(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(settings, dict) or set(settings) - set(PROPOSAL_SETTINGS):
        raise ValueError(f"{path}: expected an object with keys among {PROPOSAL_SETTINGS}, got {settings!r}")
    for key, value in settings.items():
        if key == "min_size" and value is None:  # as k
            continue
        integer = key in ("min_size", "min_region_size")
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or value < 0:
            raise ValueError(
                f"{path}: {key} must be a non-negative {'integer' if integer else 'number'}, got {value!r}"
            )
    return settings
