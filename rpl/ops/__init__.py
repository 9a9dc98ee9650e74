"""The paper's two layers, differentiable: free-form ROI pooling and region-to-pixel.

Each has Numba CPU kernels, Numba-CUDA kernels (used for CUDA tensors) and a plain PyTorch
reference (:mod:`rpl.ops.reference`) that the tests hold the kernels to.
"""

from . import reference
from .region_to_pixel import RegionToPixel, region_to_pixel
from .roi_pool import FreeFormRoIPool, free_form_roi_pool

__all__ = ["free_form_roi_pool", "FreeFormRoIPool", "region_to_pixel", "RegionToPixel", "reference"]
