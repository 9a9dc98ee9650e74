"""Region proposals: Selective Search with free-form masks, and the RegionSet they come in."""

from .cache import ProposalCache, ProposalConfig, cache_root
from .felzenszwalb import felzenszwalb
from .kinds import REGION_KINDS, as_kind
from .regions import RegionSet, ground_truth_segments
from .selective_search import COLOR_SPACES, SIMILARITIES, Hierarchy, selective_search

__all__ = [
    "RegionSet",
    "ground_truth_segments",
    "selective_search",
    "Hierarchy",
    "felzenszwalb",
    "COLOR_SPACES",
    "SIMILARITIES",
    "ProposalCache",
    "ProposalConfig",
    "cache_root",
    "REGION_KINDS",
    "as_kind",
]
