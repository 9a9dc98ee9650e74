"""Reading runs: checkpoints, what a run records of its data set, the trained model, label
maps and evaluation.

    python -m rpl evaluate runs/e2s2
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data import Sample, dataset_card, dataset_key
from ..files import write_json
from ..metrics import ConfusionMatrix, boundary_mask
from ..proposals import ProposalCache, ProposalConfig, selective_search
from .config import LEGACY, TrainConfig, build_model, read_checkpoint
from .prepare import load_dataset, prepare, subset, training_images


def predict_sample(
    model, cfg: TrainConfig, sample, cache: ProposalCache, device="cpu", ground_truth: bool = False
) -> np.ndarray:
    """Label map (int[H, W], 1..C) of a data set sample at its own resolution, with the RGB
    proposals of ``cache`` for region models (as at test time in the paper); ``ground_truth``
    adds the sample's ground-truth regions to them (a diagnosis, not a test)."""
    proposals = cache.get(sample.name, "rgb") if cfg.uses_regions else None
    image, _, regions = prepare(sample, proposals, cfg, False, training=False, ground_truth=ground_truth)
    pred = model.predict(image.to(device), regions).cpu().numpy()
    if pred.shape != sample.label.shape:
        pred = resize_labels(pred, sample.label.shape)
    return pred


def predict_image(run: Run, image: np.ndarray, size: int | None = None) -> np.ndarray:
    """Label map (int64[H, W], 1..C: ``run.classes``) of any RGB image (uint8[H, W, 3]) by an
    opened run (:func:`open_run`): RGB Selective Search with the run's settings for a region
    model, the image scaled to ``size`` px on its longer side (default: as the run trained)
    and the labels back to the image's size."""
    cfg = run.cfg
    if size is not None:
        if size < 1:
            raise ValueError(f"size {size}: give the longer side in pixels, at least 1")
        cfg = dataclasses.replace(cfg, image_size=size)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8[H, W, 3] RGB, got {image.dtype}{list(image.shape)}")
    sample = Sample(image=image, label=np.zeros(image.shape[:2], np.int64), name="")
    regions = selective_search(image, "rgb", **dataclasses.asdict(run.proposals)) if cfg.uses_regions else None
    tensor, _, regions = prepare(sample, regions, cfg, flip=False, training=False)
    device = next(run.model.parameters()).device
    labels = run.model.predict(tensor.to(device), regions).cpu().numpy()
    return resize_labels(labels, image.shape[:2]) if labels.shape != image.shape[:2] else labels


def resize_labels(labels: np.ndarray, shape) -> np.ndarray:
    """A label map resized to ``shape`` (h, w) by nearest neighbour, any number of classes."""
    return np.asarray(Image.fromarray(labels.astype(np.int32)).resize(tuple(shape)[::-1], Image.NEAREST)).astype(
        np.int64
    )


def check_classes(recorded, dataset) -> None:
    """ValueError unless the run's ``recorded`` class names are ``dataset``'s, in order."""
    if recorded is not None and list(recorded) != list(dataset.classes):
        raise ValueError(
            f"the run was trained on the classes {list(recorded)}, but its data set now has "
            f"{list(dataset.classes)}: restore the data set's classes, or train a new run"
        )


def check_trained_on(
    key: str | None,
    other: str,
    what: str = "the run",
    remedy: str = "(which its configuration names): pass its test images, evaluate(run, dataset=<data set object "
    "or folder>)",
) -> None:
    """ValueError if a run (``what``) recorded that it trained on the data set of key ``key`` (a
    data set object given to ``train``, which its configuration cannot name) and ``other`` is
    another data set's key; checkpoints without a key pass."""
    if key is not None and key != other:
        raise ValueError(f"{what} was trained on the data set {key!r}, not on {other!r} {remedy}")


def describe_dataset(dataset) -> dict:
    """What a checkpoint records of its data set, so that the run works without it: the class
    names, the Selective Search settings its regions were made with, and the data set's key
    (which images it was: ``SegmentationDataset.key``)."""
    return {
        "classes": list(dataset.classes),
        "proposals": dataclasses.asdict(ProposalConfig.of(dataset)),
        "dataset_key": dataset.key,
    }


def _described(state: dict) -> dict:
    """A checkpoint's ``dataset``, ``classes``, ``proposals`` (a ProposalConfig) and ``key`` (of
    the data set it trained on); for one saved before checkpoints held them, its registered data
    set's classes and proposals, and key None."""
    dataset = state["config"]["dataset"]
    if "classes" in state:
        classes, proposals = state["classes"], state["proposals"]
    else:
        card = dataset_card(dataset)
        classes, proposals = list(card.classes), dataclasses.asdict(ProposalConfig.of(card.cls))
    proposals = ProposalConfig(**{**proposals, "strategies": tuple(proposals["strategies"])})
    return {"dataset": dataset, "classes": list(classes), "proposals": proposals, "key": state.get("dataset_key")}


class Run(NamedTuple):
    """A trained run, read back: its model (in eval mode), its configuration, the names of its
    labels 1..C, the :class:`~rpl.proposals.ProposalConfig` its regions were made with, and the
    key of the data set it trained on (None in checkpoints older than issue 14)."""

    model: torch.nn.Module
    cfg: TrainConfig
    classes: list
    proposals: ProposalConfig
    dataset_key: str | None


def open_run(run: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> Run:
    """A finished or checkpointed run, or one of its kept epochs' ``checkpoint`` files, with
    what it records of its data set: all ``predict`` and ``evaluate`` need, in one read."""
    run = Path(run)
    checkpoint = run / "checkpoint.pt" if checkpoint is None else Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint} not found: is {run} a run folder written by `python -m rpl train`?")
    state = read_checkpoint(checkpoint)
    cfg = TrainConfig(**{**LEGACY, **state["config"]})
    described = _described(state)
    model = build_model(cfg, len(described["classes"]), pretrained=False)
    model.load_state_dict(state["model"])
    return Run(model.eval(), cfg, described["classes"], described["proposals"], described["key"])


def load_run(run: str | os.PathLike, checkpoint: str | os.PathLike | None = None):
    """(model in eval mode, config) of a run: :func:`open_run`'s first two."""
    model, cfg, *_ = open_run(run, checkpoint)
    return model, cfg


def evaluate(
    run: str | os.PathLike,
    split: str = "test",
    data_root=None,
    cache_root=None,
    progress: bool = True,
    device: str = "cpu",
    images: int | None = None,
    ground_truth: bool = False,
    checkpoint: str | os.PathLike | None = None,
    dataset=None,
) -> dict:
    """Global / class-average accuracy and mean IoU on all pixels and on 4-px boundaries, per-class
    accuracies; returned and, for the run's own test evaluation, written to ``run/metrics.json``.

    ``images``: evenly spaced images of the split (default: the run's ``test_images`` on the test
    split, 0 = all), on the training split taken from the images the run trained on;
    ``ground_truth``: add each image's ground-truth regions to its proposals (a diagnosis);
    ``checkpoint``: a kept epoch's file (``train(keep_epochs=True)``) instead of the last;
    ``dataset``: another data set with the run's classes instead of the one the run names: a
    name or a folder (the run's own folder moved, or new images labelled alike), or a data set
    object, whose images are evaluated whatever ``split`` says (a run trained on an object
    names no data set it could reopen).
    Other splits, image counts, checkpoints or data sets than the run's own test evaluation write
    no file."""
    opened = open_run(run, checkpoint)
    model, cfg = opened.model.to(device), opened.cfg
    own = dataset is None
    if isinstance(dataset, str):
        cfg = dataclasses.replace(cfg, dataset=dataset)
    if own:  # before opening it: the data set the configuration names may not be here
        check_trained_on(opened.dataset_key, dataset_key(cfg.dataset))
    if dataset is None or isinstance(dataset, str):
        dataset = training_images(cfg, data_root) if split == "train" else load_dataset(cfg, split, data_root)
    else:  # a data set object: the images to evaluate, whatever the split
        dataset = copy.copy(dataset)  # subset() below cuts its names
    check_classes(opened.classes, dataset)
    dataset = subset(dataset, (cfg.test_images if split == "test" else 0) if images is None else images)
    cache = ProposalCache(dataset, opened.proposals, root=cache_root, kind=cfg.regions)  # the run's regions
    every, boundary = ConfusionMatrix(dataset.num_classes), ConfusionMatrix(dataset.num_classes)
    started = time.monotonic()
    for index in tqdm(range(len(dataset)), desc=f"evaluate {split}", unit="img", disable=not progress):
        sample = dataset[index]
        pred = predict_sample(model, cfg, sample, cache, device, ground_truth)
        every.update(pred, sample.label)
        boundary.update(pred, sample.label, mask=boundary_mask(sample.label))
    metrics = {
        "split": split,
        "images": len(dataset),
        "seconds": time.monotonic() - started,
        "all": every.summary(dataset.classes),
        "boundary": boundary.summary(dataset.classes),
        "config": dataclasses.asdict(cfg),
    }
    if ground_truth and cfg.uses_regions:
        metrics["ground_truth_regions"] = True
    if split == "test" and images is None and not ground_truth and checkpoint is None and own:
        write_json(Path(run) / "metrics.json", metrics)
    return metrics
