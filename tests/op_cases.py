"""Random and adversarial inputs for the two layers, shared by the CPU and CUDA tests."""

import numpy as np
import torch


def random_boxes(k, n, height, width, rng, scale=16):
    """(batch, x1, y1, x2, y2) in input pixels, some reaching outside the image or malformed."""
    x1 = rng.uniform(-20, width * scale, k)
    y1 = rng.uniform(-20, height * scale, k)
    x2 = x1 + rng.uniform(-10, width * scale, k)
    y2 = y1 + rng.uniform(-10, height * scale, k)
    return torch.tensor(np.stack([rng.integers(0, n, k), x1, y1, x2, y2], 1))


def pool_case(kind, rng, dtype=torch.float64):
    """Adversarial inputs: (features, boxes, masks)."""
    n, c, h, w = 2, 5, 9, 12
    if kind == "ties":
        features = torch.tensor(rng.integers(0, 3, (n, c, h, w)), dtype=dtype)
    else:
        features = torch.tensor(rng.normal(size=(n, c, h, w)), dtype=dtype)
    if kind == "nan":  # NaN propagates through a max, the first one winning (as torch.max)
        features[torch.tensor(rng.random((n, c, h, w)) < 0.1)] = float("nan")
    if kind == "-inf":  # channel 0 all -inf: its max is a cell inside the region, not a start value
        features[:, 0] = float("-inf")
        features[torch.tensor(rng.random((n, c, h, w)) < 0.3)] = float("-inf")
    k = 1 if kind == "one region" else 25
    boxes = random_boxes(k, n, h, w, rng).to(dtype)
    if kind == "empty bins":
        masks = torch.tensor(rng.random((k, h, w)) < 0.08)
    elif kind == "one-cell regions":
        masks = torch.zeros(k, h, w, dtype=torch.bool)
        masks[torch.arange(k), torch.tensor(rng.integers(0, h, k)), torch.tensor(rng.integers(0, w, k))] = True
    elif kind == "whole image":
        masks = torch.ones(k, h, w, dtype=torch.bool)
        boxes[:, 1:] = torch.tensor([0, 0, w * 16 - 1, h * 16 - 1], dtype=dtype)
    else:
        masks = torch.tensor(rng.random((k, h, w)) < 0.5)
    return features, boxes, masks


def r2p_case(kind, rng, dtype=torch.float64):
    a, r, c = 60, 20, 7
    if kind == "one region":
        r = 1
    if kind == "thousands of regions":
        a, r = 300, 5000
    scores = torch.tensor(rng.integers(-2, 3, (r, c)) if kind == "ties" else rng.normal(size=(r, c)), dtype=dtype)
    if kind == "nan":
        scores[torch.tensor(rng.random((r, c)) < 0.15)] = float("nan")
    if kind == "-inf":  # class 0 -inf everywhere: the winner is still a member region
        scores[:, 0] = float("-inf")
        scores[torch.tensor(rng.random((r, c)) < 0.3)] = float("-inf")
    member = torch.tensor(rng.random((a, r)) < (0.01 if r > 100 else 0.2))
    if kind == "whole image":
        member[:, 0] = True
    if kind == "one atom":
        member = member[:1]
    return scores, member
