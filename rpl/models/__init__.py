"""Backbones and the region-based models."""

from .backbones import Backbone, mobilenet_v2, vgg16
from .e2s2 import E2S2, ModelConfig, RegionBatch, RegionScores
from .backbones import resample_cells
from .fcn import FCN

__all__ = [
    "Backbone",
    "mobilenet_v2",
    "vgg16",
    "E2S2",
    "ModelConfig",
    "RegionBatch",
    "RegionScores",
    "FCN",
    "resample_cells",
]
