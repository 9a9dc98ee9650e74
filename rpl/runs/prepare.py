"""A run's images as the network sees them: its data set and training images, resizing,
flips, the regions of each image at training and at test."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..data import open_dataset
from ..proposals import RegionSet, as_kind, ground_truth_segments
from .config import TrainConfig


def load_dataset(cfg: TrainConfig, split: str, data_root=None):
    """The run's data set: ``split`` is ``"train"`` or ``"test"`` (PASCAL Context's val)."""
    return open_dataset(cfg.dataset, split, data_root)


def training_images(cfg: TrainConfig, data_root=None):
    """The images a run trains on: its data set's training split, ``train_images`` of them
    evenly spaced when set."""
    return subset(load_dataset(cfg, "train", data_root), cfg.train_images)


def subset(dataset, count: int):
    """``dataset`` cut, in place, to ``count`` of its images evenly spaced (0: all of them)."""
    if count and count < len(dataset.names):
        step = len(dataset.names) / count
        dataset.names = [dataset.names[int(i * step)] for i in range(count)]
    return dataset


def resized_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """(height, width) of an h×w image with its longer side scaled to ``size`` (0: as it is)."""
    if not size:
        return h, w
    scale = size / max(h, w)
    return round(h * scale), round(w * scale)


def _resize(image, label, regions: RegionSet | None, size: int):
    """Longer side to ``size`` px: image bilinear, label and regions by nearest neighbour."""
    h, w = label.shape
    scale = size / max(h, w)
    nh, nw = resized_shape(h, w, size)
    image = np.array(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    rows = np.minimum((np.arange(nh) + 0.5) / scale, h - 1).astype(int)
    cols = np.minimum((np.arange(nw) + 0.5) / scale, w - 1).astype(int)
    if regions is not None:
        regions = regions.resampled(rows, cols)
    return image, label[rows][:, cols], regions


def prepare(
    sample, regions: RegionSet | None, cfg: TrainConfig, flip: bool, training: bool, ground_truth: bool | None = None
):
    """(image tensor [1, 3, H, W], label [H, W], RegionSet or None) for one image, as the model
    sees it (FCN runs without regions). ``regions`` are the image's proposals, of the run's kind
    or converted to it here (:func:`~rpl.proposals.as_kind`)."""
    image, label = sample.image, sample.label
    if regions is not None:  # a no-op for regions of the run's kind (ProposalCache(kind=cfg.regions))
        regions = as_kind(regions, cfg.regions)
    if cfg.image_size:
        image, label, regions = _resize(image, label, regions, cfg.image_size)
    if flip:
        image, label = image[:, ::-1], label[:, ::-1]
        if regions is not None:
            h, w = label.shape
            regions = regions.resampled(np.arange(h), np.arange(w)[::-1])
    label = np.ascontiguousarray(label)
    add_ground_truth = training if ground_truth is None else ground_truth
    segments = ground_truth_segments(label) if regions is not None and (training or add_ground_truth) else None
    if training and regions is not None:
        if cfg.proposal_iou > 0 and cfg.regions == "selective-search":  # the authors' subsampling
            iou = regions.ground_truth_iou(label, segments)
            if iou.any():  # an image with ground truth; keep its best proposal at least
                regions = regions.subset((iou >= cfg.proposal_iou) | (iou == iou.max()))
    if add_ground_truth and regions is not None:
        regions = regions.with_ground_truth(label, cfg.train_regions, segments=segments)
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    return tensor, label, regions
