"""rpl: region-based semantic segmentation with end-to-end training (Caesar et al., ECCV 2016)."""

from . import data, metrics, proposals
from .config import quick_mode

__version__ = "0.1.0"
__all__ = ["data", "metrics", "proposals", "quick_mode", "__version__"]
