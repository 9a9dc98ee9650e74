"""Runs: a configuration with its presets (:mod:`.config`), the images as the network sees
them (:mod:`.prepare`), frozen-backbone features (:mod:`.frozen`), the training loop with its
checkpoints and distributed ranks (:mod:`.loop`), and reading runs back — the model, label
maps, evaluation (:mod:`.inference`).

    python -m rpl train --preset cpu --model e2s2 --out runs/e2s2
    python -m rpl evaluate runs/e2s2
"""

from .config import LEGACY, PRESET_NAMES, PRESETS, REGION_KINDS, TrainConfig, build_model, config_differences
from .frozen import FrozenFeatures
from .inference import Run, evaluate, load_run, open_run, predict_image, predict_sample, read_checkpoint
from .loop import RUN_LOCK, distributed, train
from .prepare import load_dataset, prepare, training_images

__all__ = [
    "TrainConfig",
    "PRESETS",
    "PRESET_NAMES",
    "REGION_KINDS",
    "LEGACY",
    "build_model",
    "config_differences",
    "load_dataset",
    "training_images",
    "prepare",
    "FrozenFeatures",
    "train",
    "distributed",
    "RUN_LOCK",
    "evaluate",
    "load_run",
    "open_run",
    "Run",
    "read_checkpoint",
    "predict_sample",
    "predict_image",
]
