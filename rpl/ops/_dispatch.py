"""Which implementation runs: Numba CPU kernels for CPU tensors, Numba-CUDA kernels for CUDA
tensors, the PyTorch reference where neither can (no usable CUDA in Numba)."""

from __future__ import annotations

import functools
import warnings

import torch


@functools.lru_cache(maxsize=1)
def _load_cuda():
    try:
        from . import _cuda
        from numba import cuda

        if not cuda.is_available():
            raise RuntimeError("numba.cuda.is_available() is False")
        return _cuda
    except Exception as e:  # any import or driver problem: fall back, but say so once
        warnings.warn(
            f"rpl.ops: Numba-CUDA kernels unavailable ({e}); using the PyTorch reference on the GPU",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def cuda_kernels():
    kernels = _load_cuda()
    if kernels is None:
        raise RuntimeError("Numba-CUDA kernels unavailable")
    return kernels


def compute_dtype(tensor: torch.Tensor):
    """The dtype the kernels compute in (float16/bfloat16 go through float32), or None when
    only the reference can handle this tensor."""
    if tensor.is_cuda and _load_cuda() is None:
        return None
    if tensor.dtype in (torch.float32, torch.float64):
        return tensor.dtype
    if tensor.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return None
