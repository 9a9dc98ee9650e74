"""What every rpl dataset shares: where data lives, one sample type, image and label reading.

Label convention everywhere in rpl: a label map is an integer array with 0 = void/unlabelled
and 1..C = the classes (SIFT Flow's own encoding). Predictions use 1..C.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "Sample",
    "SegmentationDataset",
    "data_root",
    "read_image",
    "read_label_png",
    "check_label",
]

DATA_ENV = "RPL_DATA"
DEFAULT_DATA = Path("~/.cache/rpl/data")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder that holds the data sets (``siftflow/``, ``pascal-context/``, ...).

    ``root`` if given, else ``$RPL_DATA``, else ``~/.cache/rpl/data``.
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else DEFAULT_DATA.expanduser()


def describe_root(root: str | os.PathLike | None) -> str:
    """How :func:`data_root` chose its answer, for error messages."""
    if root is not None:
        return f"the root argument ({root})"
    env = os.environ.get(DATA_ENV)
    if env:
        return f"${DATA_ENV}={env}"
    return f"the default {DEFAULT_DATA} (${DATA_ENV} is not set)"


def missing_dataset_error(name: str, folder: Path, root, expected: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{name} not found: {folder} does not hold {expected} (data root from "
        f"{describe_root(root)}). Set {DATA_ENV} to the folder that contains "
        f"'{folder.name}/', pass root=..., or run `python -m rpl fetch {folder.name}`."
    )


@dataclass(frozen=True)
class Sample:
    """One image with its ground truth.

    Attributes:
        image (ndarray[H, W, 3] uint8): RGB.
        label (ndarray[H, W] int64): 0 = void, 1..C = classes.
        name (str): the image's identifier within its data set.
    """

    image: np.ndarray
    label: np.ndarray
    name: str


def read_image(path: Path) -> np.ndarray:
    """An image file as an H×W×3 uint8 RGB array (greyscale and palette images expanded;
    16-bit greyscale scaled to 8 bits, not clipped; float images refused)."""
    try:
        with Image.open(path) as im:
            if im.mode.startswith("I") or im.mode == "F":
                return _wide_grey(np.asarray(im), im.mode, path)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file missing: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from e


def _wide_grey(values: np.ndarray, mode: str, path) -> np.ndarray:
    """A greyscale image of more than 8 bits as RGB uint8: 16-bit values divided by 257
    (65535 -> 255); a 32-bit integer image whose values fit in 8 bits kept as it is."""
    if mode == "F":
        raise ValueError(f"cannot read image {path}: a floating-point image; save it with 8 or 16 bits per channel")
    values = values.astype(np.int64)
    high = int(values.max()) if values.size else 0
    if values.size and (values.min() < 0 or high > 65535):
        raise ValueError(f"cannot read image {path}: {mode} values {values.min()}..{high} are not 8- or 16-bit")
    sixteen = mode.startswith("I;16") or high > 255
    grey = np.round(values / 257).astype(np.uint8) if sixteen else values.astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def read_label_png(path: Path) -> np.ndarray:
    """A single-channel PNG (L, P, I or I;16) of class indices, as stored (no palette decoding)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"label map {path} is a {im.mode} image; expected one channel of class indices")
            return np.asarray(im).copy()
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read label map {path}: {e}") from e


def check_label(label: np.ndarray, num_classes: int, path: Path, shape=None) -> np.ndarray:
    """Validate a raw label map read from ``path``; return it as int64.

    Raises ValueError naming ``path`` when values are not integers in 0..num_classes or the
    map's shape differs from the image's.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label map {path} has shape {label.shape}; expected a 2-D map of class indices")
    if shape is not None and label.shape != tuple(shape):
        raise ValueError(f"label map {path} is {label.shape}, but its image is {tuple(shape)}")
    if label.dtype.kind == "f":
        if not np.all(np.isfinite(label)) or np.any(label != np.round(label)):
            raise ValueError(f"label map {path} holds non-integer values")
    elif label.dtype.kind not in "iub":
        raise ValueError(f"label map {path} has dtype {label.dtype}; expected integers")
    out = label.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() > num_classes):
        bad = np.unique(out[(out < 0) | (out > num_classes)])[:10]
        raise ValueError(
            f"label map {path} holds values {bad.tolist()} outside 0..{num_classes} "
            f"(0 = void, 1..{num_classes} = classes)"
        )
    return out


class SegmentationDataset(Sequence):
    """A map-style data set of :class:`Sample` (usable directly with a PyTorch DataLoader).

    Subclasses fill ``self.names``, ``self.classes`` and implement ``image_path``,
    ``label_path`` and ``_read_label``; they may set ``key`` (how caches name the data set's
    images) and ``proposal_settings`` (its Selective Search parameters, as
    :class:`rpl.proposals.ProposalConfig` fields).
    """

    classes: list[str]
    names: list[str]
    split: str = "all"
    proposal_settings: dict = {}

    @property
    def key(self) -> str:
        return type(self).__name__.lower()

    @property
    def num_classes(self) -> int:
        """C: the classes are labelled 1..C, 0 is void."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"{type(self).__name__} indices must be integers, not {index!r}")
        n = len(self.names)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of {n}")
        name = self.names[index]
        image = read_image(self.image_path(name))
        return Sample(image=image, label=self.read_label(name, image.shape[:2]), name=name)

    def read_label(self, name: str, shape=None) -> np.ndarray:
        """The ground truth of ``name`` alone (H×W int64), without decoding its image."""
        path = self.label_path(name)
        if not path.is_file():
            raise FileNotFoundError(f"label file missing for image {self.image_path(name)}: expected {path}")
        return check_label(self._read_label(path), self.num_classes, path, shape)

    def problems(self) -> list[str]:
        """What is wrong with this data set's files, one line each (empty when nothing is):
        every image present and decoded, every label file read and checked (present, readable,
        one channel of classes in range) and of its image's size."""
        found = []
        for name in self.names:
            image_path = self.image_path(name)
            if not image_path.is_file():
                found.append(f"image file missing: {image_path}")
                continue
            try:
                size = read_image(image_path).shape[:2]
            except (FileNotFoundError, ValueError) as e:
                found.append(str(e))
                size = None
            try:
                label = self.read_label(name)
            except (FileNotFoundError, ValueError) as e:
                found.append(str(e))
                continue
            if size is not None and label.shape != size:
                found.append(
                    f"label map {self.label_path(name)} is {label.shape[1]}x{label.shape[0]} pixels, but its "
                    f"image {image_path} is {size[1]}x{size[0]} (width x height): expected the image's size"
                )
        return found

    def image_path(self, name: str) -> Path:
        raise NotImplementedError

    def label_path(self, name: str) -> Path:
        raise NotImplementedError

    def _read_label(self, path: Path) -> np.ndarray:
        raise NotImplementedError

    def class_pixel_counts(self) -> np.ndarray:
        """Pixels per class over the whole set: int64[C + 1], index 0 = void."""
        counts = np.zeros(self.num_classes + 1, dtype=np.int64)
        for name in self.names:
            counts += np.bincount(self.read_label(name).ravel(), minlength=self.num_classes + 1)
        return counts

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {self.num_classes} classes)"
