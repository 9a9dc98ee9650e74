"""Data sets (SIFT Flow, PASCAL Context, your own folders) and their download.

Label maps everywhere in rpl: 0 = void/unlabelled, 1..C = the classes.
"""

from .base import Sample, SegmentationDataset, data_root
from .download import SOURCES, DownloadError, fetch
from .folder import ImageFolder
from .pascal_context import PASCAL_CONTEXT_CLASSES, PascalContext
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
    "fetch",
    "SOURCES",
    "DownloadError",
]
