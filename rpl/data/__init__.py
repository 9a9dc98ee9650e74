"""Data sets (SIFT Flow, PASCAL Context, your own folders) and their download.

Label maps everywhere in rpl: 0 = void/unlabelled, 1..C = the classes.
"""

from .base import Sample, SegmentationDataset, data_root
from .download import SOURCES, DownloadError, fetch
from .folder import ImageFolder, is_dataset_folder
from .pascal_context import PASCAL_CONTEXT_CLASSES, PascalContext
from .registry import DATASETS, check_dataset, dataset_card, dataset_key, open_dataset
from .siftflow import SIFTFLOW_CLASSES, SiftFlow, scene_category

__all__ = [
    "Sample",
    "SegmentationDataset",
    "data_root",
    "SiftFlow",
    "SIFTFLOW_CLASSES",
    "scene_category",
    "PascalContext",
    "PASCAL_CONTEXT_CLASSES",
    "ImageFolder",
    "is_dataset_folder",
    "DATASETS",
    "open_dataset",
    "dataset_card",
    "check_dataset",
    "dataset_key",
    "fetch",
    "SOURCES",
    "DownloadError",
]
