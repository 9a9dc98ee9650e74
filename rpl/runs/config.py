"""What a run depends on: :class:`TrainConfig` (every setting, validated), the presets, and
the model a configuration builds."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import check_dataset
from ..models import E2S2, FCN, ModelConfig, mobilenet_v2, vgg16
from ..proposals import COLOR_SPACES, REGION_KINDS

MODELS = ("e2s2", "baseline", "fcn")


BACKBONES = ("mobilenet_v2", "vgg16")


PRESET_NAMES = ("quick", "cpu", "ablation", "paper")  # PRESETS, below


# Ground-truth regions at training (RegionSet.with_ground_truth): the authors' unions of
# superpixels, the exact segments (rpl before issue 12), or, for regions=rectangles only, the
# segments' bounding boxes (Table 4's purely rectangular row).
TRAIN_REGIONS = ("superpixels", "exact", "boxes")


# Settings only the region models read: an FCN run does not depend on them.
REGION_SETTINGS = (
    "pooling",
    "combine",
    "order",
    "neck",
    "head",
    "dropout",
    "regions",
    "color_spaces",
    "mask",
    "train_regions",
    "proposal_iou",
    "bins",
    "levels",
    "neck_init",
)


# Settings only the FCN reads: a region model's run does not depend on them.
FCN_SETTINGS = ("fcn_skip",)


# What a run saved before these settings existed was trained with (read by load_run).
LEGACY = {
    "alignment": "legacy",
    "train_regions": "exact",
    "proposal_iou": 0.0,
    "mask": "cells",
    "output_stride": 16,
    "dropout": 0.5,
}


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
    # Issue 23: region heads without random fc layers (head=0, bins, neck_init), multi-level
    # pooling (levels=2), and the FCN without its skip (fcn_skip=false) — ModelConfig's fields.
    bins: int = 7
    levels: int = 1
    neck_init: str = "random"
    fcn_skip: bool = True

    def __post_init__(self):
        self._check_numbers()
        if self.preset not in PRESET_NAMES:
            raise ValueError(f"preset must be one of {PRESET_NAMES}, got {self.preset!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if not self.color_spaces or any(c not in COLOR_SPACES for c in self.color_spaces):
            raise ValueError(
                f"color_spaces must be a comma-separated subset of {','.join(COLOR_SPACES)}, "
                f"got {','.join(self.color_spaces)!r}"
            )
        self.dataset = check_dataset(self.dataset)  # a data set folder as its absolute path
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.regions not in REGION_KINDS:
            raise ValueError(f"regions must be one of {REGION_KINDS}, got {self.regions!r}")
        if not self.weights:
            raise ValueError(
                "weights must be 'imagenet', 'none' (random initialisation) or a run folder (its backbone), got ''"
            )
        if self.loss not in ("balanced", "unbalanced"):
            raise ValueError(f"loss must be 'balanced' or 'unbalanced', got {self.loss!r}")
        if self.train_regions not in TRAIN_REGIONS:
            raise ValueError(f"train_regions must be one of {TRAIN_REGIONS}, got {self.train_regions!r}")
        if self.train_regions == "boxes" and self.regions != "rectangles":
            raise ValueError(
                f"train_regions=boxes needs regions=rectangles (purely rectangular), got regions={self.regions}"
            )
        if not 0 <= self.proposal_iou <= 1:
            raise ValueError(f"proposal_iou must be in [0, 1] (0: keep every proposal), got {self.proposal_iou!r}")
        if self.output_stride not in (8, 16) or (self.backbone == "vgg16" and self.output_stride != 16):
            raise ValueError(f"output_stride must be 16, or 8 with mobilenet_v2, got {self.output_stride!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16' (autocast), got {self.precision!r}")
        if self.freeze_backbone and self.weights == "none":
            raise ValueError(
                "freeze_backbone needs weights=imagenet or a run folder: a frozen random backbone differs per seed"
            )
        if self.head_epochs and (
            self.model == "fcn" or self.freeze_backbone or self.weights == "none" or self.head_epochs >= self.epochs
        ):
            raise ValueError(
                f"head_epochs={self.head_epochs}: the first epochs of a region model that then fine-tunes "
                "its ImageNet backbone, fewer than epochs (not with model=fcn, freeze_backbone or "
                "weights=none)"
            )
        if self.neck_init == "imagenet" and (self.backbone != "mobilenet_v2" or self.weights == "none"):
            raise ValueError(
                "neck_init=imagenet is MobileNetV2's own last ImageNet layer: it needs backbone=mobilenet_v2 "
                f"and weights=imagenet or a run folder, got backbone={self.backbone}, weights={self.weights}"
            )
        self.color_spaces = tuple(self.color_spaces)
        self.model_config()  # validates pooling/combine/order

    def _check_numbers(self) -> None:
        """Every numeric setting in its range; the error names the key, the value and the range."""
        at_least = {
            "epochs": 1,
            "images_per_step": 1,
            "head": 0,
            "lr_drop_epoch": 0,
            "train_images": 0,
            "test_images": 0,
            "image_size": 0,
            "neck": 0,
            "seed": 0,
            "head_epochs": 0,
        }
        for key, low in at_least.items():
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        for key in ("lr", "head_lr_mult", "weight_decay", "momentum"):
            value = getattr(self, key)
            positive = key in ("lr", "head_lr_mult")
            if (
                not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
                or (positive and value == 0)
            ):
                raise ValueError(f"{key} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")

    @property
    def weights_from_run(self) -> bool:
        """Whether ``weights`` names a run folder, whose trained backbone the run starts from."""
        return self.weights not in ("imagenet", "none")

    @property
    def reads_skip(self) -> bool:
        """Whether the model reads the backbone's stride/2 features too: the FCN's skip, or the
        region layers' second level (``levels=2``)."""
        return self.fcn_skip if self.model == "fcn" else self.levels == 2

    @property
    def uses_regions(self) -> bool:
        """Whether the model reads regions (the region models) or labels pixels alone (the FCN)."""
        return self.model != "fcn"

    def model_config(self) -> ModelConfig:
        """The architecture: ModelConfig's fields, which a run keeps flat among its own (one
        ``--set`` key and one JSON key each)."""
        config = ModelConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ModelConfig)})
        if self.model == "baseline":  # Fig. 2b: box pooling, region loss, Eq. 1 at test time
            return dataclasses.replace(config, pooling="box", order="softmax-max")
        return config

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
                    raise ValueError(
                        f"--set {pair!r}: {key} takes {'an integer' if kind == 'int' else 'a number'}, got {value!r}"
                    ) from None
            elif kind == "tuple":
                changes[key] = tuple(v for v in value.split(",") if v)
            else:
                changes[key] = value
        return dataclasses.replace(self, **changes)


PRESETS = {
    # CI and the notebooks' quick mode: a handful of images, one epoch, minutes.
    "quick": TrainConfig(
        preset="quick",
        neck=32,
        head=64,
        epochs=1,
        lr_drop_epoch=1,
        images_per_step=5,
        color_spaces=("rgb",),
        train_images=10,
        test_images=5,
    ),
    # The default: ImageNet MobileNetV2 at stride 16 on real SIFT Flow, 2 CPU cores; the paper's
    # model (region + box pooling, separate weights: Table 4's best row) with a linear head: each
    # region's max per channel (free-form and box) straight to the classifier. MobileNetV2 has no
    # ImageNet fc6/fc7 to start from, and random ones (neck=128, head=512, 7x7 bins: the preset
    # until the diagnosis in docs/diagnosis.md, e2s2_cpu_fc512) made fine-tuning hurt.
    "cpu": TrainConfig(preset="cpu", pooling="both", combine="separate", neck=0, head=0, bins=1),
    # Ablations (Tables 1, 4, Sec. 4.3) on 2 cores: the cpu preset's settings but free-form
    # pooling with tied weights (TrainConfig's defaults; each row sets its own) and the ImageNet
    # backbone frozen, its features computed once per image and flip (cache/features); neck, fc
    # layers and classifier train end to end through both rpl layers.
    # Ten epochs (seven, then three at a tenth of the rate): three underfit (issue 12's learning
    # curve, results/learning_curve_lever_25-epochs.json); ~30 min a run on one core.
    "ablation": TrainConfig(preset="ablation", freeze_backbone=True, epochs=10, lr_drop_epoch=7),
    # The paper: VGG-16, longer side 600 px, 30 epochs (20 at 1e-3, 10 at 1e-4), region + box
    # pooling with separate weights, fc6/fc7 from ImageNet.
    "paper": TrainConfig(
        preset="paper",
        backbone="vgg16",
        pooling="both",
        combine="separate",
        neck=0,
        head=4096,
        epochs=30,
        lr_drop_epoch=20,
        head_lr_mult=1.0,
        image_size=600,
    ),
}


def read_checkpoint(path) -> dict:
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


def run_checkpoint(run) -> Path:
    """The checkpoint of a finished run folder (``train.json`` written), as ``weights=<run
    folder>`` reads it."""
    path = Path(run) / "checkpoint.pt"
    if not path.is_file() or not (Path(run) / "train.json").is_file():
        raise FileNotFoundError(
            f"weights={run}: expected 'imagenet', 'none' or a finished run folder (checkpoint.pt and "
            "train.json), found no finished run there"
        )
    return path


def backbone_state(cfg: TrainConfig) -> dict:
    """The backbone's weights (a state dict) from the checkpoint of the run folder ``cfg.weights``
    names: the transfer test starts a run from another run's trained backbone. A source with
    another backbone or output stride is refused (dilation is not in the weights)."""
    path = run_checkpoint(cfg.weights)
    state = read_checkpoint(path)
    source = state["config"]
    theirs = (source.get("backbone", "mobilenet_v2"), source.get("output_stride", 16))
    if theirs != (cfg.backbone, cfg.output_stride):
        raise ValueError(
            f"weights={cfg.weights}: its backbone is {theirs[0]} at output stride {theirs[1]}, not this run's "
            f"{cfg.backbone} at {cfg.output_stride}"
        )
    backbone = {k.removeprefix("backbone."): v for k, v in state["model"].items() if k.startswith("backbone.")}
    if not backbone:
        raise ValueError(f"{path}: expected a model with a backbone, found no backbone.* weights")
    return backbone


def config_differences(saved: dict, cfg: TrainConfig) -> str:
    """The settings (``key: saved -> now``, comma-separated; empty when none) in which a saved
    run configuration (a run's ``config.json``, a checkpoint's or a results file's) differs from
    ``cfg``. Settings it lacks read as :data:`LEGACY` (what runs saved before them were trained
    with) or the defaults; an FCN's region settings and a region model's FCN settings do not
    count."""
    old = dataclasses.asdict(TrainConfig(**{**LEGACY, **saved}))
    now = dataclasses.asdict(cfg)
    ignored = FCN_SETTINGS if cfg.uses_regions else REGION_SETTINGS
    return ", ".join(f"{k}: {old[k]} -> {now[k]}" for k in now if old[k] != now[k] and k not in ignored)


def build_model(cfg: TrainConfig, num_classes: int, pretrained: bool = True):
    """The run's model, its backbone from ``cfg.weights`` (ImageNet, random, or a run folder's
    trained backbone) when ``pretrained``; without, every weight is left for a checkpoint. On a
    run folder's backbone, ``neck_init=imagenet`` still starts the neck from ImageNet's layer."""
    weights = "imagenet" if pretrained and (cfg.weights == "imagenet" or cfg.neck_init == "imagenet") else None
    trained = backbone_state(cfg) if pretrained and cfg.weights_from_run else None  # checked before any work
    if cfg.backbone == "mobilenet_v2":
        backbone = mobilenet_v2(weights, cfg.output_stride)
    else:
        backbone = vgg16(weights)
    if trained is not None:
        backbone.load_state_dict(trained)
    if cfg.model == "fcn":
        return FCN(backbone, num_classes, cfg.alignment, skip=cfg.fcn_skip)
    return E2S2(backbone, num_classes, cfg.model_config())
