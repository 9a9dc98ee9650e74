"""Training: the loop, its steps, distributed ranks, checkpoints and resumption.

    python -m rpl train --preset cpu --model e2s2 --out runs/e2s2

``images_per_step`` images per step (the paper: 10): through the backbone in one batch when
they have one size, then one at a time through the region layers and the loss, gradients
summed; SGD with momentum 0.9 and weight decay 5e-4, horizontal flips, the proposal colour
space rotating per image, ground-truth regions added at training. A checkpoint
is written atomically after every epoch; ``--resume`` continues from it and, being seeded per
epoch, ends where an uninterrupted run ends (up to float rounding).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import losses
from ..files import FileLock, atomic, remove_temporaries, write_json, write_text
from ..proposals import ProposalCache
from .config import TrainConfig, build_model, config_differences
from .frozen import FrozenFeatures, backbone_hash
from .inference import check_classes, check_trained_on, describe_dataset, read_checkpoint
from .prepare import load_dataset, prepare, subset


def _loss(model, cfg: TrainConfig, features, label, regions, class_weights):
    """One image's loss from its features (region models: what ROI pooling reads; FCN: its
    logits [1, C, H, W])."""
    weights = class_weights if cfg.loss == "balanced" else None
    if not cfg.uses_regions:  # the FCN: every pixel its own atom
        logits = features[0].flatten(1).T
        return losses.pixel_loss_per_pixel(logits, torch.from_numpy(label.ravel()).to(features.device), weights)
    out = model.scores(features, regions)
    if cfg.model == "baseline":
        labels = torch.from_numpy(losses.region_labels(regions, label)).to(features.device)
        return losses.region_loss(out.logits, labels)
    return losses.pixel_loss(
        out.atoms, out.batch.atom_labels, out.batch.atom_pixels, weights, probabilities=cfg.order == "softmax-max"
    )


def _step_features(model, cfg: TrainConfig, images, cached):
    """Each image's features (region models: what ROI pooling reads; FCN: its logits), the
    images of one size through the network in one channels-last batch
    (benchmarks/backbone_batching.py; the layers after the backbone take one image at a time).
    ``cached``: a frozen backbone's outputs per image (:class:`FrozenFeatures`), read instead of
    running it."""
    if cached is not None:
        inputs, layout = [tuple(c.to(images[0].device) for c in outputs) for outputs in cached], torch.contiguous_format
    else:
        inputs, layout = [(x,) for x in images], torch.channels_last

    def run(parts, size):
        parts = tuple(p.contiguous(memory_format=layout) for p in parts)
        if cached is None:
            return model.features(parts[0]) if cfg.uses_regions else model(parts[0])
        return model.from_backbone(parts) if cfg.uses_regions else model.from_backbone(parts, size)

    if len({tuple(tuple(p.shape) for p in x) for x in inputs}) == 1 and len({x.shape for x in images}) == 1:
        return list(run(tuple(torch.cat(p) for p in zip(*inputs)), images[0].shape[-2:]).split(1))
    return [run(x, image.shape[-2:]) for x, image in zip(inputs, images)]


def _atomic_save(obj, path: Path) -> None:
    with atomic(path) as tmp:
        torch.save(obj, tmp)


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


def train(
    cfg: TrainConfig,
    out: str | os.PathLike,
    resume: bool = False,
    data_root=None,
    cache_root=None,
    progress: bool = True,
    device: str = "cpu",
    keep_epochs: bool = False,
    dataset=None,
) -> dict:
    """Train a model; returns the summary written to ``out/train.json``. ``keep_epochs`` also
    keeps every epoch's checkpoint, as ``out/epochs/epoch<n>.pt`` (for a learning curve:
    :func:`rpl.report.diagnostics.learning_curve`). ``dataset``: a data set object to train on
    (all its images, or ``cfg.train_images`` of them when set; e.g.
    ``rpl.data.ImageFolder(images, labels, classes)``) instead of the training split of ``cfg.dataset``; the run records its key, classes and proposal settings,
    and is evaluated with ``evaluate(run, dataset=<its test images>)``.

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
        return _train(
            cfg, out, bool(held), resume, data_root, cache_root, progress, device, keep_epochs, rank, world, dataset
        )
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
        raise FileExistsError(
            f"{out}: another process (pid {lock.holder()}) is training this run; wait for it to "
            "finish, or choose another --out"
        )
    return lock


def _train(
    cfg, out: Path, held: bool, resume, data_root, cache_root, progress, device, keep_epochs, rank, world, full
) -> dict:
    checkpoint = out / "checkpoint.pt"
    if held and not resume:
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    _barrier(world)  # every rank has looked before rank 0 writes
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        remove_temporaries(checkpoint)  # a killed save's: the run is locked, no writer is live
    torch.manual_seed(cfg.seed)
    full = load_dataset(cfg, "train", data_root) if full is None else full
    class_weights = losses.balanced_weights(full.class_pixel_counts())
    dataset = subset(copy.copy(full), cfg.train_images)  # a copy: subset cuts the names it holds
    cache = ProposalCache(dataset, root=cache_root, kind=cfg.regions)
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
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )
    start_epoch, seconds = 0, 0.0
    log_path = out / "log.jsonl"
    if resume and checkpoint.exists():
        state = read_checkpoint(checkpoint)
        changed = config_differences(state["config"], cfg)
        if changed:
            raise ValueError(f"{checkpoint} was trained with another configuration ({changed})")
        check_classes(state.get("classes"), dataset)
        check_trained_on(state.get("dataset_key"), dataset.key, str(checkpoint), "(resume it on the same images)")
        source = backbone_hash(model.backbone.state_dict()) if cfg.weights_from_run and cfg.freeze_backbone else None
        model.load_state_dict(state["model"])
        if (
            source and backbone_hash(model.backbone.state_dict()) != source
        ):  # its cached features are the new backbone's
            raise ValueError(
                f"{checkpoint} started from another backbone than weights={cfg.weights} holds now (retrained "
                "since?); delete the run to rerun it"
            )
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

        step_module = DistributedDataParallel(
            step_module,
            device_ids=[device] if device.startswith("cuda") else None,
            find_unused_parameters=cfg.head_epochs > 0,
        )
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
                proposals = cache.get(dataset.names[index], space) if cfg.uses_regions else None
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
                log.write(
                    json.dumps(
                        {
                            "epoch": epoch,
                            "step": step_start // cfg.images_per_step,
                            "loss": step_loss.item(),
                            "images_per_s": rate,
                            "lr": optimizer.param_groups[0]["lr"],
                        }
                    )
                    + "\n"
                )
                log.flush()
        if log is not None:
            log.close()
        bar.close()
        seconds += time.monotonic() - started
        if rank == 0:
            _atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1,
                    "seconds": seconds,
                    "config": dataclasses.asdict(cfg),
                    **describe_dataset(dataset),
                },
                checkpoint,
            )
            if keep_epochs:  # a second name for this epoch's file: the next save replaces only the first
                kept = out / "epochs" / f"epoch{epoch + 1:03d}.pt"
                kept.parent.mkdir(exist_ok=True)
                kept.unlink(missing_ok=True)
                os.link(checkpoint, kept)
    summary = {
        "config": dataclasses.asdict(cfg),
        "train_images": n,
        "epochs": cfg.epochs,
        "ranks": world,
        "train_seconds": seconds,
        "images_per_s": n * cfg.epochs / max(seconds, 1e-9),
    }
    if rank == 0:
        write_json(out / "train.json", summary)
    _barrier(world)
    return summary
