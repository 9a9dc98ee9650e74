"""Training and evaluation on real data: presets, the loop, checkpoints, resumption.

    python -m rpl train --preset cpu --model e2s2 --out runs/e2s2
    python -m rpl evaluate runs/e2s2

``images_per_step`` images per step (the paper: 10): through the backbone in one batch when
they have one size, then one at a time through the region layers and the loss, gradients
summed; SGD with momentum 0.9 and weight decay 5e-4, horizontal flips, the proposal colour
space rotating per image, ground-truth regions added at training. A checkpoint
is written atomically after every epoch; ``--resume`` continues from it and, being seeded per
epoch, ends where an uninterrupted run ends (up to float rounding).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from . import losses
from .data import check_dataset, dataset_card, open_dataset
from .metrics import ConfusionMatrix, boundary_mask
from .models import E2S2, FCN, ModelConfig, mobilenet_v2, vgg16
from .files import FileLock, atomic, remove_temporaries, write_json, write_text
from .proposals import COLOR_SPACES, ProposalCache, ProposalConfig, RegionSet, ground_truth_segments
from .proposals import cache_root as cache_root_of

__all__ = ["TrainConfig", "PRESETS", "train", "distributed", "evaluate", "load_run", "read_checkpoint", "prepare",
           "predict_labels", "predict_sample", "run_info"]

MODELS = ("e2s2", "baseline", "fcn")
BACKBONES = ("mobilenet_v2", "vgg16")
PRESET_NAMES = ("quick", "cpu", "ablation", "paper")  # PRESETS, below
REGION_KINDS = ("selective-search", "superpixels", "rectangles")
# Ground-truth regions at training (RegionSet.with_ground_truth): the authors' unions of
# superpixels, the exact segments (rpl before issue 12), or, for regions=rectangles only, the
# segments' bounding boxes (Table 4's purely rectangular row).
TRAIN_REGIONS = ("superpixels", "exact", "boxes")
# Settings only the region models read: an FCN run does not depend on them.
REGION_SETTINGS = ("pooling", "combine", "order", "neck", "head", "dropout", "regions", "color_spaces", "mask",
                   "train_regions", "proposal_iou")  # fmt: skip
# What a run saved before these settings existed was trained with (read by load_run).
LEGACY = {"alignment": "legacy", "train_regions": "exact", "proposal_iou": 0.0, "mask": "cells", "output_stride": 16,
          "dropout": 0.5}  # fmt: skip


@dataclass
class TrainConfig:
    """Everything a run depends on; saved with its checkpoints."""

    preset: str = "cpu"
    dataset: str = "siftflow"
    model: str = "e2s2"
    backbone: str = "mobilenet_v2"
    pooling: str = "free-form"
    combine: str = "tied"
    order: str = "max-softmax"
    neck: int = 128
    head: int = 512
    regions: str = "selective-search"
    loss: str = "balanced"
    epochs: int = 5
    lr: float = 3e-4
    lr_drop_epoch: int = 4
    head_lr_mult: float = 10.0
    images_per_step: int = 10
    momentum: float = 0.9
    weight_decay: float = 5e-4
    flip: bool = True
    color_spaces: tuple = COLOR_SPACES
    image_size: int = 0
    train_images: int = 0
    test_images: int = 0
    seed: int = 0
    weights: str = "imagenet"
    freeze_backbone: bool = False
    precision: str = "fp32"
    # Issue 12: the authors' training regions and the feature grid (ModelConfig: mask, alignment).
    mask: str = "cells"
    alignment: str = "centred"
    train_regions: str = "superpixels"
    proposal_iou: float = 0.1
    output_stride: int = 16
    dropout: float = 0.5  # after fc6 and fc7 (ModelConfig.dropout)
    # The first head_epochs of the epochs train the layers after the backbone only, on its cached
    # features (the frozen preset's cache), before the whole network: our stand-in for the
    # authors' fc6/fc7, which start from ImageNet where ours start random.
    head_epochs: int = 0

    def __post_init__(self):
        self._check_numbers()
        if self.preset not in PRESET_NAMES:
            raise ValueError(f"preset must be one of {PRESET_NAMES}, got {self.preset!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if not self.color_spaces or any(c not in COLOR_SPACES for c in self.color_spaces):
            raise ValueError(f"color_spaces must be a comma-separated subset of {','.join(COLOR_SPACES)}, "
                             f"got {','.join(self.color_spaces)!r}")  # fmt: skip
        self.dataset = check_dataset(self.dataset)  # a data set folder as its absolute path
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.regions not in REGION_KINDS:
            raise ValueError(f"regions must be one of {REGION_KINDS}, got {self.regions!r}")
        if self.weights not in ("imagenet", "none"):
            raise ValueError(f"weights must be 'imagenet' or 'none' (random initialisation), got {self.weights!r}")
        if self.loss not in ("balanced", "unbalanced"):
            raise ValueError(f"loss must be 'balanced' or 'unbalanced', got {self.loss!r}")
        if self.train_regions not in TRAIN_REGIONS:
            raise ValueError(f"train_regions must be one of {TRAIN_REGIONS}, got {self.train_regions!r}")
        if self.train_regions == "boxes" and self.regions != "rectangles":
            raise ValueError(f"train_regions=boxes needs regions=rectangles (purely rectangular), got "
                             f"regions={self.regions}")  # fmt: skip
        if not 0 <= self.proposal_iou <= 1:
            raise ValueError(f"proposal_iou must be in [0, 1] (0: keep every proposal), got {self.proposal_iou!r}")
        if self.output_stride not in (8, 16) or (self.backbone == "vgg16" and self.output_stride != 16):
            raise ValueError(f"output_stride must be 16, or 8 with mobilenet_v2, got {self.output_stride!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16' (autocast), got {self.precision!r}")
        if self.freeze_backbone and self.model == "fcn":
            raise ValueError("freeze_backbone is for the region models, not model=fcn: a frozen FCN is a linear probe")
        if self.freeze_backbone and self.weights == "none":
            raise ValueError("freeze_backbone needs weights=imagenet: a frozen random backbone differs per seed")
        if self.head_epochs and (self.model == "fcn" or self.freeze_backbone or self.weights == "none"
                                 or self.head_epochs >= self.epochs):  # fmt: skip
            raise ValueError(f"head_epochs={self.head_epochs}: the first epochs of a region model that then fine-tunes "
                             "its ImageNet backbone, fewer than epochs (not with model=fcn, freeze_backbone or "
                             "weights=none)")  # fmt: skip
        self.color_spaces = tuple(self.color_spaces)
        self.model_config()  # validates pooling/combine/order

    def _check_numbers(self) -> None:
        """Every numeric setting in its range; the error names the key, the value and the range."""
        at_least = {"epochs": 1, "images_per_step": 1, "head": 1, "lr_drop_epoch": 0, "train_images": 0,
                    "test_images": 0, "image_size": 0, "neck": 0, "seed": 0, "head_epochs": 0}  # fmt: skip
        for key, low in at_least.items():
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        for key in ("lr", "head_lr_mult", "weight_decay", "momentum"):
            value = getattr(self, key)
            positive = key in ("lr", "head_lr_mult")
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (positive and value == 0):
                raise ValueError(f"{key} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")

    def model_config(self) -> ModelConfig:
        if self.model == "baseline":  # Fig. 2b: box pooling, region loss, Eq. 1 at test time
            return ModelConfig("box", self.combine, "softmax-max", self.neck, self.head, self.dropout,
                               alignment=self.alignment)  # fmt: skip
        return ModelConfig(self.pooling, self.combine, self.order, self.neck, self.head, self.dropout, mask=self.mask,
                           alignment=self.alignment)  # fmt: skip

    def with_overrides(self, pairs) -> "TrainConfig":
        """Apply ``key=value`` strings (``--set``), parsed by each field's type."""
        types = {f.name: f.type for f in dataclasses.fields(self)}
        changes = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or key not in types:
                raise ValueError(f"--set {pair!r}: expected key=value with key in {sorted(types)}")
            kind = types[key]
            if kind == "bool":
                if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
                    raise ValueError(f"--set {pair!r}: {key} takes true or false (1/0, yes/no)")
                changes[key] = value.lower() in ("1", "true", "yes")
            elif kind in ("int", "float"):
                try:
                    changes[key] = int(value) if kind == "int" else float(value)
                except ValueError:
                    raise ValueError(f"--set {pair!r}: {key} takes {'an integer' if kind == 'int' else 'a number'}, "
                                     f"got {value!r}") from None  # fmt: skip
            elif kind == "tuple":
                changes[key] = tuple(v for v in value.split(",") if v)
            else:
                changes[key] = value
        return dataclasses.replace(self, **changes)


PRESETS = {
    # CI and the notebooks' quick mode: a handful of images, one epoch, minutes.
    "quick": TrainConfig(preset="quick", neck=32, head=64, epochs=1, lr_drop_epoch=1, images_per_step=5,
                         color_spaces=("rgb",), train_images=10, test_images=5),  # fmt: skip
    # The default: ImageNet MobileNetV2 at stride 16 on real SIFT Flow, 2 CPU cores; the paper's
    # model (region + box pooling, separate weights: Table 4's best row).
    "cpu": TrainConfig(preset="cpu", pooling="both", combine="separate"),
    # Ablations (Tables 1, 4, Sec. 4.3) on 2 cores: the cpu preset's settings but free-form
    # pooling with tied weights (TrainConfig's defaults; each row sets its own) and the ImageNet
    # backbone frozen, its features computed once per image and flip (cache/features); neck, fc
    # layers and classifier train end to end through both rpl layers.
    # Ten epochs (seven, then three at a tenth of the rate): three underfit (issue 12's learning
    # curve, results/learning_curve_lever_25-epochs.json); ~30 min a run on one core.
    "ablation": TrainConfig(preset="ablation", freeze_backbone=True, epochs=10, lr_drop_epoch=7),
    # The paper: VGG-16, longer side 600 px, 30 epochs (20 at 1e-3, 10 at 1e-4), region + box
    # pooling with separate weights, fc6/fc7 from ImageNet.
    "paper": TrainConfig(preset="paper", backbone="vgg16", pooling="both", combine="separate", neck=0,
                         head=4096, epochs=30, lr_drop_epoch=20, head_lr_mult=1.0, image_size=600),  # fmt: skip
}


def load_dataset(cfg: TrainConfig, split: str, data_root=None):
    """The run's data set: ``split`` is ``"train"`` or ``"test"`` (PASCAL Context's val)."""
    return open_dataset(cfg.dataset, split, data_root)


def config_differences(saved: dict, cfg: TrainConfig) -> str:
    """The settings (``key: saved -> now``, comma-separated; empty when none) in which a saved
    run configuration (a run's ``config.json``, a checkpoint's or a results file's) differs from
    ``cfg``. Settings it lacks read as :data:`LEGACY` (what runs saved before them were trained
    with) or the defaults; an FCN's region settings do not count."""
    old = dataclasses.asdict(TrainConfig(**{**LEGACY, **saved}))
    now = dataclasses.asdict(cfg)
    return ", ".join(f"{k}: {old[k]} -> {now[k]}" for k in now
                     if old[k] != now[k] and not (cfg.model == "fcn" and k in REGION_SETTINGS))  # fmt: skip


def training_images(cfg: TrainConfig, data_root=None):
    """The images a run trains on: its data set's training split, ``train_images`` of them
    evenly spaced when set."""
    return _subset(load_dataset(cfg, "train", data_root), cfg.train_images)


def build_model(cfg: TrainConfig, num_classes: int, pretrained: bool = True):
    weights = "imagenet" if pretrained and cfg.weights == "imagenet" else None
    if cfg.backbone == "mobilenet_v2":
        backbone = mobilenet_v2(weights, cfg.output_stride)
    else:
        backbone = vgg16(weights)
    if cfg.model == "fcn":
        return FCN(backbone, num_classes, cfg.alignment)
    return E2S2(backbone, num_classes, cfg.model_config())


def _resized(h: int, w: int, size: int) -> tuple[int, int]:
    """(height, width) of an h×w image with its longer side scaled to ``size`` (0: as it is)."""
    if not size:
        return h, w
    scale = size / max(h, w)
    return round(h * scale), round(w * scale)


def _resize(image, label, regions: RegionSet | None, size: int):
    """Longer side to ``size`` px: image bilinear, label and regions by nearest neighbour."""
    h, w = label.shape
    scale = size / max(h, w)
    nh, nw = _resized(h, w, size)
    image = np.array(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    rows = np.minimum((np.arange(nh) + 0.5) / scale, h - 1).astype(int)
    cols = np.minimum((np.arange(nw) + 0.5) / scale, w - 1).astype(int)
    if regions is not None:
        regions = regions.resampled(rows, cols)
    return image, label[rows][:, cols], regions


def predict_labels(model, image: torch.Tensor, regions: RegionSet | None) -> torch.Tensor:
    """Label map (Tensor[H, W], 1..C) of one prepared image: region-based models label each
    pixel by its atom's arg-max class (Eq. 3, or Eq. 1 for the baseline), FCN per pixel."""
    with torch.no_grad():
        if isinstance(model, FCN):
            return model.predict(image).cpu()
        features = model.features(image)
        batch = model.region_batch(regions, features.shape[-2:]).to(image.device)
        atoms = model.atom_scores(model.region_scores(features, batch), batch)
        return (atoms.argmax(1) + 1)[batch.cells].cpu()


def predict_sample(model, cfg: TrainConfig, sample, cache: ProposalCache, device="cpu",
                   ground_truth: bool = False) -> np.ndarray:  # fmt: skip
    """Label map (int[H, W], 1..C) of a data set sample at its own resolution, with the RGB
    proposals of ``cache`` for region models (as at test time in the paper); ``ground_truth``
    adds the sample's ground-truth regions to them (a diagnosis, not a test)."""
    proposals = None if cfg.model == "fcn" else cache.get(sample.name, "rgb")
    image, _, regions = prepare(sample, proposals, cfg, False, training=False, ground_truth=ground_truth)
    pred = predict_labels(model, image.to(device), regions).numpy()
    if pred.shape != sample.label.shape:
        pred = np.asarray(Image.fromarray(pred.astype(np.uint8)).resize(sample.label.shape[::-1], Image.NEAREST))
    return pred


def prepare(sample, regions: RegionSet | None, cfg: TrainConfig, flip: bool, training: bool,
            ground_truth: bool | None = None):  # fmt: skip
    """(image tensor [1, 3, H, W], label [H, W], RegionSet or None) for one image, as the model
    sees it (FCN runs without regions)."""
    image, label = sample.image, sample.label
    if regions is not None and cfg.regions == "superpixels":
        regions = RegionSet.from_superpixels(regions.superpixels)
    elif regions is not None and cfg.regions == "rectangles":
        regions = RegionSet.from_boxes(regions.boxes, regions.shape)
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


class FrozenFeatures:
    """Backbone features of every image of ``dataset``, plain and flipped, for runs with
    ``freeze_backbone``: computed once (``features[index, flipped]``) into a memory-mapped file
    under ``<cache>/features/``, written under a temporary name and renamed when complete.
    Images of several sizes share one array padded to the largest grid; a sidecar file
    (``<name>.grids.npy``) then holds each image's grid, and reads are cut to it."""

    def __init__(self, model, dataset, cfg: TrainConfig, cache_root=None, progress: bool = True, device="cpu"):
        names = "\n".join(dataset.names).encode()
        stride = "" if cfg.output_stride == 16 else f"-os{cfg.output_stride}"
        key = f"{cfg.backbone}{stride}-{cfg.weights}-size{cfg.image_size}-{hashlib.sha1(names).hexdigest()[:12]}"
        path = cache_root_of(cache_root) / "features" / dataset.key / f"{dataset.split}-{key}.npy"
        grids = path.with_name(f"{path.stem}.grids.npy")
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(path.with_name(f".{path.name}.lock"), blocking=True):  # one computes, others wait
                if not path.is_file():
                    remove_temporaries(path)
                    self._compute(model.backbone, dataset, cfg, path, grids, progress, device)
        self.array = np.load(path, mmap_mode="r")
        self.grids = np.load(grids) if grids.is_file() else None
        self.path = path

    @staticmethod
    def _compute(backbone, dataset, cfg, path: Path, grids_path: Path, progress: bool, device) -> None:
        backbone.eval()
        shapes, by_size = [], {}
        with torch.no_grad():
            for name in dataset.names:  # each image's feature grid, from its size alone
                with Image.open(dataset.image_path(name)) as im:
                    size = _resized(im.height, im.width, cfg.image_size)
                if size not in by_size:
                    by_size[size] = tuple(backbone(torch.zeros(1, 3, *size, device=device)).shape[1:])
                shapes.append(by_size[size])
        channels = shapes[0][0]
        grids = np.array([s[1:] for s in shapes], np.int64)
        if len(by_size) > 1:  # written before the features: a reader that finds those finds it
            with atomic(grids_path) as tmp, open(tmp, "wb") as f:
                np.save(f, grids)
        else:
            grids_path.unlink(missing_ok=True)
        with atomic(path) as tmp, torch.no_grad():
            shape = (len(dataset), 2, channels, *(int(n) for n in grids.max(0)))
            array = np.lib.format.open_memmap(tmp, "w+", np.float32, shape)
            for index in tqdm(range(len(dataset)), desc="backbone features", unit="img", disable=not progress):
                sample = dataset[index]
                for flip in (False, True):
                    image = prepare(sample, None, cfg, flip, training=False)[0]
                    out = backbone(image.to(device))[0].cpu().numpy()
                    if out.shape != shapes[index]:
                        raise ValueError(f"{sample.name}: features {out.shape}, expected {shapes[index]} from the "
                                         f"size of {dataset.image_path(sample.name)}")  # fmt: skip
                    array[index, int(flip), :, : out.shape[1], : out.shape[2]] = out
            array.flush()
            del array

    def __getitem__(self, key) -> torch.Tensor:
        index, flip = key
        h, w = self.array.shape[-2:] if self.grids is None else self.grids[index]
        return torch.from_numpy(np.array(self.array[index, int(flip), :, :h, :w]))[None]


def _loss(model, cfg: TrainConfig, features, label, regions, class_weights):
    """One image's loss from its features (region models: what ROI pooling reads; FCN: its
    logits [1, C, H, W])."""
    weights = class_weights if cfg.loss == "balanced" else None
    if cfg.model == "fcn":  # every pixel its own atom
        logits = features[0].flatten(1).T
        return losses.pixel_loss_per_pixel(logits, torch.from_numpy(label.ravel()).to(features.device), weights)
    batch = model.region_batch(regions, features.shape[-2:]).to(features.device)
    scores = model.region_scores(features, batch)
    if cfg.model == "baseline":
        labels = torch.from_numpy(losses.region_labels(regions, label)).to(features.device)
        return losses.region_loss(scores, labels)
    atoms = model.atom_scores(scores, batch)
    return losses.pixel_loss(atoms, batch.atom_labels, batch.atom_pixels, weights,
                             probabilities=cfg.order == "softmax-max")  # fmt: skip


def _step_features(model, cfg: TrainConfig, images, cached):
    """Each image's features, the images of one size through the network in one channels-last
    batch (benchmarks/backbone_batching.py; the layers after the backbone take one image at a
    time)."""
    if cached is not None:  # frozen backbone: its cached output, then the neck
        run, inputs, layout = model.project, [c.to(images[0].device) for c in cached], torch.contiguous_format
    else:
        run, inputs, layout = model if cfg.model == "fcn" else model.features, images, torch.channels_last
    if len({tuple(x.shape) for x in inputs}) == 1:
        return list(run(torch.cat(inputs).contiguous(memory_format=layout)).split(1))
    return [run(x.contiguous(memory_format=layout)) for x in inputs]


def _atomic_save(obj, path: Path) -> None:
    with atomic(path) as tmp:
        torch.save(obj, tmp)


def _subset(dataset, count: int):
    if count and count < len(dataset.names):
        step = len(dataset.names) / count
        dataset.names = [dataset.names[int(i * step)] for i in range(count)]
    return dataset


class _TrainingStep(nn.Module):
    """A step's images' summed loss as a module's forward, so DistributedDataParallel sees the
    forward and synchronises the gradients of the backward that follows.

    ``forward(images, labels, regions, seeds, cached=None)``: lists, one entry per image;
    dropout is seeded with the image's seed before its head runs, so an image gets the same
    dropout whichever images share its step or rank."""

    def __init__(self, model, cfg: TrainConfig, class_weights):
        super().__init__()
        self.model, self.cfg, self.class_weights = model, cfg, class_weights

    def forward(self, images, labels, regions, seeds, cached=None):
        with torch.autocast(images[0].device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16"):
            features = _step_features(self.model, self.cfg, images, cached)
            total = 0
            for feature, label, image_regions, seed in zip(features, labels, regions, seeds):
                torch.manual_seed(seed)
                total = total + _loss(self.model, self.cfg, feature, label, image_regions, self.class_weights)
            return total


def distributed(device: str = "cpu") -> tuple[int, int, str]:
    """(rank, world size, device) of this process. Under ``torchrun`` (``WORLD_SIZE`` > 1) the
    process group is initialised once (NCCL for CUDA, gloo on CPU) and each rank takes the
    GPU ``LOCAL_RANK``; otherwise (0, 1, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    import torch.distributed as dist

    cuda = device.startswith("cuda")
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # long enough for rank 0 to build a frozen-feature cache while the others wait
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=4))
    return dist.get_rank(), dist.get_world_size(), device


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def train(cfg: TrainConfig, out: str | os.PathLike, resume: bool = False, data_root=None,
          cache_root=None, progress: bool = True, device: str = "cpu", keep_epochs: bool = False) -> dict:  # fmt: skip
    """Train a model; returns the summary written to ``out/train.json``. ``keep_epochs`` also
    keeps every epoch's checkpoint, as ``out/epochs/epoch<n>.pt`` (for a learning curve:
    :func:`rpl.diagnostics.learning_curve`).

    Under ``torchrun --nproc-per-node N`` each step's ``images_per_step`` images are shared
    out among the N ranks (image k of a step to rank k mod N), each scales its loss by
    N / images_per_step and DistributedDataParallel averages the gradients over the ranks, so a
    step equals the single-process step; rank 0 alone writes the
    checkpoint and the log. Dropout is seeded per image, wherever the image is processed.

    The run folder is locked for as long as the call trains (``out/.train.lock``): a second
    process training into it fails at once, naming the first."""
    rank, world, device = distributed(device)
    out = Path(out)
    created = not out.exists()
    lock = _lock_run(out) if rank == 0 else None
    held = [p for p in out.iterdir() if p.name != RUN_LOCK] if out.exists() else []  # what was there before
    try:
        return _train(cfg, out, bool(held), resume, data_root, cache_root, progress, device, keep_epochs, rank, world)
    except BaseException:
        if lock is not None and not held and not (out / "checkpoint.pt").exists():
            _remove_contents(out, created)  # failed before its first epoch: leave nothing to --resume
        raise
    finally:
        if lock is not None:
            lock.release()


def _remove_contents(out: Path, folder_too: bool) -> None:
    """What a training call writes before its first checkpoint, and the folder if it made it;
    the original error stays the one raised."""
    try:
        for name in ("config.json", "log.jsonl", RUN_LOCK):
            (out / name).unlink(missing_ok=True)
        remove_temporaries(out / "checkpoint.pt")
        if folder_too and not any(out.iterdir()):
            out.rmdir()
    except OSError:
        pass


RUN_LOCK = ".train.lock"


def _lock_run(out: Path) -> FileLock:
    """The lock of run folder ``out``, held until released (or the process dies);
    FileExistsError if another process holds it."""
    lock = FileLock(out / RUN_LOCK)
    if not lock.acquire():
        raise FileExistsError(f"{out}: another process (pid {lock.holder()}) is training this run; wait for it to "
                              "finish, or choose another --out")  # fmt: skip
    return lock


def _train(cfg, out: Path, held: bool, resume, data_root, cache_root, progress, device, keep_epochs, rank,
           world) -> dict:  # fmt: skip
    checkpoint = out / "checkpoint.pt"
    if held and not resume:
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    _barrier(world)  # every rank has looked before rank 0 writes
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        remove_temporaries(checkpoint)  # a killed save's: the run is locked, no writer is live
    torch.manual_seed(cfg.seed)
    dataset = training_images(cfg, data_root)
    cache = ProposalCache(dataset, root=cache_root)
    class_weights = losses.balanced_weights(load_dataset(cfg, "train", data_root).class_pixel_counts())
    model = build_model(cfg, dataset.num_classes).to(device)
    frozen = None
    if cfg.freeze_backbone or cfg.head_epochs:
        model.backbone.requires_grad_(not cfg.freeze_backbone)  # head_epochs: no gradient reaches it from the cache
        if rank == 0:  # computes the cache if missing, while the other ranks wait
            frozen = FrozenFeatures(model, dataset, cfg, cache_root, progress, device)
        _barrier(world)
        if frozen is None:
            frozen = FrozenFeatures(model, dataset, cfg, cache_root, False, device)
    if not cfg.freeze_backbone:  # channels last, as the step's batches (_step_features)
        model.backbone.to(memory_format=torch.channels_last)
    new = [p for n, p in model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    old = [p for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad]
    optimizer = torch.optim.SGD(
        [{"params": old, "lr": cfg.lr}, {"params": new, "lr": cfg.lr * cfg.head_lr_mult}],
        lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
    )  # fmt: skip
    start_epoch, seconds = 0, 0.0
    log_path = out / "log.jsonl"
    if resume and checkpoint.exists():
        state = read_checkpoint(checkpoint)
        changed = config_differences(state["config"], cfg)
        if changed:
            raise ValueError(f"{checkpoint} was trained with another configuration ({changed})")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])  # follows the parameters' device
        start_epoch, seconds = state["epoch"], state["seconds"]
        if rank == 0:
            lines = log_path.read_text().splitlines() if log_path.exists() else []
            write_text(log_path, "".join(l + "\n" for l in lines if json.loads(l)["epoch"] < start_epoch))
    elif rank == 0 and log_path.exists():
        log_path.unlink()
    if rank == 0:
        write_json(out / "config.json", dataclasses.asdict(cfg))
    step_module = _TrainingStep(model, cfg, class_weights)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_module = DistributedDataParallel(step_module, device_ids=[device] if device.startswith("cuda") else None,
                                              find_unused_parameters=cfg.head_epochs > 0)  # fmt: skip
    n = len(dataset.names)
    for epoch in range(start_epoch, cfg.epochs):
        factor = 1.0 if epoch < cfg.lr_drop_epoch else 0.1
        for group, base in zip(optimizer.param_groups, (cfg.lr, cfg.lr * cfg.head_lr_mult)):
            group["lr"] = base * factor
        from_cache = frozen is not None and (cfg.freeze_backbone or epoch < cfg.head_epochs)
        generator = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        order = torch.randperm(n, generator=generator).tolist()
        flips = (torch.rand(n, generator=generator) < 0.5).tolist()
        model.train()
        optimizer.zero_grad()
        started, running, done = time.monotonic(), [], 0
        bar = tqdm(total=n, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="img", disable=not progress or rank != 0)
        log = log_path.open("a") if rank == 0 else None
        for step_start in range(0, n, cfg.images_per_step):
            chunk = order[step_start : step_start + cfg.images_per_step]
            mine = chunk[rank::world]
            weight = world / len(chunk)  # DDP averages over ranks: the step's gradient is the mean over chunk
            if not mine:  # more ranks than images left: a zero-weight pass keeps the collective in step
                mine, weight = chunk[:1], 0.0
            step_loss = torch.zeros((), dtype=torch.float64, device=device)  # NCCL reduces CUDA tensors only
            images, labels, regions, seeds, cached = [], [], [], [], []
            for index in mine:
                flip = cfg.flip and flips[index]
                space = cfg.color_spaces[(index + epoch) % len(cfg.color_spaces)]
                proposals = None if cfg.model == "fcn" else cache.get(dataset.names[index], space)
                image, label, image_regions = prepare(dataset[index], proposals, cfg, flip, training=True)
                images.append(image.to(device))
                labels.append(label)
                regions.append(image_regions)
                seeds.append((cfg.seed * 100003 + epoch) * 1000003 + index)  # dropout, per image
                if from_cache:
                    cached.append(frozen[index, flip])
            loss = step_module(images, labels, regions, seeds, cached or None) * weight
            loss.backward()
            step_loss += loss.item() / world
            if world > 1:
                torch.distributed.all_reduce(step_loss)
            optimizer.step()
            optimizer.zero_grad()
            done += len(chunk)
            bar.update(len(chunk))
            running.append(step_loss.item())
            rate = done / (time.monotonic() - started)
            bar.set_postfix(loss=f"{np.mean(running[-20:]):.3f}", img_s=f"{rate:.2f}")
            if log is not None:
                log.write(json.dumps({"epoch": epoch, "step": step_start // cfg.images_per_step,
                                      "loss": step_loss.item(), "images_per_s": rate,
                                      "lr": optimizer.param_groups[0]["lr"]}) + "\n")  # fmt: skip
                log.flush()
        if log is not None:
            log.close()
        bar.close()
        seconds += time.monotonic() - started
        if rank == 0:
            _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                          "seconds": seconds, "config": dataclasses.asdict(cfg), **_describe(dataset)}, checkpoint)
            if keep_epochs:  # a second name for this epoch's file: the next save replaces only the first
                kept = out / "epochs" / f"epoch{epoch + 1:03d}.pt"
                kept.parent.mkdir(exist_ok=True)
                kept.unlink(missing_ok=True)
                os.link(checkpoint, kept)
    summary = {"config": dataclasses.asdict(cfg), "train_images": n, "epochs": cfg.epochs, "ranks": world,
               "train_seconds": seconds, "images_per_s": n * cfg.epochs / max(seconds, 1e-9)}  # fmt: skip
    if rank == 0:
        write_json(out / "train.json", summary)
    _barrier(world)
    return summary


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
        raise ValueError(f"{path} is not a readable checkpoint ({reason[:120]}): truncated, or not written by "
                         "`python -m rpl train`; retrain the run or restore the file") from None  # fmt: skip
    missing = {"model", "optimizer", "epoch", "config"} - (set(state) if isinstance(state, dict) else set())
    if missing:
        raise ValueError(f"{path} is not an rpl checkpoint (no {', '.join(sorted(missing))}); "
                         "retrain the run or restore the file")  # fmt: skip
    return state


def _describe(dataset) -> dict:
    """What a checkpoint records of its data set, so that the run works without it: the class
    names and the Selective Search settings its regions were made with."""
    return {"classes": list(dataset.classes), "proposals": dataclasses.asdict(ProposalConfig.of(dataset))}


def run_info(run: str | os.PathLike) -> dict:
    """A run's ``dataset``, ``classes`` (names of labels 1..C) and ``proposals`` (the
    :class:`~rpl.proposals.ProposalConfig` of its regions, as a dict), from its checkpoint;
    for a run saved before checkpoints held them, from its registered data set."""
    state = read_checkpoint(Path(run) / "checkpoint.pt")
    dataset = state["config"]["dataset"]
    if "classes" not in state:
        card = dataset_card(dataset)
        state |= {"classes": list(card.classes), "proposals": dataclasses.asdict(ProposalConfig.of(card.cls))}
    return {"dataset": dataset, "classes": state["classes"], "proposals": state["proposals"]}


def load_run(run: str | os.PathLike, checkpoint: str | os.PathLike | None = None):
    """(model in eval mode, config) of a finished or checkpointed run, or of one of its kept
    epochs' ``checkpoint`` files."""
    run = Path(run)
    checkpoint = run / "checkpoint.pt" if checkpoint is None else Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint} not found: is {run} a run folder written by `python -m rpl train`?")
    state = read_checkpoint(checkpoint)
    cfg = TrainConfig(**{**LEGACY, **state["config"]})
    classes = state.get("classes") or dataset_card(cfg.dataset).classes  # runs saved before classes were
    model = build_model(cfg, len(classes), pretrained=False)
    model.load_state_dict(state["model"])
    return model.eval(), cfg


def evaluate(run: str | os.PathLike, split: str = "test", data_root=None, cache_root=None,
             progress: bool = True, device: str = "cpu", images: int | None = None,
             ground_truth: bool = False, checkpoint: str | os.PathLike | None = None) -> dict:  # fmt: skip
    """Global / class-average accuracy and mean IoU on all pixels and on 4-px boundaries, per-class
    accuracies; returned and, for the run's own test evaluation, written to ``run/metrics.json``.

    ``images``: evenly spaced images of the split (default: the run's ``test_images`` on the test
    split, 0 = all), on the training split taken from the images the run trained on;
    ``ground_truth``: add each image's ground-truth regions to its proposals (a diagnosis);
    ``checkpoint``: a kept epoch's file (``train(keep_epochs=True)``) instead of the last.
    Other splits, image counts or checkpoints than the run's own test evaluation write no file."""
    model, cfg = load_run(run, checkpoint)
    model.to(device)
    dataset = training_images(cfg, data_root) if split == "train" else load_dataset(cfg, split, data_root)
    dataset = _subset(dataset, (cfg.test_images if split == "test" else 0) if images is None else images)
    cache = ProposalCache(dataset, root=cache_root)
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
    if ground_truth and cfg.model != "fcn":
        metrics["ground_truth_regions"] = True
    if split == "test" and images is None and not ground_truth and checkpoint is None:
        write_json(Path(run) / "metrics.json", metrics)
    return metrics
