"""Plain PyTorch versions of the two layers: slow, obviously correct, differentiable by autograd,
any dtype and device. The tests hold the fast kernels to these; they also serve as a fallback.
"""

from __future__ import annotations

import torch

from ._common import check_pool_inputs, check_r2p_inputs, roi_bins

__all__ = ["free_form_roi_pool", "region_to_pixel"]


def free_form_roi_pool(features, boxes, masks, output_size=(7, 7), spatial_scale=1 / 16):
    """Eq. 6–8 by loops: each bin's max over its feature cells inside the region (first
    maximum in row-major order wins ties, a NaN propagates); a bin with no such cell is 0.
    Same arguments as :func:`rpl.ops.free_form_roi_pool`."""
    check_pool_inputs(features, boxes, masks, output_size)
    boxes = boxes.to(features.dtype)
    _, c, h, w = features.shape
    rows, cols = roi_bins(boxes, output_size, spatial_scale, h, w)
    pooled = []
    for k in range(boxes.shape[0]):
        n = int(boxes[k, 0])
        bins = []
        for hs, he in rows[k].tolist():
            for ws, we in cols[k].tolist():
                inside = masks[k, hs:he, ws:we]
                if inside.any():
                    bins.append(features[n, :, hs:he, ws:we][:, inside].max(dim=1).values)
                else:
                    bins.append(features.new_zeros(c))
        pooled.append(torch.stack(bins, dim=1).view(c, *output_size))
    if not pooled:
        return features.new_zeros(0, c, *output_size)
    return torch.stack(pooled)


def region_to_pixel(scores, membership, return_winners=False):
    """Eq. 3 densely: for every atom and class, the max over the regions containing the atom
    (lowest region index wins ties, a NaN propagates); atoms in no region get the minimum of
    all scores and no gradient. Same arguments as :func:`rpl.ops.region_to_pixel`."""
    check_r2p_inputs(scores, membership)
    member = membership.to_dense() if membership.layout != torch.strided else membership
    member = member.to(torch.bool)
    masked = torch.where(member[:, :, None], scores[None], scores.new_tensor(float("-inf")))
    best = masked.max(dim=1).values
    # the lowest member region holding it: a member scoring -inf wins over the others' fill
    hit = member[:, :, None] & ((scores[None] == best[:, None]) | (scores[None].isnan() & best[:, None].isnan()))
    winners = hit.to(torch.int32).argmax(dim=1)
    values = scores[winners, torch.arange(scores.shape[1], device=scores.device)]
    empty = ~member.any(dim=1)
    values = torch.where(empty[:, None], scores.min().detach(), values)
    winners = torch.where(empty[:, None], torch.full_like(winners, -1), winners)
    return (values, winners) if return_winners else values
