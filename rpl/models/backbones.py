"""Backbones: ImageNet networks cut at output stride 16 (or 8), as the paper's VGG-16 up to conv5.

``mobilenet_v2`` (the cpu preset): torchvision's MobileNetV2 up to its last 320-channel block,
the last stride-2 stage turned into stride 1 with dilation 2, so the output stride is 16 (or
the last two, for output stride 8).
``vgg16`` (the paper preset): VGG-16 up to conv5_3 (no pool5), stride 16.

Both take RGB in 0..1 and normalise with torchvision's ImageNet statistics themselves. Batch
norm is frozen (statistics and affine parameters), as usual when fine-tuning with one image at
a time.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

__all__ = ["Backbone", "mobilenet_v2", "resample_cells", "vgg16", "WEIGHTS_ENV"]

WEIGHTS_ENV = "RPL_WEIGHTS"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """Normalisation + a convolutional trunk. ``out_channels`` and ``stride`` describe its
    output; ``skip_index``, ``skip_channels``, ``skip_offset`` the stride/2 features of the FCN's
    skip.

    ``offset`` is the pixel on which feature cell 0 is centred (cell i: ``offset + i·stride``),
    measured from the receptive fields: 0 for MobileNetV2, whose stride-2 convolutions are
    padded, 7.5 for VGG-16, whose 2x2 max pools are not. ``fc_init`` holds the ImageNet layers
    that followed the trunk, for the region head: VGG-16's fc6/fc7 (``"fc6"``, ``"fc7"``, as
    the authors initialised theirs), MobileNetV2's last 1x1 convolution to 1280 channels with
    its batch norm folded in (``"conv1280"``, a ``Conv2d`` state dict).

    ``skip_scale`` brings the stride/2 features to the size of the output's where a region
    model reads both (``levels=2``): the root mean square of each channel's maximum over an
    image, the output's over the skip's, with ImageNet weights on SIFT Flow's training images
    (MobileNetV2: 4.0 / 19.2 at stride 16, 4.5 / 26.0 at stride 8; tested). Unscaled, the skip's
    few channels dominate a linear head's inputs and its training diverges at the preset's
    rate — the fixed factor is the FCN authors' remedy for their skips (pool4 × 0.01). VGG-16's is
    1: not measured here, no VGG-16 weights.
    """

    def __init__(
        self,
        body: nn.Module,
        out_channels: int,
        stride: int,
        name: str,
        fc_init=None,
        skip: tuple[int, int] = (0, 0),
        offset: float = 0.0,
        skip_scale: float = 1.0,
    ):
        super().__init__()
        self.offset = offset
        # the skip (half the output stride) is centred as the output: padded convolutions on
        # pixel 0, unpadded pools on the middle of their first block
        self.skip_offset = 0.0 if offset == 0 else (stride // 2 - 1) / 2  # tested against receptive fields
        self.body = body
        self.skip_index, self.skip_channels = skip  # where the stride/2 features are (FCN's skip)
        self.skip_scale = skip_scale
        self.out_channels = out_channels
        self.stride = stride
        self.name = name
        self.fc_init = fc_init
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                for p in m.parameters():
                    p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()  # frozen statistics
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (Tensor[N, 3, H, W]) in 0..1 -> features (Tensor[N, C, h, w]): h = ceil(H / stride)
        for MobileNetV2, floor(H / stride) for VGG-16."""
        return self.body((images - self.mean) / self.std)

    def skip_features(self, images: torch.Tensor) -> torch.Tensor:
        """The stride/2 features alone (the FCN's skip), without running the rest."""
        return self.body[: self.skip_index]((images - self.mean) / self.std)

    def forward_with_skip(self, images: torch.Tensor):
        """(stride/2 features, output features), for the FCN comparison's skip."""
        skip = self.skip_features(images)
        return skip, self.body[self.skip_index :](skip)

    def outputs(self, images: torch.Tensor, skip: bool) -> tuple:
        """What a model reads of the backbone: ``(features,)``, or with ``skip``
        ``(stride/2 features, features)`` (:meth:`forward_with_skip`)."""
        return self.forward_with_skip(images) if skip else (self(images),)


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


def _local_weights(filename: str) -> Path | None:
    folder = os.environ.get(WEIGHTS_ENV)
    if folder and (Path(folder) / filename).is_file():
        return Path(folder) / filename
    return None


def _load(model: nn.Module, filename: str, tv_weights, name: str) -> None:
    path = _local_weights(filename)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        try:
            state = tv_weights.get_state_dict(progress=True)
        except Exception as e:  # no network, no cache: say where the file should go
            where = os.environ.get(WEIGHTS_ENV) or f"${WEIGHTS_ENV} (not set)"
            raise FileNotFoundError(
                f"ImageNet weights for {name} not found: no {filename} in {where}, and "
                f"torchvision could not download {tv_weights} ({e}). Put a torchvision state dict "
                f"at {WEIGHTS_ENV}/{filename}, or train from scratch (`--set weights=none`, not with neck_init=imagenet; weights=None here)."
            ) from e
    model.load_state_dict(state)


def mobilenet_v2(weights: str | None = "imagenet", output_stride: int = 16) -> Backbone:
    """MobileNetV2 at output stride 16 or 8 (320 channels).

    The stride-2 stages after the output stride run at stride 1, dilated as DeepLab does (the
    first block of such a stage keeps the previous dilation, the others double it).

    Args:
        weights: ``"imagenet"`` (``$RPL_WEIGHTS/mobilenet_v2_imagenet.pth``, else torchvision's
            download) or None (random initialisation, asked for explicitly).
        output_stride: 16 (the paper's conv5 stride) or 8 (a finer grid, 32x32 cells at 256 px).
    """
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16 for mobilenet_v2, got {output_stride!r}")
    net = torchvision.models.mobilenet_v2()
    if weights == "imagenet":
        _load(net, "mobilenet_v2_imagenet.pth", torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1, "mobilenet_v2")
    elif weights is not None:
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    body = net.features[:18]  # up to the 320-channel block; drop the 1280-channel 1x1 conv
    # The stages that start with a stride-2 block: blocks 7-13 (stride 16), 14-17 (stride 32).
    stages = [range(14, 18)] if output_stride == 16 else [range(7, 14), range(14, 18)]
    dilation = 1
    for stage in stages:
        for i, index in enumerate(stage):
            depthwise = body[index].conv[1][0]
            depthwise.stride = (1, 1)
            rate = dilation if i == 0 else 2 * dilation
            depthwise.dilation, depthwise.padding = (rate, rate), (rate, rate)
        dilation *= 2
    skip = (7, 32) if output_stride == 16 else (4, 24)  # the FCN's skip: half the output stride
    fc_init = {"conv1280": _folded(net.features[18])} if weights == "imagenet" else None
    scale = 0.21 if output_stride == 16 else 0.17  # measured: the class docstring
    return Backbone(body, 320, output_stride, "mobilenet_v2", fc_init=fc_init, skip=skip, skip_scale=scale)


def _folded(block: nn.Sequential) -> dict:
    """The state dict of one ``Conv2d`` equal to a (bias-free) convolution followed by its
    batch norm in inference mode (the activation after them is left out)."""
    conv, bn = block[0], block[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    return {"weight": weight.detach().clone(), "bias": (bn.bias - bn.running_mean * scale).detach().clone()}


def vgg16(weights: str | None = "imagenet") -> Backbone:
    """VGG-16 up to conv5_3 (512 channels, stride 16), the paper's network; ``fc_init`` holds
    its ImageNet fc6/fc7 for the region head."""
    net = torchvision.models.vgg16()
    if weights == "imagenet":
        _load(net, "vgg16_imagenet.pth", torchvision.models.VGG16_Weights.IMAGENET1K_V1, "vgg16")
    elif weights is not None:
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    body = net.features[:30]  # conv5_3 + ReLU, without pool5
    fc_init = None
    if weights == "imagenet":
        fc_init = {"fc6": net.classifier[0].state_dict(), "fc7": net.classifier[3].state_dict()}
    return Backbone(body, 512, 16, "vgg16", fc_init=fc_init, skip=(23, 512), offset=7.5)
