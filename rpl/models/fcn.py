"""The FCN comparison (Table 3) on the same backbone: FCN-16s-style, scores from the backbone's
output (stride 16, or 8) plus a skip from the features at half that stride, bilinearly upsampled to the image (Long et al.,
CVPR 2015, with our backbone's strides in place of VGG-16's 32 and 16)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone, resample_cells
from .e2s2 import ALIGNMENTS

__all__ = ["FCN"]


class FCN(nn.Module):
    """Per-pixel classification: backbone -> 1x1 classifiers at its output stride and at half of it -> upsample.

    Args:
        backbone: a :class:`~rpl.models.backbones.Backbone` (with a skip at half its stride;
            ``score16``/``score8`` name the stride-16 case).
        num_classes: C.
        alignment: ``centred`` (upsampling puts each cell's score on the pixel the backbone
            centres it on) or ``legacy`` (``F.interpolate(align_corners=False)``, which assumes
            VGG-16's centres; rpl before issue 12).
        skip: with the skip (FCN-16s-style; the default) or without it (FCN-32s-style: one 1x1
            classifier at the output stride, upsampled).
    """

    def __init__(self, backbone: Backbone, num_classes: int, alignment: str = "centred", skip: bool = True):
        super().__init__()
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.alignment = alignment
        self.skip = skip
        self.score16 = nn.Conv2d(backbone.out_channels, num_classes, 1)
        self.score8 = nn.Conv2d(backbone.skip_channels, num_classes, 1) if skip else None
        for conv in (self.score16, self.score8):
            if conv is not None:
                nn.init.normal_(conv.weight, std=0.01)
                nn.init.zeros_(conv.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (Tensor[N, 3, H, W]) in 0..1 -> logits (Tensor[N, C, H, W])."""
        return self.from_backbone(self.backbone.outputs(images, self.skip), images.shape[-2:])

    def from_backbone(self, outputs: tuple, size) -> torch.Tensor:
        """Logits (Tensor[N, C, *size]) from what the backbone gave
        (:meth:`~rpl.models.backbones.Backbone.outputs` with this model's ``skip``): the
        classifiers alone, as they train on a frozen backbone's cached outputs (a linear probe)."""
        b = self.backbone
        deep = outputs[-1]
        if not self.skip:
            if self.alignment == "legacy":
                return F.interpolate(self.score16(deep), size=size, mode="bilinear", align_corners=False)
            return resample_cells(self.score16(deep), b.stride, b.offset, size)
        skip = outputs[0]
        if self.alignment == "legacy":
            up = lambda x, size: F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # noqa: E731
            scores = self.score8(skip) + up(self.score16(deep), skip.shape[-2:])
            return up(scores, size)
        skip_stride = b.stride // 2
        scores = self.score8(skip) + resample_cells(
            self.score16(deep), b.stride, b.offset, skip.shape[-2:], skip_stride, b.skip_offset
        )
        return resample_cells(scores, skip_stride, b.skip_offset, size)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, regions=None) -> torch.Tensor:
        """Label map (Tensor[H, W], classes 1..C) of one image (``regions``, which the FCN does
        not use, for the region models' signature)."""
        return self.forward(images)[0].argmax(0) + 1
