"""Selective Search (Uijlings et al., IJCV 2013) with free-form masks, as used by the paper.

Felzenszwalb superpixels are grouped bottom-up: repeatedly the two most similar adjacent regions
merge, until one region is left. Every region of every hierarchy is kept, so each hierarchy
gives 2N-1 regions for N superpixels; the regions are unions of superpixels, which is what the
paper's efficient loss (Sec. 3.5) relies on. The grouping loop is compiled by Numba.

Similarities (each in [0, 1], summed over the strategy's terms):
    colour   histogram intersection, 25 bins per channel, L1-normalised
    texture  histogram intersection of Gaussian derivatives (sigma 1, 8 orientations,
             10 bins per orientation per channel), L1-normalised
    size     1 - (size_i + size_j) / size_image            (small regions merge early)
    fill     1 - (box_ij - size_i - size_j) / size_image   (regions that fill each other's gaps)
Merged histograms are size-weighted averages, so they stay L1-normalised.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage
from skimage import color

from .felzenszwalb import check_parameters, felzenszwalb
from .regions import RegionSet

__all__ = ["selective_search", "Hierarchy", "COLOR_SPACES", "SIMILARITIES"]

COLOR_SPACES = ("rgb", "hsv", "lab")
SIMILARITIES = ("color", "texture", "size", "fill")
COLOR_BINS = 25
TEXTURE_BINS = 10
ORIENTATIONS = 8


def selective_search(
    image: np.ndarray,
    color_space: str = "rgb",
    k: float = 100,
    sigma: float = 0.8,
    min_size: int | None = None,
    strategies=("color-texture-size-fill", "texture-size-fill"),
    min_region_size: int = 100,
) -> RegionSet:
    """Free-form region proposals for one image in one colour space.

    Args:
        image (ndarray[H, W, 3] uint8): RGB; a greyscale H×W uint8 image is expanded to RGB.
        color_space: ``"rgb"``, ``"hsv"`` or ``"lab"``: where superpixels and colour/texture
            histograms are computed (the paper uses all three at training, RGB at test).
        k: Felzenszwalb's scale (100 for SIFT Flow, 400 for PASCAL Context).
        sigma: Felzenszwalb's smoothing.
        min_size: Felzenszwalb's minimum segment size; default ``k`` (at least 1).
        strategies: one hierarchy per entry, each a ``-``-joined subset of
            :data:`SIMILARITIES`.
        min_region_size: regions with fewer pixels are dropped (the whole image always stays).

    Returns:
        RegionSet: the distinct regions of all hierarchies (first hierarchy first, each in
        order of creation: its superpixels, then its merges).
    """
    weights = [_strategy_weights(s) for s in strategies]
    if not weights:
        raise ValueError("strategies must name at least one hierarchy")
    features = _SuperpixelFeatures(image, color_space, k, sigma, min_size)
    regions, seen = [], set()
    for w in weights:
        indptr, indices = _leaves(features.group(w), features.num_superpixels)
        for r in range(len(indptr) - 1):
            cells = np.sort(indices[indptr[r] : indptr[r + 1]])
            key = cells.tobytes()
            if key not in seen:
                seen.add(key)
                regions.append(cells)
    regionset = RegionSet.from_cells(features.superpixels, regions)
    h, w = features.superpixels.shape
    keep = (regionset.areas >= min_region_size) | (regionset.areas == h * w)
    params = dict(
        color_space=color_space,
        k=k,
        sigma=sigma,
        min_size=features.min_size,
        strategies=list(strategies),
        min_region_size=min_region_size,
    )
    return regionset.subset(np.flatnonzero(keep)).with_params(params)


class Hierarchy:
    """One grouping hierarchy, step by step (for figures: the notebook's merge slider).

    Attributes:
        superpixels (ndarray[H, W] int32): the N initial regions.
        merges (ndarray[N - 1, 2] int64): the regions merged at each step; step t creates
            region N + t.
    """

    def __init__(self, image, color_space="rgb", strategy="color-texture-size-fill", k=100, sigma=0.8, min_size=None):
        features = _SuperpixelFeatures(image, color_space, k, sigma, min_size)
        self.superpixels = features.superpixels
        self.merges = features.group(_strategy_weights(strategy))

    def __len__(self) -> int:
        """Number of merge steps (N - 1)."""
        return len(self.merges)

    def partition(self, step: int) -> np.ndarray:
        """int64[H, W]: the regions alive after ``step`` merges (0 <= step <= N - 1), each
        labelled by its region index (superpixels 0..N-1, merged regions N..2N-2)."""
        if not 0 <= step <= len(self.merges):
            raise ValueError(f"step must lie in 0..{len(self.merges)}, got {step}")
        n = len(self.merges) + 1
        owner = np.arange(2 * n - 1)
        for t in range(step - 1, -1, -1):  # latest merges first: children take the parent
            a, b = self.merges[t]
            owner[a] = owner[n + t]
            owner[b] = owner[n + t]
        return owner[self.superpixels]


class _SuperpixelFeatures:
    """Superpixels of an image and their colour/texture histograms, sizes, boxes, adjacency."""

    def __init__(self, image, color_space, k, sigma, min_size):
        rgb = _check_image(image)
        if color_space not in COLOR_SPACES:
            raise ValueError(f"color_space must be one of {COLOR_SPACES}, got {color_space!r}")
        check_parameters(k, sigma, 1 if min_size is None else min_size)  # the default, int(k), is k's
        self.min_size = max(1, int(k)) if min_size is None else int(min_size)  # k < 1: no minimum
        channels = _to_color_space(rgb, color_space)
        self.superpixels = felzenszwalb(channels, k, sigma, self.min_size)
        self.num_superpixels = int(self.superpixels.max()) + 1
        gx, gy = _gaussian_derivatives(channels)
        self.colour, self.texture, self.sizes, self.boxes = _initial_features(
            self.superpixels, channels, gx, gy, self.num_superpixels
        )
        self.pairs = _adjacent_pairs(self.superpixels)

    def group(self, weights) -> np.ndarray:
        h, w = self.superpixels.shape
        return _group(self.pairs, self.colour, self.texture, self.sizes, self.boxes, h * w, *weights)


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8 RGB (0..255), got dtype {image.dtype}; convert float images "
            "in 0..1 with skimage.util.img_as_ubyte"
        )
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        hint = " (drop the alpha channel: image[..., :3])" if image.ndim == 3 and image.shape[2] == 4 else ""
        raise ValueError(f"image must be H×W×3 RGB or H×W greyscale, got shape {image.shape}{hint}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image


def _strategy_weights(strategy: str) -> tuple[float, float, float, float]:
    terms = strategy.split("-")
    unknown = set(terms) - set(SIMILARITIES)
    if unknown or len(set(terms)) != len(terms) or not terms:
        raise ValueError(f"strategy {strategy!r}: expected distinct terms from {SIMILARITIES} joined by '-'")
    return tuple(float(t in terms) for t in SIMILARITIES)


def _to_color_space(rgb: np.ndarray, color_space: str) -> np.ndarray:
    """float64[H, W, 3] in 0..1 per channel (each channel scaled by its nominal range)."""
    if color_space == "rgb":
        return rgb / 255.0
    if color_space == "hsv":
        return color.rgb2hsv(rgb)
    lab = color.rgb2lab(rgb)
    lab[..., 0] /= 100.0
    lab[..., 1:] = (lab[..., 1:] + 128.0) / 255.0
    return np.clip(lab, 0.0, 1.0)


def _gaussian_derivatives(channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d/dx and d/dy of each channel, Gaussian sigma 1: two float64[H, W, C]."""
    gx = np.empty_like(channels)
    gy = np.empty_like(channels)
    for ch in range(channels.shape[2]):
        gx[..., ch] = ndimage.gaussian_filter(channels[..., ch], 1.0, order=(0, 1))
        gy[..., ch] = ndimage.gaussian_filter(channels[..., ch], 1.0, order=(1, 0))
    return gx, gy


@numba.njit(cache=True)
def _oriented_response(gx, gy, o, sign):
    """Texture orientation 2·o + sign: the positive (sign 0) or negative (sign 1) part of the
    derivative along 0°, 45°, 90° or 135° (o = 0..3)."""
    diag = np.sqrt(0.5)
    if o == 0:
        d = gx
    elif o == 1:
        d = (gx + gy) * diag
    elif o == 2:
        d = gy
    else:
        d = (gy - gx) * diag
    return max(d, 0.0) if sign == 0 else max(-d, 0.0)


@numba.njit(cache=True)
def _initial_features(superpixels, channels, gx, gy, n):
    """Histograms (L1-normalised), sizes and boxes of the N superpixels, with room for the
    N - 1 regions that grouping creates.

    Colour: 25 bins per channel over 0..1. Texture: per channel and orientation, the response
    scaled by its maximum over the image, 10 bins.
    """
    h, w, nc = channels.shape
    nt = nc * ORIENTATIONS
    top = np.zeros(nt)
    for y in range(h):
        for x in range(w):
            for c in range(nc):
                for t in range(ORIENTATIONS):
                    v = _oriented_response(gx[y, x, c], gy[y, x, c], t // 2, t % 2)
                    top[c * ORIENTATIONS + t] = max(top[c * ORIENTATIONS + t], v)
    m = 2 * n - 1
    colour = np.zeros((m, nc * COLOR_BINS))
    texture = np.zeros((m, nt * TEXTURE_BINS))
    sizes = np.zeros(m)
    boxes = np.empty((m, 4), dtype=np.int64)  # x1 y1 x2 y2, inclusive
    boxes[:, 0] = w
    boxes[:, 1] = h
    boxes[:, 2] = -1
    boxes[:, 3] = -1
    for y in range(h):
        for x in range(w):
            r = superpixels[y, x]
            sizes[r] += 1
            for c in range(nc):
                b = min(int(channels[y, x, c] * COLOR_BINS), COLOR_BINS - 1)
                colour[r, c * COLOR_BINS + b] += 1
                for t in range(ORIENTATIONS):
                    k = c * ORIENTATIONS + t
                    v = _oriented_response(gx[y, x, c], gy[y, x, c], t // 2, t % 2)
                    scaled = v / top[k] if top[k] > 0 else 0.0
                    b = min(int(scaled * TEXTURE_BINS), TEXTURE_BINS - 1)
                    texture[r, k * TEXTURE_BINS + b] += 1
            boxes[r, 0] = min(boxes[r, 0], x)
            boxes[r, 1] = min(boxes[r, 1], y)
            boxes[r, 2] = max(boxes[r, 2], x)
            boxes[r, 3] = max(boxes[r, 3], y)
    for r in range(n):
        colour[r] /= sizes[r] * nc
        texture[r] /= sizes[r] * nt
    return colour, texture, sizes, boxes


def _adjacent_pairs(superpixels: np.ndarray) -> np.ndarray:
    """int64[E, 2]: each pair (i < j) of 4-adjacent superpixels, once."""
    a = np.concatenate([superpixels[:, 1:].ravel(), superpixels[1:, :].ravel()]).astype(np.int64)
    b = np.concatenate([superpixels[:, :-1].ravel(), superpixels[:-1, :].ravel()]).astype(np.int64)
    diff = a != b
    lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
    n = int(superpixels.max()) + 1
    keys = np.unique(lo * n + hi)
    return np.stack([keys // n, keys % n], axis=1)


@numba.njit(cache=True)
def _similarity(i, j, colour, texture, sizes, boxes, image_size, wc, wt, ws, wf):
    s = 0.0
    if wc > 0:
        s += wc * np.minimum(colour[i], colour[j]).sum()
    if wt > 0:
        s += wt * np.minimum(texture[i], texture[j]).sum()
    if ws > 0:
        s += ws * (1.0 - (sizes[i] + sizes[j]) / image_size)
    if wf > 0:
        bw = max(boxes[i, 2], boxes[j, 2]) - min(boxes[i, 0], boxes[j, 0]) + 1
        bh = max(boxes[i, 3], boxes[j, 3]) - min(boxes[i, 1], boxes[j, 1]) + 1
        s += wf * (1.0 - (bw * bh - sizes[i] - sizes[j]) / image_size)
    return s


@numba.njit(cache=True)
def _heap_push(keys, items, count, key, a, b):
    if count == len(keys):
        keys = np.concatenate((keys, np.empty_like(keys)))
        items = np.concatenate((items, np.empty_like(items)))
    pos = count
    keys[pos] = key
    items[pos, 0] = a
    items[pos, 1] = b
    while pos > 0:  # sift up: a max-heap on the similarity
        up = (pos - 1) // 2
        if keys[up] >= keys[pos]:
            break
        keys[up], keys[pos] = keys[pos], keys[up]
        items[up, 0], items[pos, 0] = items[pos, 0], items[up, 0]
        items[up, 1], items[pos, 1] = items[pos, 1], items[up, 1]
        pos = up
    return keys, items, count + 1


@numba.njit(cache=True)
def _heap_pop(keys, items, count):
    a, b = items[0, 0], items[0, 1]
    count -= 1
    keys[0] = keys[count]
    items[0, 0] = items[count, 0]
    items[0, 1] = items[count, 1]
    pos = 0
    while True:  # sift down
        left = 2 * pos + 1
        best = pos
        if left < count and keys[left] > keys[best]:
            best = left
        if left + 1 < count and keys[left + 1] > keys[best]:
            best = left + 1
        if best == pos:
            break
        keys[best], keys[pos] = keys[pos], keys[best]
        items[best, 0], items[pos, 0] = items[pos, 0], items[best, 0]
        items[best, 1], items[pos, 1] = items[pos, 1], items[best, 1]
        pos = best
    return a, b, count


@numba.njit(cache=True)
def _root(parent, r):
    while parent[r] != r:
        parent[r] = parent[parent[r]]
        r = parent[r]
    return r


@numba.njit(cache=True)
def _group(pairs, colour0, texture0, sizes0, boxes0, image_size, wc, wt, ws, wf):
    """Greedy hierarchical grouping. Returns int64[N - 1, 2]: the two regions merged into
    region N + t at step t (regions 0..N-1 are the superpixels).

    Similarities never change once computed (a region's features are fixed), so stale heap
    entries are skipped lazily instead of being removed.
    """
    n = (len(sizes0) + 1) // 2
    colour, texture = colour0.copy(), texture0.copy()
    sizes, boxes = sizes0.copy(), boxes0.copy()
    m = 2 * n - 1
    alive = np.zeros(m, dtype=np.bool_)
    alive[:n] = True
    parent = np.arange(m)
    # neighbour lists in an append-only pool; entries may name regions merged since
    nb_start = np.zeros(m, dtype=np.int64)
    nb_len = np.zeros(m, dtype=np.int64)
    for e in range(len(pairs)):
        nb_len[pairs[e, 0]] += 1
        nb_len[pairs[e, 1]] += 1
    total = 0
    for r in range(n):
        nb_start[r] = total
        total += nb_len[r]
    pool = np.empty(max(2 * total, 16), dtype=np.int64)
    fill = nb_start.copy()
    for e in range(len(pairs)):
        a, b = pairs[e, 0], pairs[e, 1]
        pool[fill[a]] = b
        fill[a] += 1
        pool[fill[b]] = a
        fill[b] += 1
    keys = np.empty(max(len(pairs), 16))
    items = np.empty((max(len(pairs), 16), 2), dtype=np.int64)
    count = 0
    for e in range(len(pairs)):
        a, b = pairs[e, 0], pairs[e, 1]
        s = _similarity(a, b, colour, texture, sizes, boxes, image_size, wc, wt, ws, wf)
        keys, items, count = _heap_push(keys, items, count, s, a, b)
    children = np.empty((n - 1, 2), dtype=np.int64)
    mark = np.full(m, -1, dtype=np.int64)
    for t in range(n - 1):
        while True:
            a, b, count = _heap_pop(keys, items, count)
            if alive[a] and alive[b]:
                break
        r = n + t
        children[t, 0] = a
        children[t, 1] = b
        alive[a] = False
        alive[b] = False
        alive[r] = True
        parent[a] = r
        parent[b] = r
        sa, sb = sizes[a], sizes[b]
        sizes[r] = sa + sb
        colour[r] = (sa * colour[a] + sb * colour[b]) / sizes[r]
        texture[r] = (sa * texture[a] + sb * texture[b]) / sizes[r]
        boxes[r, 0] = min(boxes[a, 0], boxes[b, 0])
        boxes[r, 1] = min(boxes[a, 1], boxes[b, 1])
        boxes[r, 2] = max(boxes[a, 2], boxes[b, 2])
        boxes[r, 3] = max(boxes[a, 3], boxes[b, 3])
        need = total + nb_len[a] + nb_len[b]
        if need > len(pool):
            pool = np.concatenate((pool, np.empty(need + len(pool), dtype=np.int64)))
        nb_start[r] = total
        mark[r] = r
        for src in (a, b):
            for q in range(nb_start[src], nb_start[src] + nb_len[src]):
                other = _root(parent, pool[q])
                if mark[other] != r:
                    mark[other] = r
                    pool[total] = other
                    total += 1
                    s = _similarity(r, other, colour, texture, sizes, boxes, image_size, wc, wt, ws, wf)
                    keys, items, count = _heap_push(keys, items, count, s, r, other)
        nb_len[r] = total - nb_start[r]
    return children


@numba.njit(cache=True)
def _leaves(children, n):
    """CSR (indptr, indices) of the superpixels in each of the 2N - 1 regions."""
    m = 2 * n - 1
    counts = np.ones(m, dtype=np.int64)
    for t in range(n - 1):
        counts[n + t] = counts[children[t, 0]] + counts[children[t, 1]]
    indptr = np.zeros(m + 1, dtype=np.int64)
    for r in range(m):
        indptr[r + 1] = indptr[r] + counts[r]
    indices = np.empty(indptr[m], dtype=np.int64)
    for r in range(n):
        indices[indptr[r]] = r
    for t in range(n - 1):
        r = n + t
        pos = indptr[r]
        for child in (children[t, 0], children[t, 1]):
            k = counts[child]
            indices[pos : pos + k] = indices[indptr[child] : indptr[child] + k]
            pos += k
    return indptr, indices
