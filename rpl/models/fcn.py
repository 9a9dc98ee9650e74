"""The FCN comparison (Table 3) on the same backbone: FCN-16s-style, scores from the stride-16
features plus a skip from the stride-8 features, bilinearly upsampled to the image (Long et al.,
CVPR 2015, with our backbone's strides in place of VGG-16's 32 and 16)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone

__all__ = ["FCN"]


class FCN(nn.Module):
    """Per-pixel classification: backbone -> 1x1 classifiers at stride 16 and 8 -> upsample.

    Args:
        backbone: a :class:`~rpl.models.backbones.Backbone` (stride 16, with a stride-8 skip).
        num_classes: C.
    """

    def __init__(self, backbone: Backbone, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.score16 = nn.Conv2d(backbone.out_channels, num_classes, 1)
        self.score8 = nn.Conv2d(backbone.skip_channels, num_classes, 1)
        for conv in (self.score16, self.score8):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (Tensor[N, 3, H, W]) in 0..1 -> logits (Tensor[N, C, H, W])."""
        skip, deep = self.backbone.forward_with_skip(images)
        scores = self.score8(skip) + F.interpolate(self.score16(deep), size=skip.shape[-2:], mode="bilinear",
                                                   align_corners=False)  # fmt: skip
        return F.interpolate(scores, size=images.shape[-2:], mode="bilinear", align_corners=False)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Label map (Tensor[H, W], classes 1..C) of one image."""
        return self.forward(images)[0].argmax(0) + 1
