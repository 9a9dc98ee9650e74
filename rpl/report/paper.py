"""The paper's numbers, as printed in Caesar et al. (ECCV 2016) for SIFT Flow and PASCAL
Context (percent), literature rows of Tables 1 and 2 included (the paper's citation numbers in
brackets; where a work gives several results the paper reports the best of each measure); the
mean IoU of Long et al.'s row of Table 1 (FCN-16s) is from their paper (CVPR 2015), Table 6.
:mod:`rpl.report.tables` sets ours beside them."""

from __future__ import annotations

__all__ = ["PAPER", "LITERATURE"]

# The literature rows of Tables 1 and 2, in the paper's order: (method [ref] year, class
# accuracy, global accuracy, mean IoU); None = not reported.
LITERATURE = {
    "Table 1": (
        ("Byeon et al. [41] 2015", 22.6, 68.7, None),
        ("Gould et al. [45] 2014", 25.7, 78.4, None),
        ("Tighe & Lazebnik [13] 2010", 29.4, 76.9, None),
        ("Pinheiro & Collobert [25] 2014", 30.0, 76.5, None),
        ("Gatta et al. [46] 2014", 32.1, 78.7, None),
        ("Singh & Kosecka [47] 2013", 33.8, 79.2, None),
        ("Shuai et al. [42] 2015", 39.7, 80.1, None),
        ("Tighe & Lazebnik [14] 2013", 41.1, 78.6, None),
        ("Kekeç et al. [40] 2014", 45.8, 70.4, None),
        ("Sharma et al. [11] 2014", 48.0, 79.6, None),
        ("Yang et al. [16] 2014", 48.7, 79.8, None),
        ("George [5] 2015", 50.1, 81.7, None),
        ("Farabet et al. [21] 2013", 50.8, 78.5, None),
        ("Long et al. (FCN) [23] 2015", 51.7, 85.2, 39.5),
        ("Sharma et al. [12] 2015", 52.8, 80.9, None),
        ("Caesar et al. [2] 2015", 55.6, None, None),
        ("Eigen & Fergus [20] 2015", 55.7, 86.8, None),
    ),
    "Table 2": (
        ("O2P (errata of Mottaghi et al.) [3] 2012", None, None, 18.1),
        ("Dai et al. (CFM) [4] 2015", None, None, 34.4),
        ("Long et al. (FCN) [23] 2015", 46.5, 65.9, 35.1),
        ("Dai et al. (BoxSup) [19] 2015", None, None, 35.7),
        ("Zheng et al. (CRF-RNN) [26] 2015", None, None, 39.3),
        ("Dai et al. (BoxSup, additional boxes) [19] 2015", None, None, 40.5),
    ),
}


def _literature(table: str) -> dict:
    keys = ("class_accuracy", "global_accuracy", "mean_iou")
    return {(table, row): {k: v for k, v in zip(keys, values) if v is not None} for row, *values in LITERATURE[table]}


# Published numbers (percent). Keys: (table, row) -> {measure: value}.
PAPER = {
    **_literature("Table 1"),
    ("Table 1", "Ours, balanced loss"): {"class_accuracy": 64.0},
    ("Table 1", "Ours, unbalanced loss"): {"global_accuracy": 84.3},
    **_literature("Table 2"),
    ("Table 2", "Ours"): {"class_accuracy": 49.9, "global_accuracy": 62.4, "mean_iou": 32.5},
    ("Table 3", "FCN-16s"): {"class_accuracy": 49.3, "boundary_class_accuracy": 37.9},
    ("Table 3", "Ours"): {"class_accuracy": 64.0, "boundary_class_accuracy": 57.3},
    ("Table 3", "FCN-16s, PASCAL Context"): {"class_accuracy": 48.1, "boundary_class_accuracy": 34.0},
    ("Table 3", "Ours, PASCAL Context"): {"class_accuracy": 49.9, "boundary_class_accuracy": 38.9},
    ("Table 4", "Box (bbox)"): {"class_accuracy": 62.3},
    ("Table 4", "Free-form (region)"): {"class_accuracy": 62.8},
    ("Table 4", "Region + box, tied"): {"class_accuracy": 63.4},
    ("Table 4", "Region + box, separate"): {"class_accuracy": 64.0},
    ("Table 4", "Purely rectangular"): {"class_accuracy": 59.3},
    ("Sec. 4.3", "Baseline, box pooling"): {"global_accuracy": 60.9},
    ("Sec. 4.3", "End to end, box pooling"): {"global_accuracy": 83.7},
    ("Sec. 4.3", "Softmax before max"): {"class_accuracy": 64.0 - 8.7},
    ("Sec. 4.3", "Overlapping regions (Selective Search)"): {"class_accuracy": 64.0},
    ("Sec. 4.3", "Non-overlapping regions (superpixels)"): {"class_accuracy": 60.0},
}
