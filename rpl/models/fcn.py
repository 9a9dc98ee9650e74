"""The FCN comparison (Table 3) on the same backbone: FCN-16s-style, scores from the backbone's
output (stride 16, or 8) plus a skip from the features at half that stride, bilinearly upsampled to the image (Long et al.,
CVPR 2015, with our backbone's strides in place of VGG-16's 32 and 16)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone
from .e2s2 import ALIGNMENTS

__all__ = ["FCN", "resample_cells"]


def resample_cells(
    x: torch.Tensor, stride: float, offset: float, size, out_stride: float = 1.0, out_offset: float = 0.0
) -> torch.Tensor:
    """Bilinear resampling of a map whose cell i is centred on pixel ``offset + i·stride`` onto a
    grid of ``size`` (h, w) cells centred on ``out_offset + j·out_stride`` (default: the image's
    pixels); beyond the outermost centres the border value holds.

    Onto the pixels (the defaults) with ``size`` = stride × the map's size,
    ``F.interpolate(align_corners=False)`` is the special case ``offset = (stride - 1) / 2``
    (VGG-16's unpadded pooling); MobileNetV2's padded stride-2 convolutions centre cell i on
    pixel ``i·stride`` instead (``Backbone.offset``).
    """

    def axis(n_in, n_out):  # float32 coordinates: bf16 holds integers exactly only up to 256
        u = (out_offset + out_stride * torch.arange(n_out, dtype=torch.float32, device=x.device) - offset) / stride
        return 2 * u / max(n_in - 1, 1) - 1 if n_in > 1 else torch.zeros_like(u)

    gy, gx = axis(x.shape[-2], size[0]), axis(x.shape[-1], size[1])
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).expand(x.shape[0], -1, -1, -1)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(x.dtype)


class FCN(nn.Module):
    """Per-pixel classification: backbone -> 1x1 classifiers at its output stride and at half of it -> upsample.

    Args:
        backbone: a :class:`~rpl.models.backbones.Backbone` (with a skip at half its stride;
            ``score16``/``score8`` name the stride-16 case).
        num_classes: C.
        alignment: ``centred`` (upsampling puts each cell's score on the pixel the backbone
            centres it on) or ``legacy`` (``F.interpolate(align_corners=False)``, which assumes
            VGG-16's centres; rpl before issue 12).
    """

    def __init__(self, backbone: Backbone, num_classes: int, alignment: str = "centred"):
        super().__init__()
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.alignment = alignment
        self.score16 = nn.Conv2d(backbone.out_channels, num_classes, 1)
        self.score8 = nn.Conv2d(backbone.skip_channels, num_classes, 1)
        for conv in (self.score16, self.score8):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (Tensor[N, 3, H, W]) in 0..1 -> logits (Tensor[N, C, H, W])."""
        skip, deep = self.backbone.forward_with_skip(images)
        b = self.backbone
        if self.alignment == "legacy":
            up = lambda x, size: F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # noqa: E731
            scores = self.score8(skip) + up(self.score16(deep), skip.shape[-2:])
            return up(scores, images.shape[-2:])
        skip_stride = b.stride // 2
        scores = self.score8(skip) + resample_cells(
            self.score16(deep), b.stride, b.offset, skip.shape[-2:], skip_stride, b.skip_offset
        )
        return resample_cells(scores, skip_stride, b.skip_offset, images.shape[-2:])

    @torch.no_grad()
    def predict(self, images: torch.Tensor, regions=None) -> torch.Tensor:
        """Label map (Tensor[H, W], classes 1..C) of one image (``regions``, which the FCN does
        not use, for the region models' signature)."""
        return self.forward(images)[0].argmax(0) + 1
