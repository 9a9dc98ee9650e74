"""The gradient that reaches the backbone: how much of it, how densely, how consistently.

    python -m rpl gradients runs/frozen_fcn runs/ablation_both-separate --out results/gradients.json

For each model, on the same training images, with its backbone's weights (the same ImageNet
weights for every model as initialised or trained on the frozen backbone), one image at a time
as the training step sees them (its training regions, dropout on, no flip, RGB proposals), and
for every block of the backbone: the norm of the loss's gradient on the block's parameters,
the fraction of the block's output cells that receive any gradient (a region model's gradient
goes through ROI max pooling to each bin's winning cell, Eq. 8, and through region-to-pixel
to each atom's winning region, Eq. 5; an FCN's reaches every cell), and, over the images of a
step, how much their gradients agree: ``coherence`` = ‖Σ g_i‖ / Σ ‖g_i‖ (1: all point the same
way; about 1/√n for n unrelated directions).
"""

from __future__ import annotations

import numpy as np
import torch

from .. import losses
from ..proposals import ProposalCache
from .config import TrainConfig
from .loop import _loss
from .prepare import load_dataset, prepare, subset

__all__ = ["backbone_gradients"]


def backbone_gradients(
    model, cfg: TrainConfig, images: int = 20, images_per_step: int = 10, data_root=None, cache_root=None
) -> dict:
    """Gradient statistics per backbone block of ``model`` (configured by ``cfg``) on
    ``images`` training images, evenly spaced, in steps of ``images_per_step``.

    Returns:
        {"images", "images_per_step", "loss" (mean per image), "output_entries_with_gradient"
        (mean fraction of the backbone output's channels x cells with a gradient), "blocks": [{"block", "stride",
        "cells", "param_norm", "grad_norm" (per image, mean), "step_grad_norm" (the step's mean
        gradient, mean over steps), "coherence" (mean over steps), "cells_with_gradient" (mean
        fraction)}]}
    """
    if cfg.backbone != "mobilenet_v2":  # VGG-16's body is single layers, ReLUs in place: no blocks to hook
        raise ValueError(f"gradients measures MobileNetV2's blocks; backbone={cfg.backbone} is not supported")
    if images < images_per_step or images % images_per_step:
        raise ValueError(f"images ({images}) must be a positive multiple of images_per_step ({images_per_step})")
    full = load_dataset(cfg, "train", data_root)
    weights = losses.balanced_weights(full.class_pixel_counts()) if cfg.loss == "balanced" else None
    dataset = subset(full, images)
    cache = ProposalCache(dataset, root=cache_root, kind=cfg.regions) if cfg.uses_regions else None
    blocks = list(model.backbone.body)
    params = [[p for p in block.parameters() if p.requires_grad] for block in blocks]  # batch norm stays frozen
    outputs = {}

    def keep(k):
        def hook(_module, _inputs, out):
            out.retain_grad()
            outputs[k] = out

        return hook

    handles = [block.register_forward_hook(keep(k)) for k, block in enumerate(blocks)]
    model.train()
    grads, cells, entries, losses_seen, shapes = [], [], [], [], {}
    try:
        for index in range(len(dataset)):
            sample = dataset[index]
            proposals = cache.get(sample.name, "rgb") if cache is not None else None
            image, label, regions = prepare(sample, proposals, cfg, False, training=True)
            model.zero_grad(set_to_none=True)
            torch.manual_seed(index)  # the same dropout for every model measured
            features = model.features(image) if cfg.uses_regions else model(image)
            loss = _loss(model, cfg, features, label, regions, weights)
            loss.backward()
            losses_seen.append(loss.item())
            grads.append(
                [
                    torch.cat([p.grad.flatten() if p.grad is not None else p.new_zeros(p.numel()) for p in ps])
                    for ps in params
                ]
            )
            row = []
            for k in range(len(blocks)):
                g = outputs[k].grad
                shapes[k] = tuple(outputs[k].shape[-2:])
                row.append(0.0 if g is None else float((g.abs().sum(1) > 0).float().mean()))
            cells.append(row)
            g = outputs[len(blocks) - 1].grad
            entries.append(0.0 if g is None else float((g != 0).float().mean()))
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    height = image.shape[-2]
    out = []
    for k in range(len(blocks)):
        per_image = torch.stack([g[k] for g in grads])  # [n, P]
        steps = per_image.view(-1, images_per_step, per_image.shape[1])
        norms = per_image.norm(dim=1)
        summed = steps.sum(1).norm(dim=1)
        out.append(
            {
                "block": k,
                "stride": round(height / shapes[k][0]),
                "cells": shapes[k][0] * shapes[k][1],
                "param_norm": float(torch.cat([p.detach().flatten() for p in params[k]]).norm()),
                "grad_norm": float(norms.mean()),
                "step_grad_norm": float((summed / images_per_step).mean()),
                "coherence": float((summed / norms.view(-1, images_per_step).sum(1).clamp_min(1e-30)).mean()),
                "cells_with_gradient": float(np.mean([c[k] for c in cells])),
            }
        )
    return {
        "images": images,
        "images_per_step": images_per_step,
        "loss": float(np.mean(losses_seen)),
        "output_entries_with_gradient": float(np.mean(entries)),
        "blocks": out,
    }
