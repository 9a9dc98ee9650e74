"""RegionSet: the one representation of an image's regions that every later stage uses.

An image is partitioned into *cells* (``superpixels``: Felzenszwalb superpixels for Selective
Search; after :meth:`RegionSet.with_ground_truth`, the *atoms* — superpixel ∩ ground-truth
segment, the unit of the paper's efficient loss, Sec. 3.5). Every region is a union of cells,
stored as a sparse region × cell membership matrix, so masks, boxes, areas and the
region-to-pixel layer's atom × region membership all come from the same two arrays.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from ..files import atomic

__all__ = ["RegionSet", "feature_cell", "ground_truth_segments"]


def feature_cell(coords, stride: int, offset: float, size: int) -> np.ndarray:
    """int64: the feature cell of pixel coordinates ``coords`` on a map of ``size`` cells whose
    cell i is centred on pixel ``offset + i·stride`` — the nearest centre, halves rounded up
    as torchvision's ROI pooling rounds box corners — clipped to the map."""
    v = (np.asarray(coords, dtype=np.float64) - offset) / stride
    return np.clip(np.floor(v + 0.5), 0, size - 1).astype(np.int64)


def ground_truth_segments(label, shape=None) -> tuple[np.ndarray, int]:
    """(int64[H, W], G): the ground-truth segments, the 8-connected components of each class
    (1..G; 0 = void), and their number."""
    label = np.asarray(label)
    if shape is not None and label.shape != tuple(shape):
        raise ValueError(f"label is {label.shape}, regions are {tuple(shape)}")
    if label.dtype.kind not in "iu" or (label.size and label.min() < 0):
        raise ValueError("label must hold non-negative integer classes (0 = void)")
    components = np.zeros(label.shape, dtype=np.int64)
    count = 0
    for c in np.unique(label[label > 0]):
        comp, k = ndimage.label(label == c, structure=np.ones((3, 3), bool))
        components[comp > 0] = comp[comp > 0] + count
        count += k
    return components, count


class RegionSet:
    """Regions of one image as unions of cells.

    Args:
        superpixels (ndarray[H, W] int): the cells, labelled 0..S-1 (every label used).
        membership (sparse or dense [R, S] bool): region r contains cell s.
        cell_labels (ndarray[S] int, optional): ground-truth label of each cell, when the cells
            are atoms (0 = void).
        is_ground_truth (ndarray[R] bool, optional): which regions are ground-truth segments.
        params (dict, optional): how the regions were made (saved with them).

    Attributes:
        boxes (ndarray[R, 4] int64): x1, y1, x2, y2 of each region, inclusive pixel
            coordinates (torchvision's box convention).
        areas (ndarray[R] int64): pixels per region.
    """

    def __init__(self, superpixels, membership, cell_labels=None, is_ground_truth=None, params=None):
        superpixels = np.asarray(superpixels)
        if superpixels.ndim != 2 or superpixels.size == 0:
            raise ValueError(f"superpixels must be a non-empty H×W label map, got {superpixels.shape}")
        if superpixels.dtype.kind not in "iu" or superpixels.min() < 0:
            raise ValueError("superpixels must hold non-negative integer labels")
        self.superpixels = superpixels.astype(np.int32, copy=False)
        num_cells = int(self.superpixels.max()) + 1
        self.cell_areas = np.bincount(self.superpixels.ravel(), minlength=num_cells)
        if np.any(self.cell_areas == 0):
            raise ValueError("superpixels must use every label 0..S-1")
        self.membership = sp.csr_array(membership, dtype=bool)
        self.membership.sum_duplicates()
        self.membership.eliminate_zeros()  # an explicitly stored False is no member (boxes, areas, cells)
        self.membership.sort_indices()
        if self.membership.shape[1] != num_cells:
            raise ValueError(f"membership has {self.membership.shape[1]} columns for {num_cells} cells")
        if np.any(np.diff(self.membership.indptr) == 0):
            raise ValueError("every region must contain at least one cell")
        r = self.membership.shape[0]
        self.cell_labels = None if cell_labels is None else np.asarray(cell_labels, dtype=np.int64)
        if self.cell_labels is not None and self.cell_labels.shape != (num_cells,):
            raise ValueError(f"cell_labels must have shape ({num_cells},)")
        self.is_ground_truth = np.zeros(r, dtype=bool) if is_ground_truth is None else np.asarray(is_ground_truth, bool)
        if self.is_ground_truth.shape != (r,):
            raise ValueError(f"is_ground_truth must have shape ({r},)")
        self.params = dict(params or {})
        self.areas = self.membership.astype(np.int64) @ self.cell_areas
        self.boxes = self._region_boxes()

    # --- construction ------------------------------------------------------------------

    @classmethod
    def from_cells(cls, superpixels, regions: Sequence[np.ndarray], **kwargs) -> "RegionSet":
        """Regions given as lists of cell indices."""
        indptr = np.concatenate([[0], np.cumsum([len(c) for c in regions])]).astype(np.int64)
        indices = np.concatenate(regions).astype(np.int64) if regions else np.zeros(0, np.int64)
        num_cells = int(np.max(superpixels)) + 1
        membership = sp.csr_array((np.ones(len(indices), bool), indices, indptr), shape=(len(regions), num_cells))
        return cls(superpixels, membership, **kwargs)

    @classmethod
    def from_superpixels(cls, superpixels) -> "RegionSet":
        """Non-overlapping regions: each superpixel is one region (Sec. 4.3's ablation)."""
        n = int(np.max(superpixels)) + 1
        return cls(superpixels, sp.identity(n, dtype=bool, format="csr"), params={"kind": "superpixels"})

    @classmethod
    def from_boxes(cls, boxes, shape) -> "RegionSet":
        """Purely rectangular regions (Table 4's "rectangles" row): every region is a box.

        The cells are the pieces of the image that the boxes cut it into (pixels inside
        exactly the same boxes), so region-to-pixel works unchanged.

        Args:
            boxes (array[R, 4] int): x1, y1, x2, y2, inclusive, inside the image.
            shape: (H, W).
        """
        boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        h, w = shape
        if len(boxes) == 0:
            raise ValueError("from_boxes needs at least one box")
        bad = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] >= w) | (boxes[:, 3] >= h)
        bad |= (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if bad.any():
            raise ValueError(f"box {boxes[np.argmax(bad)].tolist()} is empty or outside {h}×{w}")
        bits = np.zeros((h, w, (len(boxes) + 7) // 8), dtype=np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            bits[y1 : y2 + 1, x1 : x2 + 1, i // 8] |= np.uint8(1 << (7 - i % 8))
        return cls._from_bits(bits, len(boxes), {"kind": "boxes"})

    @classmethod
    def from_masks(cls, masks, params=None) -> "RegionSet":
        """Regions given as boolean masks, from any source, overlapping or not.

        The cells are the pieces the masks cut the image into (pixels inside exactly the same
        masks; pixels in no mask are cells of no region), so both layers take any proposals.

        Args:
            masks (ndarray[R, H, W] bool): one mask per region, none empty.
            params (dict, optional): how the masks were made (saved with them).
        """
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.dtype != bool or masks.shape[0] == 0:
            raise ValueError(f"masks must be a non-empty bool array [R, H, W], got {masks.dtype} {masks.shape}")
        empty = ~masks.reshape(len(masks), -1).any(axis=1)
        if empty.any():
            raise ValueError(f"mask {int(np.argmax(empty))} is empty: every region needs a pixel")
        bits = np.moveaxis(np.packbits(masks, axis=0), 0, -1)  # [H, W, ceil(R / 8)], region i at bit 7 - i % 8
        return cls._from_bits(bits, len(masks), {"kind": "masks", **(params or {})})

    @classmethod
    def _from_bits(cls, bits, count: int, params: dict) -> "RegionSet":
        """Regions from ``bits`` [H, W, B] uint8, bit 7 - i % 8 of byte i // 8 set where
        region i holds the pixel: one cell per distinct set of regions."""
        h, w, _ = bits.shape
        rows = np.ascontiguousarray(bits.reshape(h * w, -1))
        keys = rows.view(np.dtype((np.void, rows.shape[1]))).ravel()  # one bytes key per pixel: a fast 1-D unique
        _, first, cells = np.unique(keys, return_index=True, return_inverse=True)
        inside = np.unpackbits(rows[first], axis=1)[:, :count].astype(bool)  # [S, R]
        return cls(cells.reshape(h, w), inside.T, params=params)

    def subset(self, index) -> "RegionSet":
        """The regions selected by ``index`` (indices or a bool mask), same cells."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return RegionSet(
            self.superpixels,
            self.membership[index],
            self.cell_labels,
            self.is_ground_truth[index],
            self.params,
        )

    def resampled(self, rows, cols) -> "RegionSet":
        """The same regions on another pixel grid: pixel (i, j) takes the cell of pixel
        (rows[i], cols[j]), e.g. a nearest-neighbour resize or, with reversed indices, a flip."""
        return RegionSet(
            self.superpixels[np.ix_(rows, cols)], self.membership, self.cell_labels, self.is_ground_truth, self.params
        )

    def with_params(self, params: dict) -> "RegionSet":
        self.params = dict(params)
        return self

    def with_ground_truth(
        self, label, mode: str = "superpixels", min_inside: float = 0.5, segments=None
    ) -> "RegionSet":
        """For training: add the ground-truth regions and split the cells into atoms.

        Ground-truth segments are the 8-connected components of each class
        (:func:`ground_truth_segments`). Three ways to turn them into regions:

        * ``"superpixels"`` (the authors' code, ``ImdbE2S2.m``): a segment's region is the union
          of the cells that lie at least ``min_inside`` inside it; segments with no such cell are
          dropped. Every region stays a union of cells, as at test time, and the atoms are
          cell × label: the per-label pixel counts of each cell, which share all its scores.
        * ``"exact"``: the segments themselves; the atoms are cell ∩ segment (or ∩ the void
          pixels), so a ground-truth region may split a cell (rpl before issue 12).
        * ``"boxes"``, for purely rectangular regions (:meth:`from_boxes`, Table 4): each
          segment's bounding box; the cells become the pieces that all boxes, the proposals'
          and the segments', cut the image into, and the atoms are cell × label.

        Either way each atom has one label, the atoms partition the image and every region is a
        union of atoms (the paper's Sec. 3.5).

        Args:
            label (ndarray[H, W] int): ground truth, 0 = void.
            mode: ``"superpixels"``, ``"exact"`` or ``"boxes"``.
            min_inside: with ``"superpixels"``, the fraction of a cell's pixels that must lie in
                the segment.
            segments: ``ground_truth_segments(label)``, when the caller already has it.

        Returns:
            RegionSet whose cells are the atoms (``cell_labels`` gives their labels); the
            proposals come first, then the ground-truth regions (``is_ground_truth``).
        """
        if mode not in ("superpixels", "exact", "boxes"):
            raise ValueError(f"mode must be 'superpixels', 'exact' or 'boxes', got {mode!r}")
        if mode == "boxes" and self.params.get("kind") != "boxes":
            raise ValueError(
                "mode='boxes' adds boxes to purely rectangular regions (RegionSet.from_boxes), "
                f"not to regions of kind {self.params.get('kind', 'selective-search')!r}"
            )
        label = np.asarray(label)
        components, count = self._segments(label, segments)
        cells, proposals = self.superpixels, self.membership
        if mode == "boxes":
            found = ndimage.find_objects(components)  # the segments 1..count, as slices
            boxes = np.array([[x.start, y.start, x.stop - 1, y.stop - 1] for y, x in found], np.int64).reshape(-1, 4)
            rects = RegionSet.from_boxes(np.concatenate([self.boxes, boxes]), self.shape)
            cells, proposals, boxed = rects.superpixels, rects.membership[: len(self)], rects.membership[len(self) :]
        split = components if mode == "exact" else label  # what divides a cell into atoms
        base = int(split.max()) + 1
        codes, atoms = np.unique((cells.astype(np.int64) * base + split).ravel(), return_inverse=True)
        atoms = atoms.reshape(label.shape)
        atom_labels = np.zeros(len(codes), dtype=np.int64)
        atom_labels[atoms.ravel()] = label.ravel()
        atom_cell = codes // base
        if mode == "exact":
            atom_component = codes % base
            gt_rows = atom_component[atom_component > 0] - 1
            gt = sp.csr_array(
                (np.ones(len(gt_rows), bool), (gt_rows, np.flatnonzero(atom_component > 0))),
                shape=(count, len(codes)),
            )
        elif mode == "boxes":
            gt = boxed[:, atom_cell]
        else:
            inside = self._segment_pixels(components, count) >= min_inside * self.cell_areas[:, None]  # [S, G]
            gt = sp.csr_array(inside.T[inside.any(axis=0)])[:, atom_cell]
        proposals = proposals[:, atom_cell]  # a proposal holds every atom of its cells
        return RegionSet(
            atoms,
            sp.vstack([proposals, gt], format="csr"),
            cell_labels=atom_labels,
            is_ground_truth=np.concatenate([self.is_ground_truth, np.ones(gt.shape[0], bool)]),
            params=self.params,
        )

    def ground_truth_iou(self, label, segments=None) -> np.ndarray:
        """float64[R]: each region's best intersection-over-union with a ground-truth segment
        (:func:`ground_truth_segments`, or ``segments`` when the caller has them); 0 for every
        region when nothing is labelled. The authors train only on proposals with a best IoU of
        at least 0.1 (``ImdbE2S2.m``)."""
        iou, _ = self.segment_ious(label, segments)
        return iou.max(1) if iou.shape[1] else np.zeros(len(self))

    def segment_ious(self, label, segments=None) -> tuple[np.ndarray, np.ndarray]:
        """(float64[R, G], int64[G]): the intersection-over-union of every region with every
        ground-truth segment (:func:`ground_truth_segments`, in its order, or ``segments``),
        and each segment's class."""
        label = np.asarray(label)
        components, count = self._segments(label, segments)
        pixels = self._segment_pixels(components, count)  # [S, G]
        inter = self.membership.astype(np.int64) @ pixels
        iou = inter / (self.areas[:, None] + pixels.sum(0)[None] - inter)
        classes = np.zeros(count, dtype=np.int64)
        classes[components[components > 0] - 1] = label[components > 0]
        return iou, classes

    def _segments(self, label, segments) -> tuple[np.ndarray, int]:
        if segments is None:
            return ground_truth_segments(label, self.shape)
        components, count = segments
        if components.shape != label.shape:
            raise ValueError(f"segments are {components.shape}, label is {label.shape}")
        return components, count

    def _segment_pixels(self, components, count) -> np.ndarray:
        """int64[S, G]: pixels of cell s in segment g."""
        flat = self.superpixels.astype(np.int64).ravel() * (count + 1) + components.ravel()
        return np.bincount(flat, minlength=self.num_cells * (count + 1)).reshape(self.num_cells, count + 1)[:, 1:]

    # --- views -------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.membership.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return self.superpixels.shape

    @property
    def num_cells(self) -> int:
        return self.membership.shape[1]

    def cells(self, i: int) -> np.ndarray:
        """The cell indices of region ``i``."""
        m = self.membership
        return m.indices[m.indptr[i] : m.indptr[i + 1]]

    def cell_membership(self):
        """torch sparse CSR bool Tensor[S, R]: which regions contain each cell — the
        membership :func:`rpl.ops.region_to_pixel` takes."""
        import torch

        t = self.membership.T.tocsr()
        t.sort_indices()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only the basics
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                torch.from_numpy(t.indptr.astype(np.int64)),
                torch.from_numpy(t.indices.astype(np.int64)),
                torch.ones(t.nnz, dtype=torch.bool),
                size=t.shape,
                check_invariants=True,
            )

    def mask(self, i: int) -> np.ndarray:
        """bool[H, W]: the pixels of region ``i``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"region {i} out of range for {len(self)} regions")
        inside = np.zeros(self.num_cells, dtype=bool)
        inside[self.cells(i % len(self))] = True
        return inside[self.superpixels]

    def masks(self, max_bytes: int = 2**31) -> np.ndarray:
        """bool[R, H, W]: all masks (dense; for figures and tests). Refused, with a ValueError,
        when they would take more than ``max_bytes`` (2 GiB): use :meth:`subset` first."""
        need = len(self) * self.superpixels.size
        if need > max_bytes:
            raise ValueError(
                f"masks() of {len(self)} regions on {self.shape[0]}×{self.shape[1]} pixels needs "
                f"{need / 2**30:.1f} GiB (max_bytes {max_bytes / 2**30:.1f} GiB): take a subset first"
            )
        return self.membership.toarray()[:, self.superpixels]

    def feature_masks(self, stride: int, shape=None, offset: float = 0.0) -> np.ndarray:
        """bool[R, h, w]: which cells of a stride-``stride`` feature map lie inside each region.

        Feature cell i is centred on pixel ``offset + i·stride`` (MobileNetV2: 0, VGG-16: 7.5;
        ``Backbone.offset``), so pixel x belongs to the nearest cell, :func:`feature_cell`; a cell
        is inside a region when one of its pixels is. :meth:`pooling_boxes` puts the boxes on
        the same cells, so every region has at least one cell inside its pooling bins.

        Args:
            stride: the backbone's output stride (16 for VGG-16 conv5 and our MobileNetV2).
            shape: (h, w) of the feature map; default ceil(H / stride), ceil(W / stride).
            offset: the pixel on which feature cell 0 is centred.
        """
        stride = int(stride)
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        H, W = self.shape
        h, w = shape if shape is not None else (-(-H // stride), -(-W // stride))
        fy = feature_cell(np.arange(H), stride, offset, h)
        fx = feature_cell(np.arange(W), stride, offset, w)
        feature_cell_of_pixel = (fy[:, None] * w + fx[None, :]).ravel()
        # [h*w, S]: does feature cell f see image cell s
        sees = sp.csr_array(
            (np.ones(feature_cell_of_pixel.size, bool), (feature_cell_of_pixel, self.superpixels.ravel())),
            shape=(h * w, self.num_cells),
        )
        inside = self.membership.astype(np.int32) @ sees.T.astype(np.int32)
        return (inside.toarray() > 0).reshape(len(self), h, w)

    def pooling_boxes(self, stride: int, shape, offset: float = 0.0) -> np.ndarray:
        """float64[R, 4]: the boxes as :func:`rpl.ops.free_form_roi_pool` should get them with
        ``spatial_scale = 1 / stride``: shifted by ``offset`` and clipped to the feature map, so
        that its rounding (torchvision's, ``round(x / stride)``) gives each corner the cell
        :meth:`feature_masks` gives that pixel."""
        h, w = shape
        boxes = self.boxes.astype(np.float64) - offset
        limits = np.array([w - 1, h - 1, w - 1, h - 1], np.float64) * stride
        return np.clip(boxes, 0, limits)

    def bin_masks(self, output_size=(7, 7)) -> np.ndarray:
        """bool[R, oh, ow]: each region's mask inside its box, resized bilinearly (with
        antialiasing, as MATLAB's ``imresize``) to the pooling grid and thresholded at > 0 — the
        box-relative masks with which the authors' code zeroes the bins of box ROI pooling that
        lie outside the region (``roiPooling_freeform_forward.m``)."""
        import torch
        import torch.nn.functional as F

        oh, ow = output_size
        out = np.zeros((len(self), oh, ow), dtype=bool)
        for i, (x1, y1, x2, y2) in enumerate(self.boxes):
            inside = np.zeros(self.num_cells, dtype=np.float32)
            inside[self.cells(i)] = 1
            crop = torch.from_numpy(inside[self.superpixels[y1 : y2 + 1, x1 : x2 + 1]])[None, None]
            out[i] = (
                F.interpolate(crop, size=(oh, ow), mode="bilinear", antialias=True, align_corners=False)[0, 0] > 0
            ).numpy()
        return out

    def _region_boxes(self) -> np.ndarray:
        slices = ndimage.find_objects(self.superpixels + 1)
        cell_boxes = np.array([(s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1) for s in slices], dtype=np.int64)
        m = self.membership
        if len(self) == 0:
            return np.zeros((0, 4), dtype=np.int64)
        starts = m.indptr[:-1]
        per = cell_boxes[m.indices]
        return np.stack(
            [
                np.minimum.reduceat(per[:, 0], starts),
                np.minimum.reduceat(per[:, 1], starts),
                np.maximum.reduceat(per[:, 2], starts),
                np.maximum.reduceat(per[:, 3], starts),
            ],
            axis=1,
        )

    def __repr__(self) -> str:
        gt = int(self.is_ground_truth.sum())
        extra = f", {gt} ground truth" if gt else ""
        return f"RegionSet({len(self)} regions{extra} over {self.num_cells} cells, {self.shape[0]}×{self.shape[1]})"

    # --- files -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write to a compressed ``.npz`` atomically (a temporary file renamed into place)."""
        m = self.membership
        with atomic(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                superpixels=self.superpixels,
                indptr=m.indptr.astype(np.int64),
                indices=m.indices.astype(np.int32),
                shape=np.array(m.shape),
                cell_labels=self.cell_labels if self.cell_labels is not None else np.zeros(0, np.int64),
                is_ground_truth=self.is_ground_truth,
                params=np.array(json.dumps(self.params)),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RegionSet":
        """Read a file written by :meth:`save`."""
        try:
            with open(path, "rb") as f, np.load(f) as z:  # np.load(path) leaks the file when it is no zip
                membership = sp.csr_array(
                    (np.ones(len(z["indices"]), bool), z["indices"], z["indptr"]),
                    shape=tuple(z["shape"]),
                )
                labels = z["cell_labels"]
                return cls(
                    z["superpixels"],
                    membership,
                    cell_labels=labels if labels.size else None,
                    is_ground_truth=z["is_ground_truth"],
                    params=json.loads(str(z["params"])),
                )
        except FileNotFoundError:
            raise
        except Exception as e:  # empty, truncated, corrupt or foreign: EOFError, zlib.error, BadZipFile, ...
            raise ValueError(f"cannot read a RegionSet from {path}: {str(e) or type(e).__name__}") from e
