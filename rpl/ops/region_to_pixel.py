"""The region-to-pixel layer (the paper's Sec. 3.3, Eq. 3 and 5)."""

from __future__ import annotations

import torch
from torch import nn

from . import _cpu, reference
from ._common import check_r2p_inputs, membership_csr
from ._dispatch import compute_dtype, cuda_kernels

__all__ = ["region_to_pixel", "RegionToPixel"]


class _RegionToPixelFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, indptr, indices):
        a_ = indptr.shape[0] - 1
        r_, c_ = scores.shape
        scores_c = scores.detach().contiguous()
        out = scores.new_empty(a_, c_)
        winners = torch.empty(a_, c_, dtype=torch.int64, device=scores.device)
        fill = scores_c.min().reshape(1)
        if a_:
            if scores.is_cuda:
                kernels = cuda_kernels()
                a = kernels.as_array
                kernels.region_to_pixel_forward(
                    a(scores_c),
                    a(indptr),
                    a(indices),
                    a(fill),
                    a(out),
                    a(winners),
                    stream=kernels.torch_stream(),
                )
            else:
                _cpu.region_to_pixel_forward(
                    scores_c.numpy(), indptr.numpy(), indices.numpy(), fill.item(), out.numpy(), winners.numpy()
                )
        ctx.save_for_backward(winners)
        ctx.num_regions = r_
        ctx.mark_non_differentiable(winners)
        return out, winners

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, _grad_winners):
        (winners,) = ctx.saved_tensors
        grad_scores = grad_out.new_zeros(ctx.num_regions, grad_out.shape[1])
        if winners.numel():
            grad_out = grad_out.contiguous()
            if grad_out.is_cuda:
                kernels = cuda_kernels()
                a = kernels.as_array
                kernels.region_to_pixel_backward(a(grad_out), a(winners), a(grad_scores), stream=kernels.torch_stream())
            else:
                _cpu.region_to_pixel_backward(grad_out.numpy(), winners.numpy(), grad_scores.numpy())
        return grad_scores, None, None


def region_to_pixel(scores: torch.Tensor, membership: torch.Tensor, return_winners: bool = False):
    """Region scores to pixel (atom) scores: the max over the regions containing each atom,
    per class, before the softmax (Caesar et al. 2016, Eq. 3).

    Backward (Eq. 5): for each atom and class the gradient goes to the region that won the
    max; a region collects the sum over the atoms and classes it won.

    Args:
        scores (Tensor[R, C]): region logits (float32/float64; float16/bfloat16 computed in
            float32 and returned in their own dtype).
        membership (Tensor[A, R]): bool, dense or sparse CSR: which regions contain each atom.
            Atoms may be superpixels, atoms (superpixel ∩ ground truth) or single pixels —
            anything that partitions the image.
        return_winners: also return the winning region of each atom and class.

    Returns:
        Tensor[A, C], and with ``return_winners`` LongTensor[A, C] of region indices. Ties go
        to the lowest region index. An atom in no region gets the minimum of all scores and
        no gradient (as the authors' code does); its winner is -1. A NaN score propagates, as
        in ``torch.max``: the atom's value is NaN and its winner the lowest NaN region.
    """
    check_r2p_inputs(scores, membership)
    dtype = compute_dtype(scores)
    if dtype is None:
        return reference.region_to_pixel(scores, membership, return_winners)
    indptr, indices = membership_csr(membership)
    out, winners = _RegionToPixelFunction.apply(scores.to(dtype), indptr, indices)
    out = out.to(scores.dtype)
    return (out, winners) if return_winners else out


class RegionToPixel(nn.Module):
    """:func:`region_to_pixel` as a module."""

    def forward(self, scores, membership, return_winners: bool = False):
        return region_to_pixel(scores, membership, return_winners)
