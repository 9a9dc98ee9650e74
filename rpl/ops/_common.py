"""What the three implementations of each layer share: torchvision's bins, membership as CSR,
input checks."""

from __future__ import annotations

import torch

__all__ = ["roi_bins", "membership_csr", "check_pool_inputs", "check_r2p_inputs"]


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's round(): halves away from zero (torch.round rounds halves to even)."""
    a = x.abs()
    r = torch.floor(a)
    r = r + (a - r >= 0.5).to(x.dtype)
    return torch.copysign(r, x)


def roi_bins(boxes: torch.Tensor, output_size: tuple[int, int], spatial_scale: float, height: int, width: int):
    """The pooling bins of each box, computed as ``torchvision.ops.roi_pool`` computes them.

    Box corners are scaled and rounded (half away from zero) to feature cells, a malformed box
    becomes 1×1, the box is split into ``output_size`` bins of real-valued size (in the boxes'
    dtype, like torchvision's kernels), bin edges are floored/ceiled and clipped to the map.
    Bins are separable: rows depend only on (box, ph), columns only on (box, pw).

    Args:
        boxes (Tensor[K, 5]): (batch index, x1, y1, x2, y2) in input pixels.

    Returns:
        (rows, cols): int32 Tensor[K, oh, 2] and Tensor[K, ow, 2] holding [start, end).
    """
    oh, ow = output_size
    dtype = boxes.dtype
    scale = torch.tensor(spatial_scale, dtype=dtype, device=boxes.device)
    x1, y1, x2, y2 = _round_half_away(boxes[:, 1:5] * scale).to(torch.int64).unbind(1)

    def edges(start, end, bins, limit):
        size = (end - start + 1).clamp(min=1).to(dtype)
        bin_size = size / bins
        p = torch.arange(bins, dtype=dtype, device=boxes.device)
        lo = torch.floor(p[None] * bin_size[:, None]).to(torch.int64) + start[:, None]
        hi = torch.ceil((p[None] + 1) * bin_size[:, None]).to(torch.int64) + start[:, None]
        return torch.stack([lo.clamp(0, limit), hi.clamp(0, limit)], dim=2).to(torch.int32)

    return edges(y1, y2, oh, height), edges(x1, x2, ow, width)


def membership_csr(membership: torch.Tensor, num_regions: int | None = None):
    """(indptr, indices) int64 of an atom × region membership, dense bool or sparse CSR (an
    explicitly stored False is no member)."""
    if membership.layout == torch.sparse_csr:
        indptr, indices = membership.crow_indices().to(torch.int64), membership.col_indices().to(torch.int64)
        member = membership.values().to(torch.bool)
        if bool(member.all()):
            return indptr, indices
        rows = torch.repeat_interleave(torch.arange(len(indptr) - 1, device=indptr.device), indptr.diff())
        counts = torch.bincount(rows[member], minlength=len(indptr) - 1)
        kept = torch.zeros_like(indptr)
        kept[1:] = torch.cumsum(counts, 0)
        return kept, indices[member].contiguous()
    if membership.layout != torch.strided:
        raise TypeError(f"membership must be a dense bool or sparse CSR tensor, got layout {membership.layout}")
    if membership.dtype != torch.bool:
        raise TypeError(f"membership must be a bool tensor, got {membership.dtype}")
    nz = membership.nonzero()
    counts = torch.bincount(nz[:, 0], minlength=membership.shape[0])
    indptr = torch.zeros(membership.shape[0] + 1, dtype=torch.int64, device=membership.device)
    indptr[1:] = torch.cumsum(counts, 0)
    return indptr, nz[:, 1].contiguous()


def check_pool_inputs(features, boxes, masks, output_size):
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        raise ValueError(f"features must be a Tensor[N, C, H, W], got shape {tuple(getattr(features, 'shape', ()))}")
    if not features.is_floating_point():
        raise TypeError(f"features must be floating point, got {features.dtype}")
    if boxes.dim() != 2 or boxes.shape[1] != 5:
        raise ValueError(f"boxes must be a Tensor[K, 5] of (batch index, x1, y1, x2, y2), got {tuple(boxes.shape)}")
    n, _, h, w = features.shape
    if masks.dtype != torch.bool or masks.shape != (boxes.shape[0], h, w):
        raise ValueError(
            f"masks must be a bool Tensor[K, H, W] = [{boxes.shape[0]}, {h}, {w}] (the feature "
            f"cells inside each region), got {masks.dtype} {tuple(masks.shape)}"
        )
    if not (features.device == boxes.device == masks.device):
        raise ValueError(
            f"features, boxes and masks must be on one device, got {features.device}, {boxes.device}, {masks.device}"
        )
    if len(output_size) != 2 or min(output_size) < 1:
        raise ValueError(f"output_size must be two positive integers, got {output_size}")
    if boxes.shape[0]:
        batch = boxes[:, 0]
        if bool(((batch < 0) | (batch >= n) | (batch != batch.floor())).any()):
            raise ValueError(f"boxes[:, 0] must be batch indices in 0..{n - 1}")


def check_r2p_inputs(scores, membership):
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        raise ValueError(f"scores must be a Tensor[R, C], got shape {tuple(getattr(scores, 'shape', ()))}")
    if not scores.is_floating_point():
        raise TypeError(f"scores must be floating point, got {scores.dtype}")
    if membership.dim() != 2 or membership.shape[1] != scores.shape[0]:
        raise ValueError(
            f"membership must be Tensor[A, R] with R = {scores.shape[0]} regions, got {tuple(membership.shape)}"
        )
    if membership.device != scores.device:
        raise ValueError(f"scores and membership must be on one device, got {scores.device}, {membership.device}")
    if scores.shape[0] == 0:
        raise ValueError("region_to_pixel needs at least one region")
    if scores.shape[1] == 0:
        raise ValueError("region_to_pixel needs at least one class: scores is Tensor[R, 0]")
    sparse = membership.layout == torch.sparse_csr
    kind = membership.values().dtype if sparse else membership.dtype
    if kind != torch.bool:
        raise TypeError(f"membership must be a bool tensor (dense or sparse CSR), got {kind}")
    if sparse and membership.col_indices().numel():
        low, high = torch.stack(torch.aminmax(membership.col_indices())).tolist()  # one pass, one sync
        if low < 0 or high >= scores.shape[0]:
            raise ValueError(
                f"membership's column indices must be regions 0..{scores.shape[0] - 1}, got {low if low < 0 else high}"
            )
