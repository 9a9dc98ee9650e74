"""Numba CPU kernels of the two layers (parallel over regions / channels / atoms)."""

from __future__ import annotations

import numba
import numpy as np

LOWEST = np.float32(-np.finfo(np.float32).max)  # a placeholder: a bin's first cell inside the region replaces it


@numba.njit(parallel=True, cache=True)
def roi_pool_forward(features_nhwc, batch, rows, cols, masks, out, argmax):
    """out[k, c, ph, pw] = max of features[batch[k], c, h, w] over the cells (h, w) of bin
    (ph, pw) with masks[k, h, w]; argmax holds h * W + w, or -1 (and out 0) when the bin has no
    cell inside the region. A NaN propagates (the first in row-major order wins). Channels-last
    features make the inner loop contiguous."""
    _, h_, w_, c_ = features_nhwc.shape
    k_, oh, ow = rows.shape[0], rows.shape[1], cols.shape[1]
    for k in numba.prange(k_):
        n = batch[k]
        for ph in range(oh):
            for pw in range(ow):
                for c in range(c_):
                    out[k, c, ph, pw] = LOWEST
                    argmax[k, c, ph, pw] = -1
                seen = False
                for h in range(rows[k, ph, 0], rows[k, ph, 1]):
                    for w in range(cols[k, pw, 0], cols[k, pw, 1]):
                        if masks[k, h, w]:
                            first, seen = not seen, True
                            idx = h * w_ + w
                            for c in range(c_):
                                v = features_nhwc[n, h, w, c]
                                cur = out[k, c, ph, pw]
                                # the first cell starts the max (-inf too); the first NaN wins, as torch.max
                                if first or v > cur or (v != v and cur == cur):
                                    out[k, c, ph, pw] = v
                                    argmax[k, c, ph, pw] = idx
                if not seen:
                    for c in range(c_):
                        out[k, c, ph, pw] = 0
    return out, argmax


@numba.njit(parallel=True, cache=True)
def roi_pool_backward(grad_out, argmax, batch, grad_in):
    """grad_in[batch[k], c, argmax] += grad_out[k, c, ph, pw]; one channel per thread, so no
    two threads touch the same cell, and each cell sums in region order like torchvision."""
    k_, c_, oh, ow = grad_out.shape
    for c in numba.prange(c_):
        for k in range(k_):
            n = batch[k]
            for ph in range(oh):
                for pw in range(ow):
                    a = argmax[k, c, ph, pw]
                    if a >= 0:
                        grad_in[n, c, a] += grad_out[k, c, ph, pw]
    return grad_in


@numba.njit(parallel=True, cache=True)
def region_to_pixel_forward(scores, indptr, indices, fill, out, winners):
    """out[a, c] = max over regions r of atom a of scores[r, c] (lowest r on ties; a NaN
    propagates, the lowest NaN region winning)."""
    a_ = indptr.shape[0] - 1
    c_ = scores.shape[1]
    for a in numba.prange(a_):
        start, end = indptr[a], indptr[a + 1]
        if start == end:
            for c in range(c_):
                out[a, c] = fill
                winners[a, c] = -1
            continue
        r0 = indices[start]
        for c in range(c_):
            out[a, c] = scores[r0, c]
            winners[a, c] = r0
        for q in range(start + 1, end):
            r = indices[q]
            for c in range(c_):
                v = scores[r, c]
                cur, win = out[a, c], winners[a, c]
                if v > cur or (v == cur and r < win) or (v != v and (cur == cur or r < win)):
                    out[a, c] = v
                    winners[a, c] = r
    return out, winners


@numba.njit(parallel=True, cache=True)
def region_to_pixel_backward(grad_out, winners, grad_scores):
    """Eq. 5: grad_scores[winners[a, c], c] += grad_out[a, c]; one class per thread."""
    a_, c_ = grad_out.shape
    for c in numba.prange(c_):
        for a in range(a_):
            r = winners[a, c]
            if r >= 0:
                grad_scores[r, c] += grad_out[a, c]
    return grad_scores
