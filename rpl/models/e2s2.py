"""The end-to-end region-based model (Fig. 2c, Fig. 3) and the region classification baseline
(Fig. 2b) share this network; they differ in pooling, loss and how pixels get labels.

image -> backbone (stride 16, or 8) -> [1x1 neck] -> ROI pooling per region (free-form and/or box, 7x7)
      -> fc6, fc7 (ReLU, dropout 0.5) -> classifier: region scores S[R, C]
      -> region-to-pixel (Eq. 3; or Eq. 1: softmax first) -> atom scores [A, C]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..ops import free_form_roi_pool, region_to_pixel
from .backbones import Backbone

__all__ = ["E2S2", "ModelConfig", "RegionBatch", "RegionScores"]

POOLINGS = ("free-form", "box", "both")
COMBINES = ("tied", "separate")
ORDERS = ("max-softmax", "softmax-max")
MASKS = ("cells", "bins")
ALIGNMENTS = ("centred", "legacy")
POOLED = (7, 7)  # bins per region, as Fast R-CNN and the paper


@dataclass(frozen=True)
class ModelConfig:
    """Architecture options (Table 4, Sec. 4.3).

    pooling: ``free-form`` (Eq. 6-8), ``box`` (Fast R-CNN) or ``both`` (region + context).
    combine: with both: ``tied`` (shared fc layers, scores added) or ``separate`` (pooled
        features concatenated, then the fc layers).
    order: ``max-softmax`` (Eq. 3: region-to-pixel on logits) or ``softmax-max`` (Eq. 1).
    neck: channels of a 1x1 convolution before pooling (0: none) — keeps the fc6 input small
        for the cpu preset; the paper has none.
    head: width of fc6 and fc7 (VGG-16: 4096).
    mask: how free-form pooling leaves out what is not the region: ``cells`` (Eq. 6-7 read
        literally: each bin's max over its feature cells inside the region) or ``bins`` (the
        authors' code: box pooling, then the bins outside the region's box-relative 7x7 mask
        set to 0, :meth:`rpl.proposals.RegionSet.bin_masks`).
    alignment: ``centred`` (pixels, boxes and masks on the cells the backbone centres on them,
        ``Backbone.offset``) or ``legacy`` (rpl before issue 12: masks at floor(x / 16), boxes at
        round(x / 16), half a cell apart; kept to reproduce the results measured with it).
    """

    pooling: str = "free-form"
    combine: str = "tied"
    order: str = "max-softmax"
    neck: int = 0
    head: int = 4096
    dropout: float = 0.5
    mask: str = "cells"
    alignment: str = "centred"

    def __post_init__(self):
        for name, value, allowed in (
            ("pooling", self.pooling, POOLINGS),
            ("combine", self.combine, COMBINES),
            ("order", self.order, ORDERS),
            ("mask", self.mask, MASKS),
            ("alignment", self.alignment, ALIGNMENTS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


@dataclass
class RegionBatch:
    """One image's regions as the model needs them (see :meth:`RegionBatch.from_regions`).

    boxes (Tensor[R, 5]: batch index and the box in the pooling layer's frame,
    :meth:`~rpl.proposals.RegionSet.pooling_boxes`), masks (Tensor[R, h, w] bool: feature cells
    inside each region), membership (sparse CSR [A, R]), cells (Tensor[H, W] long: the atom of
    each pixel), atom_pixels (Tensor[A]), atom_labels (Tensor[A] long or None),
    is_ground_truth (Tensor[R] bool), bin_masks (Tensor[R, 7, 7] bool or None: the
    box-relative masks of ``mask="bins"``).
    """

    boxes: torch.Tensor
    masks: torch.Tensor
    membership: torch.Tensor
    cells: torch.Tensor
    atom_pixels: torch.Tensor
    atom_labels: torch.Tensor | None
    is_ground_truth: torch.Tensor
    bin_masks: torch.Tensor | None = None

    def to(self, device) -> "RegionBatch":
        """The same regions on ``device``."""
        values = (getattr(self, f.name) for f in dataclasses.fields(self))
        return RegionBatch(*(None if t is None else t.to(device) for t in values))

    @classmethod
    def from_regions(
        cls,
        regions,
        stride: int,
        feature_shape,
        batch_index: int = 0,
        *,
        offset: float,
        bins=None,
        alignment: str = "centred",
    ) -> "RegionBatch":
        """The batch of a :class:`~rpl.proposals.RegionSet` on a stride-``stride`` feature map of
        ``feature_shape`` whose cell 0 is centred on pixel ``offset``; ``bins`` (oh, ow) also
        computes the box-relative bin masks; ``alignment`` as in :class:`ModelConfig`."""
        if alignment == "legacy":
            boxes, masks = (
                regions.boxes.astype(np.float64),
                regions.feature_masks(stride, feature_shape, (stride - 1) / 2),
            )
        else:
            boxes = regions.pooling_boxes(stride, feature_shape, offset)
            masks = regions.feature_masks(stride, feature_shape, offset)
        boxes = torch.as_tensor(boxes, dtype=torch.float32)
        boxes = torch.cat([torch.full((len(boxes), 1), float(batch_index)), boxes], 1)
        return cls(
            boxes=boxes,
            masks=torch.from_numpy(masks),
            membership=regions.cell_membership(),
            cells=torch.from_numpy(regions.superpixels.astype("int64")),
            atom_pixels=torch.from_numpy(regions.cell_areas.astype("int64")),
            atom_labels=None if regions.cell_labels is None else torch.from_numpy(regions.cell_labels),
            is_ground_truth=torch.from_numpy(regions.is_ground_truth),
            bin_masks=None if bins is None else torch.from_numpy(regions.bin_masks(bins)),
        )


class _Head(nn.Module):
    def __init__(self, in_features: int, width: int, dropout: float):
        super().__init__()
        self.fc6 = nn.Linear(in_features, width)
        self.fc7 = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = self.dropout(torch.relu(self.fc6(x.flatten(1))))
        return self.dropout(torch.relu(self.fc7(x)))


class E2S2(nn.Module):
    """End-to-end region-based semantic segmentation (Caesar et al. 2016).

    Args:
        backbone: a :class:`~rpl.models.backbones.Backbone`.
        num_classes: C (labels 1..C; outputs index c - 1).
        config: :class:`ModelConfig`.
    """

    def __init__(self, backbone: Backbone, num_classes: int, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.backbone = backbone
        self.config = config
        self.num_classes = num_classes
        channels = backbone.out_channels
        self.neck = None
        if config.neck:
            self.neck = nn.Sequential(nn.Conv2d(channels, config.neck, 1), nn.ReLU(inplace=True))
            channels = config.neck
        pooled = (
            channels * POOLED[0] * POOLED[1] * (2 if config.pooling == "both" and config.combine == "separate" else 1)
        )
        self.head = _Head(pooled, config.head, config.dropout)
        self.classifier = nn.Linear(config.head, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.01)  # the paper: new classifier ~ N(0, 0.01²)
        nn.init.zeros_(self.classifier.bias)
        if backbone.fc_init is not None and not config.neck and pooled == 25088 and config.head == 4096:
            self.head.fc6.load_state_dict(backbone.fc_init["fc6"])
            self.head.fc7.load_state_dict(backbone.fc_init["fc7"])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.backbone(images))

    def project(self, backbone_features: torch.Tensor) -> torch.Tensor:
        """The neck (if any) on backbone features: what ROI pooling reads."""
        return self.neck(backbone_features) if self.neck is not None else backbone_features

    def region_batch(self, regions, feature_shape, batch_index: int = 0) -> RegionBatch:
        """The :class:`RegionBatch` of a :class:`~rpl.proposals.RegionSet` on this model's
        feature map of ``feature_shape`` (h, w): its stride, cell centres and mask kind."""
        bins = POOLED if self.config.mask == "bins" and self.config.pooling != "box" else None
        return RegionBatch.from_regions(
            regions,
            self.backbone.stride,
            feature_shape,
            batch_index,
            offset=self.backbone.offset,
            bins=bins,
            alignment=self.config.alignment,
        )

    def region_scores(self, features: torch.Tensor, regions: RegionBatch) -> torch.Tensor:
        """S[R, C]: logits of every region."""
        scale = 1.0 / self.backbone.stride
        pooling, mask = self.config.pooling, self.config.mask
        if pooling in ("box", "both") or mask == "bins":
            box = free_form_roi_pool(features, regions.boxes, torch.ones_like(regions.masks), POOLED, scale)
        if pooling in ("free-form", "both"):
            if mask == "bins":  # the authors' free-form pooling: box pooling, bins outside the region zeroed
                if regions.bin_masks is None:
                    raise ValueError("mask='bins' needs RegionBatch.bin_masks: build the batch with model.region_batch")
                free = box * regions.bin_masks[:, None].to(box.dtype)
            else:  # Eq. 6-7: each bin's max over its cells inside the region
                free = free_form_roi_pool(features, regions.boxes, regions.masks, POOLED, scale)
        if pooling == "free-form":
            return self.classifier(self.head(free))
        if pooling == "box":
            return self.classifier(self.head(box))
        if self.config.combine == "tied":
            return self.classifier(self.head(free)) + self.classifier(self.head(box))
        return self.classifier(self.head(torch.cat([free, box], 1)))

    def maximised_scores(self, region_scores: torch.Tensor) -> torch.Tensor:
        """[R, C]: what the region-to-pixel layer maximises, the region logits (Eq. 3) or,
        with ``order="softmax-max"``, their class probabilities (Eq. 1)."""
        if self.config.order == "softmax-max":
            return torch.softmax(region_scores, 1)
        return region_scores

    def atom_scores(self, region_scores: torch.Tensor, regions: RegionBatch, return_winners: bool = False):
        """[A, C]: logits (Eq. 3) or probabilities (Eq. 1, ``order="softmax-max"``) per atom;
        with ``return_winners``, also the region that gave each of them (long [A, C])."""
        return region_to_pixel(self.maximised_scores(region_scores), regions.membership, return_winners)

    def scores(self, features: torch.Tensor, regions, return_winners: bool = False) -> RegionScores:
        """Everything one image's regions give, from its :meth:`features` (Tensor[1, C, h, w]):
        ``regions`` a :class:`~rpl.proposals.RegionSet` (its batch built here, on the features'
        device) or a :class:`RegionBatch`."""
        batch = regions if isinstance(regions, RegionBatch) else self.region_batch(regions, features.shape[-2:])
        batch = batch.to(features.device)
        logits = self.region_scores(features, batch)
        atoms = self.atom_scores(logits, batch, return_winners)
        atoms, winners = atoms if return_winners else (atoms, None)
        return RegionScores(batch, logits, atoms, winners)

    def forward(self, images: torch.Tensor, regions) -> torch.Tensor:
        """One image (Tensor[1, 3, H, W] in 0..1) and its regions (RegionSet or RegionBatch)
        -> atom scores [A, C]."""
        return self.scores(self.features(images), regions).atoms

    @torch.no_grad()
    def predict(self, images: torch.Tensor, regions) -> torch.Tensor:
        """Label map (Tensor[H, W], classes 1..C) of one image and its regions (RegionSet or
        RegionBatch): each pixel its atom's arg-max class (Eq. 3; Eq. 1 for the baseline)."""
        return self.scores(self.features(images), regions).labels()


@dataclass
class RegionScores:
    """What :meth:`E2S2.scores` gives: the regions' batch, their logits [R, C], the atoms'
    scores [A, C] (Eq. 3's maxima; Eq. 1's with ``order="softmax-max"``) and, when asked for,
    the region that gave each (long [A, C], -1 where no region holds the atom)."""

    batch: RegionBatch
    logits: torch.Tensor
    atoms: torch.Tensor
    winners: torch.Tensor | None = None

    def labels(self, order: str | None = None) -> torch.Tensor:
        """Label map (Tensor[H, W], classes 1..C): each pixel its atom's arg-max class. ``order``
        labels by the other score order from the same region logits instead of the model's own
        (``"softmax-max"``: Eq. 1, ``"max-softmax"``: Eq. 3; the baseline compares the two)."""
        atoms = self.atoms
        if order is not None:
            if order not in ORDERS:
                raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
            maxima = torch.softmax(self.logits, 1) if order == "softmax-max" else self.logits
            atoms = region_to_pixel(maxima, self.batch.membership)
        return (atoms.argmax(1) + 1)[self.batch.cells]
