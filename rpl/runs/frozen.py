"""Backbone outputs computed once per image and flip, for runs with ``freeze_backbone``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..files import FileLock, atomic, remove_temporaries
from ..proposals import cache_root as cache_root_of
from .config import TrainConfig
from .prepare import prepare, resized_shape


def backbone_hash(state: dict) -> str:
    """12 hex digits of the SHA-1 of a backbone's weights (its state dict: names and values, in
    order): what a trained backbone's cached features are filed under."""
    digest = hashlib.sha1()
    for name, value in state.items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


class FrozenFeatures:
    """Backbone outputs of every image of ``dataset``, plain and flipped, for runs with
    ``freeze_backbone``: computed once into memory-mapped files under ``<cache>/features/``,
    each written under a temporary name and renamed when complete. ``features[index, flipped]``
    is a tuple as :meth:`~rpl.models.backbones.Backbone.outputs` gives: ``(features,)``, or
    ``(stride/2 features, features)`` when the run reads the skip (``TrainConfig.reads_skip``;
    the skip has a file of its own beside the features').
    Images of several sizes share one array padded to the largest grid; a sidecar file
    (``<name>.grids.npy``) then holds each image's grid, and reads are cut to it."""

    def __init__(self, model, dataset, cfg: TrainConfig, cache_root=None, progress: bool = True, device="cpu"):
        names = "\n".join(dataset.names).encode()
        stride = "" if cfg.output_stride == 16 else f"-os{cfg.output_stride}"
        weights = f"run{backbone_hash(model.backbone.state_dict())}" if cfg.weights_from_run else cfg.weights
        key = f"{cfg.backbone}{stride}-{weights}-size{cfg.image_size}-{hashlib.sha1(names).hexdigest()[:12]}"
        path = cache_root_of(cache_root) / "features" / dataset.key / f"{dataset.split}-{key}.npy"
        parts = [("features", path)]
        if cfg.reads_skip:
            parts.insert(0, ("skip", path.with_name(f"{path.stem}-skip.npy")))
        self.arrays, self.grids = [], []
        for part, file in parts:
            grids = file.with_name(f"{file.stem}.grids.npy")
            if not file.is_file():
                file.parent.mkdir(parents=True, exist_ok=True)
                with FileLock(file.with_name(f".{file.name}.lock"), blocking=True):  # one computes, others wait
                    if not file.is_file():
                        remove_temporaries(file)
                        self._compute(model.backbone, part, dataset, cfg, file, grids, progress, device)
            self.arrays.append(np.load(file, mmap_mode="r"))
            self.grids.append(np.load(grids) if grids.is_file() else None)
        self.path = path

    @staticmethod
    def _compute(backbone, part: str, dataset, cfg, path: Path, grids_path: Path, progress: bool, device) -> None:
        backbone.eval()
        run = backbone if part == "features" else backbone.skip_features
        shapes, by_size = [], {}
        with torch.no_grad():
            for name in dataset.names:  # each image's grid, from its size alone
                with Image.open(dataset.image_path(name)) as im:
                    size = resized_shape(im.height, im.width, cfg.image_size)
                if size not in by_size:
                    by_size[size] = tuple(run(torch.zeros(1, 3, *size, device=device)).shape[1:])
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
            desc = "backbone features" if part == "features" else "backbone skip features"
            for index in tqdm(range(len(dataset)), desc=desc, unit="img", disable=not progress):
                sample = dataset[index]
                for flip in (False, True):
                    image = prepare(sample, None, cfg, flip, training=False)[0]
                    out = run(image.to(device))[0].cpu().numpy()
                    if out.shape != shapes[index]:
                        raise ValueError(
                            f"{sample.name}: {part} {out.shape}, expected {shapes[index]} from the "
                            f"size of {dataset.image_path(sample.name)}"
                        )
                    array[index, int(flip), :, : out.shape[1], : out.shape[2]] = out
            array.flush()
            del array

    def __getitem__(self, key) -> tuple:
        index, flip = key
        out = []
        for array, grids in zip(self.arrays, self.grids):
            h, w = array.shape[-2:] if grids is None else grids[index]
            out.append(torch.from_numpy(np.array(array[index, int(flip), :, :h, :w]))[None])
        return tuple(out)
