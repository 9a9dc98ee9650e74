"""The end-to-end region-based model (Fig. 2c, Fig. 3) and the region classification baseline
(Fig. 2b) share this network; they differ in pooling, loss and how pixels get labels.

image -> backbone (stride 16, or 8) [+ its stride/2 features] -> [1x1 neck] -> ROI pooling per
      region (free-form and/or box, bins x bins, 7x7 as the paper) -> [fc6, fc7 (ReLU, dropout 0.5)] -> classifier:
      region scores S[R, C]
      -> region-to-pixel (Eq. 3; or Eq. 1: softmax first) -> atom scores [A, C]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..ops import free_form_roi_pool, region_to_pixel
from .backbones import Backbone, resample_cells

__all__ = ["E2S2", "ModelConfig", "RegionBatch", "RegionScores"]

POOLINGS = ("free-form", "box", "both")
COMBINES = ("tied", "separate")
ORDERS = ("max-softmax", "softmax-max")
MASKS = ("cells", "bins")
ALIGNMENTS = ("centred", "legacy")
NECK_INITS = ("random", "imagenet")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture options (Table 4, Sec. 4.3).

    pooling: ``free-form`` (Eq. 6-8), ``box`` (Fast R-CNN) or ``both`` (region + context).
    combine: with both: ``tied`` (shared fc layers, scores added) or ``separate`` (pooled
        features concatenated, then the fc layers).
    order: ``max-softmax`` (Eq. 3: region-to-pixel on logits) or ``softmax-max`` (Eq. 1).
    neck: channels of a 1x1 convolution before pooling (0: none) — keeps the fc6 input small
        for the cpu preset; the paper has none.
    neck_init: ``random`` (a new convolution, ReLU) or ``imagenet``: MobileNetV2's own last
        layer (its 1x1 convolution to 1280 channels, batch norm folded in, ReLU6), the layer
        ImageNet's classifier read; needs ``neck=1280``.
    head: width of fc6 and fc7 (VGG-16: 4096); 0: no fc layers, the classifier reads the
        pooled features (a linear head).
    bins: the pooled grid per region is bins x bins (the paper and Fast R-CNN: 7; 1: one max
        per channel over the region).
    levels: 1 (pool the backbone's output, stride 16) or 2 (also its stride/2 features, as the
        FCN's skip: the output resampled onto the stride/2 grid and concatenated with them,
        scaled to the output's size, so the regions are pooled at stride 8).
    mask: how free-form pooling leaves out what is not the region: ``cells`` (Eq. 6-7 read
        literally: each bin's max over its feature cells inside the region) or ``bins`` (the
        authors' code: box pooling, then the bins outside the region's box-relative bins x bins mask
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
    bins: int = 7
    levels: int = 1
    neck_init: str = "random"

    def __post_init__(self):
        for name, value, allowed in (
            ("pooling", self.pooling, POOLINGS),
            ("combine", self.combine, COMBINES),
            ("order", self.order, ORDERS),
            ("mask", self.mask, MASKS),
            ("alignment", self.alignment, ALIGNMENTS),
            ("neck_init", self.neck_init, NECK_INITS),
            ("levels", self.levels, (1, 2)),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not isinstance(self.bins, int) or self.bins < 1:
            raise ValueError(f"bins must be an integer >= 1 (pooled bins per side), got {self.bins!r}")
        if self.neck_init == "imagenet" and (self.neck != 1280 or self.levels != 1):
            raise ValueError(
                "neck_init=imagenet is MobileNetV2's 1x1 convolution from its 320 output channels to 1280: "
                f"it needs neck=1280 and levels=1, got neck={self.neck}, levels={self.levels}"
            )


@dataclass
class RegionBatch:
    """One image's regions as the model needs them (see :meth:`RegionBatch.from_regions`).

    boxes (Tensor[R, 5]: batch index and the box in the pooling layer's frame,
    :meth:`~rpl.proposals.RegionSet.pooling_boxes`), masks (Tensor[R, h, w] bool: feature cells
    inside each region), membership (sparse CSR [A, R]), cells (Tensor[H, W] long: the atom of
    each pixel), atom_pixels (Tensor[A]), atom_labels (Tensor[A] long or None),
    is_ground_truth (Tensor[R] bool), bin_masks (Tensor[R, bins, bins] bool or None: the
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
        self.pooled = (config.bins, config.bins)
        # the map ROI pooling reads: the backbone's output, or with levels=2 its stride/2 grid
        self.stride = backbone.stride if config.levels == 1 else backbone.stride // 2
        self.offset = backbone.offset if config.levels == 1 else backbone.skip_offset
        channels = backbone.out_channels + (backbone.skip_channels if config.levels == 2 else 0)
        self.neck = None
        if config.neck:
            conv = nn.Conv2d(channels, config.neck, 1)
            if config.neck_init == "imagenet":
                if channels != 320:
                    raise ValueError("neck_init=imagenet reads MobileNetV2's 320 output channels")
                if backbone.fc_init and "conv1280" in backbone.fc_init:  # else a checkpoint fills it in
                    conv.load_state_dict(backbone.fc_init["conv1280"])
            relu = nn.ReLU6(inplace=True) if config.neck_init == "imagenet" else nn.ReLU(inplace=True)
            self.neck = nn.Sequential(conv, relu)
            channels = config.neck
        pooled = channels * config.bins**2 * (2 if config.pooling == "both" and config.combine == "separate" else 1)
        self.head = _Head(pooled, config.head, config.dropout) if config.head else nn.Flatten()
        self.classifier = nn.Linear(config.head or pooled, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.01)  # the paper: new classifier ~ N(0, 0.01²)
        nn.init.zeros_(self.classifier.bias)
        vgg_fc = backbone.fc_init is not None and "fc6" in backbone.fc_init
        if vgg_fc and not config.neck and pooled == 25088 and config.head == 4096:
            self.head.fc6.load_state_dict(backbone.fc_init["fc6"])
            self.head.fc7.load_state_dict(backbone.fc_init["fc7"])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """What ROI pooling reads (Tensor[N, C', h, w]) from images (Tensor[N, 3, H, W] in 0..1)."""
        return self.from_backbone(self.backbone.outputs(images, self.config.levels == 2))

    def from_backbone(self, outputs: tuple) -> torch.Tensor:
        """What ROI pooling reads, from what the backbone gave
        (:meth:`~rpl.models.backbones.Backbone.outputs`, with the skip when ``levels=2``): the
        levels joined on the stride/2 grid (the skip scaled by ``Backbone.skip_scale``), then the
        neck (if any)."""
        x = outputs[-1]
        if self.config.levels == 2:
            b, skip = self.backbone, outputs[0]
            deep = resample_cells(x, b.stride, b.offset, skip.shape[-2:], self.stride, self.offset)
            x = torch.cat([deep, skip * b.skip_scale], 1)
        return self.neck(x) if self.neck is not None else x

    def region_batch(self, regions, feature_shape, batch_index: int = 0) -> RegionBatch:
        """The :class:`RegionBatch` of a :class:`~rpl.proposals.RegionSet` on this model's
        feature map of ``feature_shape`` (h, w): its stride, cell centres and mask kind."""
        bins = self.pooled if self.config.mask == "bins" and self.config.pooling != "box" else None
        return RegionBatch.from_regions(
            regions,
            self.stride,
            feature_shape,
            batch_index,
            offset=self.offset,
            bins=bins,
            alignment=self.config.alignment,
        )

    def region_scores(self, features: torch.Tensor, regions: RegionBatch) -> torch.Tensor:
        """S[R, C]: logits of every region."""
        scale, size = 1.0 / self.stride, self.pooled
        pooling, mask = self.config.pooling, self.config.mask
        if pooling in ("box", "both") or mask == "bins":
            box = free_form_roi_pool(features, regions.boxes, torch.ones_like(regions.masks), size, scale)
        if pooling in ("free-form", "both"):
            if mask == "bins":  # the authors' free-form pooling: box pooling, bins outside the region zeroed
                if regions.bin_masks is None:
                    raise ValueError("mask='bins' needs RegionBatch.bin_masks: build the batch with model.region_batch")
                free = box * regions.bin_masks[:, None].to(box.dtype)
            else:  # Eq. 6-7: each bin's max over its cells inside the region
                free = free_form_roi_pool(features, regions.boxes, regions.masks, size, scale)
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
