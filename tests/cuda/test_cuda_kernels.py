"""The Numba-CUDA kernels on device arrays, against the CPU kernels and the reference.

Runs in its own process: under Numba's CUDA simulator in CI (``NUMBA_ENABLE_CUDASIM=1``, set
before Numba is imported; ``make test`` does this), or on a real GPU. Sizes stay small because
the simulator runs every GPU thread as a Python thread.
"""

import numpy as np
import pytest
import torch
from op_cases import pool_case, r2p_case

from rpl.ops import _cpu, _cuda, reference
from rpl.ops._common import membership_csr, roi_bins

cuda = _cuda.cuda


def run_pool_kernels(features, boxes, masks, output_size=(3, 3)):
    """Forward and backward through the CUDA kernels; returns (out, argmax, grad_in, grad_out)."""
    n, c, h, w = features.shape
    rows, cols = roi_bins(boxes, output_size, 1 / 16, h, w)
    batch = boxes[:, 0].long().numpy()
    k = boxes.shape[0]
    out = cuda.to_device(np.zeros((k, c, *output_size), features.numpy().dtype))
    argmax = cuda.to_device(np.zeros((k, c, *output_size), np.int32))
    _cuda.roi_pool_forward(
        cuda.to_device(features.numpy()),
        cuda.to_device(batch),
        cuda.to_device(rows.numpy()),
        cuda.to_device(cols.numpy()),
        cuda.to_device(masks.numpy().view(np.uint8)),
        out,
        argmax,
    )
    grad_out = np.random.default_rng(0).normal(size=(k, c, *output_size)).astype(features.numpy().dtype)
    grad_in = cuda.to_device(np.zeros((n, c, h * w), grad_out.dtype))
    _cuda.roi_pool_backward(cuda.to_device(grad_out), argmax, cuda.to_device(batch), grad_in)
    return out.copy_to_host(), argmax.copy_to_host(), grad_in.copy_to_host().reshape(n, c, h, w), grad_out


@pytest.mark.parametrize(
    "kind", ["random", "ties", "empty bins", "one-cell regions", "whole image", "one region", "nan", "-inf"]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_roi_pool_kernels(kind, dtype):
    features, boxes, masks = pool_case(kind, np.random.default_rng(1), dtype)
    features, boxes, masks = features[:, :2].contiguous(), boxes[:6], masks[:6]
    out, argmax, grad_in, grad_out = run_pool_kernels(features, boxes, masks)
    # the CPU kernels on the same input
    rows, cols = roi_bins(boxes, (3, 3), 1 / 16, *features.shape[2:])
    cpu_out, cpu_argmax = np.zeros_like(out), np.zeros_like(argmax)
    batch = boxes[:, 0].long().numpy()
    _cpu.roi_pool_forward(
        features.permute(0, 2, 3, 1).contiguous().numpy(),
        batch,
        rows.numpy(),
        cols.numpy(),
        masks.numpy(),
        cpu_out,
        cpu_argmax,
    )
    np.testing.assert_array_equal(out, cpu_out)
    np.testing.assert_array_equal(argmax, cpu_argmax)
    ref = reference.free_form_roi_pool(features, boxes, masks, (3, 3))
    np.testing.assert_array_equal(out, ref.numpy())
    features = features.clone().requires_grad_()
    pooled = reference.free_form_roi_pool(features, boxes, masks, (3, 3))
    ref_grad = torch.zeros_like(features)  # every bin empty: no path to the features
    if pooled.grad_fn is not None:
        (ref_grad,) = torch.autograd.grad(pooled, features, torch.tensor(grad_out))
    np.testing.assert_allclose(grad_in, ref_grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["random", "ties", "one region", "whole image", "one atom", "nan", "-inf"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_region_to_pixel_kernels(kind, dtype):
    scores, member = r2p_case(kind, np.random.default_rng(2), dtype)
    scores, member = scores[:, :3].contiguous(), member[:12]
    indptr, indices = membership_csr(member)
    a, c = member.shape[0], scores.shape[1]
    out = cuda.to_device(np.zeros((a, c), scores.numpy().dtype))
    winners = cuda.to_device(np.zeros((a, c), np.int64))
    fill = scores.min().reshape(1).numpy()
    _cuda.region_to_pixel_forward(
        cuda.to_device(scores.numpy()),
        cuda.to_device(indptr.numpy()),
        cuda.to_device(indices.numpy()),
        cuda.to_device(fill),
        out,
        winners,
    )
    ref, ref_winners = reference.region_to_pixel(scores, member, return_winners=True)
    np.testing.assert_array_equal(out.copy_to_host(), ref.numpy())
    np.testing.assert_array_equal(winners.copy_to_host(), ref_winners.numpy())
    grad_out = np.random.default_rng(3).normal(size=(a, c)).astype(scores.numpy().dtype)
    grad = cuda.to_device(np.zeros_like(scores.numpy()))
    _cuda.region_to_pixel_backward(cuda.to_device(grad_out), winners, grad)
    scores = scores.clone().requires_grad_()
    (ref_grad,) = torch.autograd.grad(reference.region_to_pixel(scores, member), scores, torch.tensor(grad_out))
    np.testing.assert_allclose(grad.copy_to_host(), ref_grad.numpy(), rtol=1e-6, atol=1e-6)
