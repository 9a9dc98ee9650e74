"""Reading runs: checkpoints, what a run records of its data set, the trained model, label
maps and evaluation.

    python -m rpl evaluate runs/e2s2
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data import dataset_card
from ..files import write_json
from ..metrics import ConfusionMatrix, boundary_mask
from ..proposals import ProposalCache, ProposalConfig, RegionSet
from .config import LEGACY, TrainConfig, build_model
from .prepare import load_dataset, prepare, subset, training_images


def predict_labels(model, image: torch.Tensor, regions: RegionSet | None) -> torch.Tensor:
    """Label map (Tensor[H, W], 1..C) of one prepared image: region-based models label each
    pixel by its atom's arg-max class (Eq. 3, or Eq. 1 for the baseline), FCN per pixel."""
    with torch.no_grad():
        return model.predict(image, regions).cpu()


def predict_sample(
    model, cfg: TrainConfig, sample, cache: ProposalCache, device="cpu", ground_truth: bool = False
) -> np.ndarray:
    """Label map (int[H, W], 1..C) of a data set sample at its own resolution, with the RGB
    proposals of ``cache`` for region models (as at test time in the paper); ``ground_truth``
    adds the sample's ground-truth regions to them (a diagnosis, not a test)."""
    proposals = cache.get(sample.name, "rgb") if cfg.uses_regions else None
    image, _, regions = prepare(sample, proposals, cfg, False, training=False, ground_truth=ground_truth)
    pred = predict_labels(model, image.to(device), regions).numpy()
    if pred.shape != sample.label.shape:
        pred = resize_labels(pred, sample.label.shape)
    return pred


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


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint's contents (model, optimizer, epoch, seconds, config), read without running
    any code it might hold (``weights_only``); a file that is truncated, empty or not written by
    ``train`` raises a ValueError naming it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError... by the fault
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"{path} is not a readable checkpoint ({reason[:120]}): truncated, or not written by "
            "`python -m rpl train`; retrain the run or restore the file"
        ) from None
    missing = {"model", "optimizer", "epoch", "config"} - (set(state) if isinstance(state, dict) else set())
    if missing:
        raise ValueError(
            f"{path} is not an rpl checkpoint (no {', '.join(sorted(missing))}); retrain the run or restore the file"
        )
    return state


def describe_dataset(dataset) -> dict:
    """What a checkpoint records of its data set, so that the run works without it: the class
    names and the Selective Search settings its regions were made with."""
    return {"classes": list(dataset.classes), "proposals": dataclasses.asdict(ProposalConfig.of(dataset))}


def _described(state: dict) -> dict:
    """A checkpoint's ``dataset``, ``classes`` and ``proposals`` (a ProposalConfig); for one saved
    before checkpoints held them, its registered data set's."""
    dataset = state["config"]["dataset"]
    if "classes" in state:
        classes, proposals = state["classes"], state["proposals"]
    else:
        card = dataset_card(dataset)
        classes, proposals = list(card.classes), dataclasses.asdict(ProposalConfig.of(card.cls))
    proposals = ProposalConfig(**{**proposals, "strategies": tuple(proposals["strategies"])})
    return {"dataset": dataset, "classes": list(classes), "proposals": proposals}


def run_info(run: str | os.PathLike) -> dict:
    """A run's ``dataset``, ``classes`` (names of labels 1..C) and ``proposals`` (the
    :class:`~rpl.proposals.ProposalConfig` its regions were made with), from its checkpoint:
    what ``predict`` and ``evaluate`` need besides the model."""
    return _described(read_checkpoint(Path(run) / "checkpoint.pt"))


def load_run(run: str | os.PathLike, checkpoint: str | os.PathLike | None = None):
    """(model in eval mode, config) of a finished or checkpointed run, or of one of its kept
    epochs' ``checkpoint`` files."""
    run = Path(run)
    checkpoint = run / "checkpoint.pt" if checkpoint is None else Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint} not found: is {run} a run folder written by `python -m rpl train`?")
    state = read_checkpoint(checkpoint)
    cfg = TrainConfig(**{**LEGACY, **state["config"]})
    model = build_model(cfg, len(_described(state)["classes"]), pretrained=False)
    model.load_state_dict(state["model"])
    return model.eval(), cfg


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
    dataset: str | None = None,
) -> dict:
    """Global / class-average accuracy and mean IoU on all pixels and on 4-px boundaries, per-class
    accuracies; returned and, for the run's own test evaluation, written to ``run/metrics.json``.

    ``images``: evenly spaced images of the split (default: the run's ``test_images`` on the test
    split, 0 = all), on the training split taken from the images the run trained on;
    ``ground_truth``: add each image's ground-truth regions to its proposals (a diagnosis);
    ``checkpoint``: a kept epoch's file (``train(keep_epochs=True)``) instead of the last;
    ``dataset``: another data set with the run's classes (a name or a folder: the run's own
    folder moved, or new images labelled alike) instead of the one the run names.
    Other splits, image counts, checkpoints or data sets than the run's own test evaluation write
    no file."""
    model, cfg = load_run(run, checkpoint)
    own = dataset is None
    if not own:
        cfg = dataclasses.replace(cfg, dataset=dataset)
    model.to(device)
    info = run_info(run)
    dataset = training_images(cfg, data_root) if split == "train" else load_dataset(cfg, split, data_root)
    check_classes(info["classes"], dataset)
    dataset = subset(dataset, (cfg.test_images if split == "test" else 0) if images is None else images)
    cache = ProposalCache(dataset, info["proposals"], root=cache_root, kind=cfg.regions)  # the run's regions
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
