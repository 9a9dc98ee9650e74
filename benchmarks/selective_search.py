"""Selective Search, ours (free-form masks) versus OpenCV's C++ (boxes), in one process.

Both run the same configuration on real SIFT Flow test images, one thread each: one colour
space (RGB), Felzenszwalb k=100, sigma=0.8, min size 100, and the two hierarchies
colour+texture+size+fill and texture+size+fill. Prints time per image and the ratio, our
proposals per image per colour space, and the average best overlap (ABO) of our proposals with
the ground-truth regions (8-connected components of each class) of the test images — as masks,
and as boxes beside OpenCV's boxes.

    python benchmarks/selective_search.py [--time-images 50] [--abo-images 200]

Needs opencv-contrib-python-headless (in the dev extra) and $RPL_DATA.
Writes results/selective_search_benchmark.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from rpl.data import SiftFlow
from rpl.files import write_json
from rpl.proposals import COLOR_SPACES, selective_search
from rpl.provenance import provenance

try:
    import cv2
    from cv2.ximgproc import segmentation as cvseg
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit(
        "benchmarks/selective_search.py needs OpenCV's contrib modules: pip install opencv-contrib-python-headless"
    )


def opencv_selective_search(image: np.ndarray) -> np.ndarray:
    """OpenCV's Selective Search in our configuration; returns boxes x1 y1 x2 y2 (inclusive)."""
    ss = cvseg.createSelectiveSearchSegmentation()
    ss.addImage(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    ss.addGraphSegmentation(cvseg.createGraphSegmentation(0.8, 100, 100))
    colour = cvseg.createSelectiveSearchSegmentationStrategyColor
    texture = cvseg.createSelectiveSearchSegmentationStrategyTexture
    size = cvseg.createSelectiveSearchSegmentationStrategySize
    fill = cvseg.createSelectiveSearchSegmentationStrategyFill
    ss.addStrategy(cvseg.createSelectiveSearchSegmentationStrategyMultiple(colour(), texture(), size(), fill()))
    ss.addStrategy(cvseg.createSelectiveSearchSegmentationStrategyMultiple(texture(), size(), fill()))
    xywh = ss.process()
    return np.column_stack([xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2] - 1, xywh[:, 1] + xywh[:, 3] - 1])


def ground_truth_regions(label: np.ndarray) -> np.ndarray:
    """bool[G, H, W]: 8-connected components of each class."""
    masks = []
    for c in np.unique(label[label > 0]):
        comp, k = ndimage.label(label == c, structure=np.ones((3, 3)))
        masks += [comp == i for i in range(1, k + 1)]
    return np.array(masks).reshape(-1, *label.shape)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[A, B] IoU of two stacks of masks."""
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    return inter / (fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[A, B] IoU of inclusive-coordinate boxes."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1 + 1, 0, None) * np.clip(y2 - y1 + 1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0] + 1) * (r[:, 3] - r[:, 1] + 1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        out.append((xs.min(), ys.min(), xs.max(), ys.max()))
    return np.array(out).reshape(-1, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time-images", type=int, default=50)
    parser.add_argument("--abo-images", type=int, default=200)
    parser.add_argument("--out", default="results/selective_search_benchmark.json")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    test = SiftFlow("test")
    images = [test[i].image for i in range(min(args.time_images, len(test)))]
    selective_search(images[0])  # compile the Numba kernels before timing
    opencv_selective_search(images[0])

    ours, theirs = [], []
    for image in images:  # interleaved, so both see the same machine load
        t = time.perf_counter()
        selective_search(image, "rgb")
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        opencv_selective_search(image)
        theirs.append(time.perf_counter() - t)
    per_space = {}
    for cs in COLOR_SPACES:
        t = time.perf_counter()
        for image in images:
            selective_search(image, cs)
        per_space[cs] = {"ms_per_image": 1000 * (time.perf_counter() - t) / len(images)}

    abo = {cs: [] for cs in (*COLOR_SPACES, "all three")}
    box_abo = {"ours (rgb, boxes of the masks)": [], "opencv (rgb)": []}
    counts = {cs: [] for cs in COLOR_SPACES}
    for i in range(min(args.abo_images, len(test))):
        sample = test[i]
        gt = ground_truth_regions(sample.label)
        if not len(gt):
            continue
        best_all = np.zeros(len(gt))
        for cs in COLOR_SPACES:
            regions = selective_search(sample.image, cs)
            counts[cs].append(len(regions))
            best = mask_iou(gt, regions.masks()).max(1)
            abo[cs] += best.tolist()
            best_all = np.maximum(best_all, best)
            if cs == "rgb":
                gt_boxes = tight_boxes(gt)
                box_abo["ours (rgb, boxes of the masks)"] += box_iou(gt_boxes, regions.boxes).max(1).tolist()
                box_abo["opencv (rgb)"] += box_iou(gt_boxes, opencv_selective_search(sample.image)).max(1).tolist()
        abo["all three"] += best_all.tolist()

    ms_ours, ms_cv = 1000 * statistics.mean(ours), 1000 * statistics.mean(theirs)
    print(f"Selective Search on {len(images)} SIFT Flow test images (256x256), one thread each, RGB")
    print(f"  ours (masks + boxes): {ms_ours:7.1f} ms/image (median {1000 * statistics.median(ours):.1f})")
    print(f"  OpenCV (boxes only):  {ms_cv:7.1f} ms/image (median {1000 * statistics.median(theirs):.1f})")
    print(f"  ratio ours/OpenCV:    {ms_ours / ms_cv:7.2f}x  (target <= 1.0x)")
    for cs in COLOR_SPACES:
        per_space[cs]["proposals_per_image"] = float(np.mean(counts[cs]))
        print(
            f"  {cs}: {per_space[cs]['ms_per_image']:.1f} ms/image, "
            f"{per_space[cs]['proposals_per_image']:.1f} proposals/image (paper: ~370)"
        )
    n_gt = len(abo["rgb"])
    print(f"Average best overlap with {n_gt} ground-truth regions of {min(args.abo_images, len(test))} test images")
    for k, v in abo.items():
        print(f"  masks, {k:10s}: {np.mean(v):.3f}")
    for k, v in box_abo.items():
        print(f"  boxes, {k}: {np.mean(v):.3f}")
    payload = provenance(
        benchmark="selective_search",
        command="python benchmarks/selective_search.py " + " ".join(sys.argv[1:]),
        opencv=cv2.__version__,
        time_images=len(images),
        ms_per_image={"ours_rgb": ms_ours, "opencv_rgb": ms_cv},
        ratio_ours_over_opencv=ms_ours / ms_cv,
        per_color_space=per_space,
        abo_images=min(args.abo_images, len(test)),
        ground_truth_regions=n_gt,
        average_best_overlap_masks={k: float(np.mean(v)) for k, v in abo.items()},
        average_best_overlap_boxes={k: float(np.mean(v)) for k, v in box_abo.items()},
    )
    write_json(Path(args.out), payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
