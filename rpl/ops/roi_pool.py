"""Free-form ROI pooling (the paper's Sec. 3.2, Eq. 6–8)."""

from __future__ import annotations

import torch
from torch import nn

from . import _cpu, reference
from ._common import check_pool_inputs, roi_bins
from ._dispatch import compute_dtype, cuda_kernels

__all__ = ["free_form_roi_pool", "FreeFormRoIPool"]


class _FreeFormRoIPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, boxes, masks, output_size, spatial_scale):
        n, c, h, w = features.shape
        k = boxes.shape[0]
        rows, cols = roi_bins(boxes, output_size, spatial_scale, h, w)
        batch = boxes[:, 0].to(torch.int64)
        out = features.new_empty(k, c, *output_size)
        argmax = torch.empty(k, c, *output_size, dtype=torch.int32, device=features.device)
        if k:
            if features.is_cuda:
                kernels = cuda_kernels()
                a = kernels.as_array
                kernels.roi_pool_forward(
                    a(features.contiguous()),
                    a(batch),
                    a(rows),
                    a(cols),
                    a(masks.contiguous()),
                    a(out),
                    a(argmax),
                    stream=kernels.torch_stream(),
                )
            else:
                _cpu.roi_pool_forward(
                    features.detach().permute(0, 2, 3, 1).contiguous().numpy(),
                    batch.numpy(),
                    rows.numpy(),
                    cols.numpy(),
                    masks.contiguous().numpy(),
                    out.numpy(),
                    argmax.numpy(),
                )
        ctx.save_for_backward(argmax, batch)
        ctx.features_shape = (n, c, h, w)
        ctx.mark_non_differentiable(argmax)
        return out, argmax

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, _grad_argmax):
        argmax, batch = ctx.saved_tensors
        n, c, h, w = ctx.features_shape
        grad_in = grad_out.new_zeros(n, c, h * w)
        if argmax.numel():
            grad_out = grad_out.contiguous()
            if grad_out.is_cuda:
                kernels = cuda_kernels()
                a = kernels.as_array
                kernels.roi_pool_backward(a(grad_out), a(argmax), a(batch), a(grad_in), stream=kernels.torch_stream())
            else:
                _cpu.roi_pool_backward(grad_out.numpy(), argmax.numpy(), batch.numpy(), grad_in.numpy())
        return grad_in.view(n, c, h, w), None, None, None, None


def free_form_roi_pool(
    features: torch.Tensor,
    boxes: torch.Tensor,
    masks: torch.Tensor,
    output_size=(7, 7),
    spatial_scale: float = 1 / 16,
) -> torch.Tensor:
    """Free-form ROI max pooling (Caesar et al. 2016, Eq. 6–8).

    Like Fast R-CNN's ROI pooling — and with exactly the bins of ``torchvision.ops.roi_pool``
    — but a feature cell takes part in a region's pooling only if it lies inside the region
    (δ = 1 in Eq. 7). A bin with no cell inside the region outputs 0 and passes no gradient.
    With all-true masks this equals ``torchvision.ops.roi_pool``, forward and backward. A NaN
    feature propagates, as in ``torch.max``: its bin is NaN and passes its gradient to the
    first NaN cell in row-major order (torchvision's kernels skip NaN instead).

    Args:
        features (Tensor[N, C, H, W]): float32 or float64 (float16/bfloat16 are computed in
            float32 and returned in their own dtype; the max is exact either way).
        boxes (Tensor[K, 5]): (batch index, x1, y1, x2, y2) in input pixels, torchvision's
            convention.
        masks (Tensor[K, H, W] bool): the feature cells inside each region
            (:meth:`rpl.proposals.RegionSet.feature_masks`).
        output_size: (oh, ow) bins per region.
        spatial_scale: feature cells per input pixel (1/16 for a stride-16 backbone).

    Returns:
        Tensor[K, C, oh, ow].

    CPU tensors run Numba kernels, CUDA tensors Numba-CUDA kernels on PyTorch's current stream;
    :func:`rpl.ops.reference.free_form_roi_pool` is the plain PyTorch version.
    """
    output_size = tuple(int(s) for s in (output_size if hasattr(output_size, "__len__") else (output_size,) * 2))
    check_pool_inputs(features, boxes, masks, output_size)
    dtype = compute_dtype(features)
    if dtype is None:
        return reference.free_form_roi_pool(features, boxes, masks, output_size, spatial_scale)
    out, _ = _FreeFormRoIPoolFunction.apply(
        features.to(dtype), boxes.to(dtype), masks, output_size, float(spatial_scale)
    )
    return out.to(features.dtype)


class FreeFormRoIPool(nn.Module):
    """:func:`free_form_roi_pool` as a module."""

    def __init__(self, output_size=(7, 7), spatial_scale: float = 1 / 16):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, features, boxes, masks):
        return free_form_roi_pool(features, boxes, masks, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"
