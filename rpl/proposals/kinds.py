"""Region kinds: what a run's regions are made of. Selective Search's free-form proposals, the
superpixels they are grouped from (Sec. 4.3's non-overlapping regions), or their bounding boxes
(Table 4's purely rectangular row). The last two are derived from the first, image by image."""

from __future__ import annotations

from .regions import RegionSet

__all__ = ["REGION_KINDS", "as_kind"]

REGION_KINDS = ("selective-search", "superpixels", "rectangles")

# The ``params["kind"]`` a RegionSet of each derived kind carries (from_superpixels, from_boxes).
_TAGS = {"superpixels": "superpixels", "rectangles": "boxes"}


def as_kind(regions: RegionSet, kind: str) -> RegionSet:
    """``regions`` (proposals of one image) as regions of ``kind``: unchanged for
    "selective-search" or when they already are of that kind; else each superpixel
    (``RegionSet.from_superpixels``) or each proposal's bounding box (``RegionSet.from_boxes``)."""
    if kind not in REGION_KINDS:
        raise ValueError(f"region kind must be one of {REGION_KINDS}, got {kind!r}")
    if kind == "selective-search" or regions.params.get("kind") == _TAGS[kind]:
        return regions
    if kind == "superpixels":
        return RegionSet.from_superpixels(regions.superpixels)
    return RegionSet.from_boxes(regions.boxes, regions.shape)
