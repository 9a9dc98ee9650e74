"""Bring your own data: a folder of images with same-named PNG label maps.

A data set folder, as ``--dataset DIR`` and :meth:`ImageFolder.from_dir` read it::

    DIR/classes.txt        one class name per line: label value k is line k (0 = void)
    DIR/images/NAME.jpg    (or .png, .jpeg, .bmp, .tif, .webp) any size, any aspect ratio
    DIR/labels/NAME.png    single channel, the image's size, values 0..C
    DIR/train.txt          optional: the training images' names, one per line
    DIR/test.txt           optional: the test images' names (none of them in train.txt)
    DIR/proposals.json     optional: Selective Search settings, e.g. {"k": 400, "min_region_size": 400}
    DIR/dataset.json       optional: the label value that marks unlabelled pixels, read as void (0),
                           e.g. {"void": 255} as in PASCAL VOC (0..255, not one of the classes 1..C)

Without the split files, every image whose name's SHA-1 digest is 0 modulo 5 is a test image
(a fifth of them, the same on every machine and whatever images are added later). An image
named in both lists is refused when the folder is opened (it would be tested on after being
trained on). ``python -m rpl check DIR`` decodes every image and reads every label map.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import SegmentationDataset, check_label, read_label_png

__all__ = ["ImageFolder", "IMAGE_SUFFIXES", "is_dataset_folder"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test", "all")
PROPOSAL_SETTINGS = ("k", "sigma", "min_size", "min_region_size")
DATASET_SETTINGS = ("void",)


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
        void: a label value, 0..255 and not 1..C, read as void (0): 255 where the label maps
            mark unlabelled pixels so (PASCAL VOC); ``dataset.json``'s ``"void"`` in a folder.

    Every image must have its label map; the error names the first one that does not.
    ``split`` is ``"all"``; :meth:`from_dir` reads a data set folder's splits.
    """

    split = "all"
    proposal_settings: dict = {}
    root: Path | None = None

    def __init__(
        self,
        images_dir: str | os.PathLike,
        labels_dir: str | os.PathLike,
        classes: Sequence[str],
        void: int | None = None,
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
        if void is not None and (problem := _void_problem(void, self.classes)):
            raise ValueError(f"void: {problem}")
        self.void = None if void is None else int(void)
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
        lists = {s: root / f"{s}.txt" for s in ("train", "test")}
        if all(p.is_file() for p in lists.values()):
            both = sorted(set(_names(lists["train"])) & set(_names(lists["test"])))
            if both:
                raise ValueError(
                    f"{lists['train']} and {lists['test']} both name {len(both)} images, e.g. "
                    f"{', '.join(map(repr, both[:5]))}: a test image must not be trained on; keep each name in one list"
                )
        void = _dataset_settings(root / "dataset.json", classes).get("void")
        ds = cls(root / "images", root / "labels", classes, void=void)
        ds.root, ds.split = root, split
        ds.proposal_settings = _proposal_settings(root / "proposals.json")
        if split != "all":
            if lists[split].is_file():
                wanted = _names(lists[split])
                unknown = sorted(set(wanted) - set(ds.names))
                if unknown:
                    raise FileNotFoundError(
                        f"{lists[split]} names {len(unknown)} images not in {root / 'images'}, e.g. {unknown[0]!r}"
                    )
                ds.names = sorted(set(wanted))
            elif lists["train" if split == "test" else "test"].is_file():
                other = set(_names(lists["train" if split == "test" else "test"]))
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
        label = read_label_png(path)
        if self.void is not None:
            return np.where(label == self.void, 0, label)
        if label.size and label.max() > self.num_classes:  # 255 where PASCAL VOC leaves pixels unlabelled
            try:
                check_label(label, self.num_classes, path)
            except ValueError as e:
                raise ValueError(f"{e}{self._void_hint(label)}") from None
        return label

    def _void_hint(self, label: np.ndarray) -> str:
        """How to declare the value above C that may mark unlabelled pixels ('' when none may)."""
        high = np.unique(label[label > self.num_classes]).tolist()
        if 255 in high:
            value, example = 255, " (PASCAL VOC, Cityscapes train ids)"
        elif len(high) == 1 and high[0] <= 255:
            value, example = high[0], ""
        else:
            return ""
        where = (
            f'declare it: {{"void": {value}}} in {self.root / "dataset.json"}'
            if self.root is not None
            else f"pass void={value}"
        )
        return f"; if {value} marks unlabelled pixels{example}, {where}"


def _names(path: Path) -> list[str]:
    """The image names of a split list, one a line."""
    return [n.strip() for n in path.read_text().splitlines() if n.strip()]


def _void_problem(void, classes: Sequence[str]) -> str:
    """What is wrong with ``void`` as the void label value of ``classes`` ('' when nothing)."""
    if isinstance(void, bool) or not isinstance(void, (int, np.integer)) or not 0 <= void <= 255:
        return f"expected an integer label value in 0..255, got {void!r}"
    if 1 <= void <= len(classes):
        return (
            f"{void} is the label value of class {void}, {classes[void - 1]!r}; void must be 0 or above {len(classes)}"
        )
    return ""


def _settings_file(path: Path, allowed: Sequence[str]) -> dict:
    """An optional JSON object of settings (``{}`` when the file is absent), its keys among ``allowed``."""
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(settings, dict) or set(settings) - set(allowed):
        raise ValueError(f"{path}: expected an object with keys among {allowed}, got {settings!r}")
    return settings


def _dataset_settings(path: Path, classes: Sequence[str]) -> dict:
    settings = _settings_file(path, DATASET_SETTINGS)
    if "void" in settings and (problem := _void_problem(settings["void"], classes)):
        raise ValueError(f"{path}: void: {problem}")
    return settings


def _proposal_settings(path: Path) -> dict:
    settings = _settings_file(path, PROPOSAL_SETTINGS)
    for key, value in settings.items():
        if key == "min_size" and value is None:  # as k
            continue
        integer = key in ("min_size", "min_region_size")
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or value < 0:
            raise ValueError(
                f"{path}: {key} must be a non-negative {'integer' if integer else 'number'}, got {value!r}"
            )
    return settings
