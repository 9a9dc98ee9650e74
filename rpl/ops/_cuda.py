"""Numba-CUDA kernels of the two layers, launched on PyTorch's current stream on PyTorch's own
memory (``__cuda_array_interface__``: no host copies).

Under ``NUMBA_ENABLE_CUDASIM=1`` the same kernels run on the CPU through Numba's simulator,
which is how CI tests them (on NumPy arrays via :func:`numba.cuda.to_device`).
"""

from __future__ import annotations

import math

import numpy as np

# numba-cuda 0.30 still calls numpy.row_stack, which NumPy 2.5 removed; without this alias no
# kernel compiles on a real GPU (AttributeError: module 'numpy' has no attribute 'row_stack').
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack

from numba import cuda  # noqa: E402

THREADS = 256
LOWEST = np.float32(-np.finfo(np.float32).max)


def _blocks(n: int) -> int:
    return max(1, math.ceil(n / THREADS))


@cuda.jit(device=True)
def _unravel(i, c_, oh, ow):
    """Thread index -> (region, channel, bin row, bin column) of a [K, C, oh, ow] output."""
    return i // (ow * oh * c_), (i // (ow * oh)) % c_, (i // ow) % oh, i % ow


@cuda.jit
def _roi_pool_forward(features, batch, rows, cols, masks, out, argmax):
    i = cuda.grid(1)
    k_, c_, oh, ow = out.shape
    if i >= k_ * c_ * oh * ow:
        return
    k, c, ph, pw = _unravel(i, c_, oh, ow)
    n = batch[k]
    width = features.shape[3]
    best = LOWEST
    best_idx = -1
    seen = False
    for h in range(rows[k, ph, 0], rows[k, ph, 1]):
        for w in range(cols[k, pw, 0], cols[k, pw, 1]):
            if masks[k, h, w]:
                seen = True
                v = features[n, c, h, w]
                # the first cell starts the max (-inf too); the first NaN wins, as torch.max
                if best_idx == -1 or v > best or (v != v and best == best):
                    best = v
                    best_idx = h * width + w
    out[k, c, ph, pw] = best if seen else 0
    argmax[k, c, ph, pw] = best_idx


@cuda.jit
def _roi_pool_backward(grad_out, argmax, batch, grad_in):
    i = cuda.grid(1)
    k_, c_, oh, ow = grad_out.shape
    if i >= k_ * c_ * oh * ow:
        return
    k, c, ph, pw = _unravel(i, c_, oh, ow)
    a = argmax[k, c, ph, pw]
    if a >= 0:
        cuda.atomic.add(grad_in, (batch[k], c, a), grad_out[k, c, ph, pw])


@cuda.jit
def _region_to_pixel_forward(scores, indptr, indices, fill, out, winners):
    i = cuda.grid(1)
    if i >= out.size:
        return
    a, c = i // out.shape[1], i % out.shape[1]
    start = indptr[a]
    end = indptr[a + 1]
    if start == end:
        out[a, c] = fill[0]
        winners[a, c] = -1
        return
    win = indices[start]
    best = scores[win, c]
    for q in range(start + 1, end):
        r = indices[q]
        v = scores[r, c]
        if v > best or (v == best and r < win) or (v != v and (best == best or r < win)):
            best = v
            win = r
    out[a, c] = best
    winners[a, c] = win


@cuda.jit
def _region_to_pixel_backward(grad_out, winners, grad_scores):
    i = cuda.grid(1)
    if i >= grad_out.size:
        return
    a, c = i // grad_out.shape[1], i % grad_out.shape[1]
    r = winners[a, c]
    if r >= 0:
        cuda.atomic.add(grad_scores, (r, c), grad_out[a, c])


# --- launchers on device arrays (NumPy-backed under the simulator, PyTorch memory on a GPU) ---


def roi_pool_forward(features, batch, rows, cols, masks, out, argmax, stream=0):
    _roi_pool_forward[_blocks(out.size), THREADS, stream](features, batch, rows, cols, masks, out, argmax)


def roi_pool_backward(grad_out, argmax, batch, grad_in, stream=0):
    _roi_pool_backward[_blocks(grad_out.size), THREADS, stream](grad_out, argmax, batch, grad_in)


def region_to_pixel_forward(scores, indptr, indices, fill, out, winners, stream=0):
    _region_to_pixel_forward[_blocks(out.size), THREADS, stream](scores, indptr, indices, fill, out, winners)


def region_to_pixel_backward(grad_out, winners, grad_scores, stream=0):
    _region_to_pixel_backward[_blocks(grad_out.size), THREADS, stream](grad_out, winners, grad_scores)


# --- PyTorch glue --------------------------------------------------------------------------


def torch_stream():
    """PyTorch's current CUDA stream as a Numba stream, so kernels order with PyTorch's work."""
    import torch

    return cuda.external_stream(torch.cuda.current_stream().cuda_stream)


def as_array(tensor):
    """A Numba device view of a CUDA tensor (bool tensors as uint8)."""
    import torch

    if tensor.dtype == torch.bool:
        tensor = tensor.view(torch.uint8)
    return cuda.as_cuda_array(tensor.detach())
