"""Every data set rpl can open by name — SIFT Flow, PASCAL Context, or any data set folder —
behind one lookup: its class, its training and test splits, its class names.

    open_dataset("siftflow", "test")             # SiftFlow("test")
    open_dataset("pascal-context", "test")       # PascalContext("val"): its test split
    open_dataset("path/to/DIR", "train")         # ImageFolder.from_dir("path/to/DIR", "train")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .folder import ImageFolder, is_dataset_folder
from .pascal_context import PASCAL_CONTEXT_CLASSES, PascalContext
from .siftflow import SIFTFLOW_CLASSES, SiftFlow

__all__ = ["DATASETS", "DatasetCard", "open_dataset", "dataset_card", "check_dataset", "dataset_key"]


@dataclass(frozen=True)
class DatasetCard:
    """What rpl knows of a registered data set: its class, the names of its training and test
    splits, its class names (labels 1..C)."""

    cls: type
    train_split: str
    test_split: str
    classes: tuple[str, ...]


DATASETS = {
    "siftflow": DatasetCard(SiftFlow, "train", "test", tuple(SIFTFLOW_CLASSES)),
    "pascal-context": DatasetCard(PascalContext, "train", "val", tuple(PASCAL_CONTEXT_CLASSES)),
}


def check_dataset(dataset: str) -> str:
    """``dataset`` as rpl stores it — a registered name as it is, a data set folder as its
    absolute path (an absolute path is kept even when it holds no data set now: a trained run
    names its data set so, and needs it only to train or evaluate, when opening it says what is
    missing); ValueError naming both forms otherwise."""
    if dataset in DATASETS or Path(dataset).is_absolute() and not is_dataset_folder(dataset):
        return dataset
    if is_dataset_folder(dataset):
        return str(Path(dataset).expanduser().resolve())
    raise ValueError(
        f"dataset must be one of {tuple(DATASETS)} or a data set folder (holding classes.txt, images/ "
        f"and labels/), got {dataset!r}"
    )


def dataset_card(dataset: str) -> DatasetCard:
    """The card of a registered name, or of a data set folder (splits ``train`` / ``test``, the
    classes of its ``classes.txt``)."""
    dataset = check_dataset(dataset)
    if dataset in DATASETS:
        return DATASETS[dataset]
    classes = ImageFolder.from_dir(dataset).classes
    return DatasetCard(ImageFolder, "train", "test", tuple(classes))


def dataset_key(dataset: str) -> str:
    """The :attr:`~rpl.data.SegmentationDataset.key` of a registered name or data set folder,
    without opening it (its data need not be there)."""
    dataset = check_dataset(dataset)
    if dataset in DATASETS:
        cls = DATASETS[dataset].cls
        return cls.key if isinstance(cls.key, str) else cls.__name__.lower()  # a class's own, or the default
    return ImageFolder.key_of(Path(dataset) / "images")


def open_dataset(dataset: str, split: str = "train", root: str | os.PathLike | None = None):
    """The ``split`` (``"train"`` or ``"test"``; PASCAL Context's test split is its val) of a
    registered data set under data root ``root``, or of a data set folder."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    dataset = check_dataset(dataset)
    if dataset not in DATASETS:
        return ImageFolder.from_dir(dataset, split)
    card = DATASETS[dataset]
    return card.cls(card.train_split if split == "train" else card.test_split, root)
