"""SIFT Flow (Liu et al. 2009; Tighe & Lazebnik 2010): 2688 outdoor 256×256 images, 33 classes.

Reads the official ``SiftFlowDataset.zip`` layout under ``$RPL_DATA/siftflow``::

    Images/spatial_envelope_256x256_static_8outdoorcategories/<name>.jpg
    SemanticLabels/spatial_envelope_256x256_static_8outdoorcategories/<name>.mat   (variable S)
    TestSet1.txt    the 200 test images, one per line, Windows separators

Every image not in ``TestSet1.txt`` is a training image: 2488 train / 200 test.
"""

from __future__ import annotations

import os
from pathlib import Path, PureWindowsPath

import numpy as np
import scipy.io

from .base import SegmentationDataset, data_root, missing_dataset_error

__all__ = ["SiftFlow", "SIFTFLOW_CLASSES", "scene_category"]

SIFTFLOW_CLASSES = [
    "awning",
    "balcony",
    "bird",
    "boat",
    "bridge",
    "building",
    "bus",
    "car",
    "cow",
    "crosswalk",
    "desert",
    "door",
    "fence",
    "field",
    "grass",
    "moon",
    "mountain",
    "person",
    "plant",
    "pole",
    "river",
    "road",
    "rock",
    "sand",
    "sea",
    "sidewalk",
    "sign",
    "sky",
    "staircase",
    "streetlight",
    "sun",
    "tree",
    "window",
]

_SUBDIR = "spatial_envelope_256x256_static_8outdoorcategories"
_TEST_LIST = "TestSet1.txt"


def scene_category(name: str) -> str:
    """The scene category of a SIFT Flow image (``"coast_arnat59"`` -> ``"coast"``)."""
    return name.split("_", 1)[0]


class SiftFlow(SegmentationDataset):
    """The SIFT Flow semantic labelling data set.

    Args:
        split: ``"train"`` (2488 images) or ``"test"`` (200 images, ``TestSet1.txt``).
        root: the data root holding ``siftflow/``; default ``$RPL_DATA``.

    Items are :class:`rpl.data.Sample` with a 256×256×3 uint8 image and a 256×256 int64 label
    (0 = unlabelled, 1..33 = :data:`SIFTFLOW_CLASSES`).
    """

    key = "siftflow"
    # The paper's settings, as in the authors' rpUijlings2013.m: Felzenszwalb k = min segment
    # size = 100, regions of at least 100 px.
    proposal_settings = {"k": 100, "min_region_size": 100}

    def __init__(self, split: str = "train", root: str | os.PathLike | None = None):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.split = split
        self.root = data_root(root) / "siftflow"
        self.classes = list(SIFTFLOW_CLASSES)
        self.image_dir = self.root / "Images" / _SUBDIR
        self.label_dir = self.root / "SemanticLabels" / _SUBDIR
        test_list = self.root / _TEST_LIST
        if not (self.image_dir.is_dir() and test_list.is_file()):
            raise missing_dataset_error("SIFT Flow", self.root, root, f"Images/{_SUBDIR}/ and {_TEST_LIST}")
        all_names = sorted(p.stem for p in self.image_dir.glob("*.jpg"))
        test_names = self._read_test_list(test_list, set(all_names))
        if split == "test":
            self.names = sorted(test_names)
        else:
            self.names = [n for n in all_names if n not in test_names]

    def _read_test_list(self, path: Path, available: set[str]) -> set[str]:
        names = set()
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            name = PureWindowsPath(line).stem  # backslashes in the official list
            if name not in available:
                raise FileNotFoundError(
                    f"{path}:{lineno} lists {line!r}, but {self.image_dir / (name + '.jpg')} does not exist"
                )
            names.add(name)
        return names

    def problems(self) -> list[str]:
        """As :meth:`SegmentationDataset.problems`, plus label files without their image (an
        image missing from the training split would otherwise shrink it silently)."""
        found = super().problems()
        if self.split == "train":
            images = {p.stem for p in self.image_dir.glob("*.jpg")}
            found += [
                f"image file missing for label file {p}: expected {self.image_path(p.stem)}"
                for p in sorted(self.label_dir.glob("*.mat"))
                if p.stem not in images
            ]
        return found

    def image_path(self, name: str) -> Path:
        return self.image_dir / f"{name}.jpg"

    def label_path(self, name: str) -> Path:
        return self.label_dir / f"{name}.mat"

    def _read_label(self, path: Path) -> np.ndarray:
        try:
            mat = scipy.io.loadmat(path, variable_names=["S"])
        except (ValueError, OSError, NotImplementedError, scipy.io.matlab.MatReadError) as e:
            raise ValueError(f"cannot read label file {path}: {str(e) or type(e).__name__}") from e
        if "S" not in mat:
            raise ValueError(f"label file {path} has no variable 'S' (the SIFT Flow label map)")
        return mat["S"]
