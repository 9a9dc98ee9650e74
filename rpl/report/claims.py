"""The paper's comparisons (A above B in the paper) and whether ours reproduce them: each
difference here and there, with the seeds' spread, from the rows of :mod:`rpl.report.tables`."""

from __future__ import annotations

import math

import pandas as pd

from ..experiments import EXPERIMENTS, seed_ranges
from .paper import PAPER
from .tables import MEASURE_NAMES, OURS, _cell, _ours

__all__ = ["CLAIMS", "claims"]

NaN = math.nan

# The paper's comparisons: (claim, measure, row A, row B); our experiments and the paper's
# numbers are those of the rows (OURS, PAPER).
CLAIMS = (
    (
        "balanced loss raises class accuracy",
        "class_accuracy",
        ("Table 1", "Ours, balanced loss"),
        ("Table 1", "Ours, unbalanced loss"),
    ),
    (
        "unbalanced loss raises global accuracy",
        "global_accuracy",
        ("Table 1", "Ours, unbalanced loss"),
        ("Table 1", "Ours, balanced loss"),
    ),
    (
        "free-form beats box pooling (Table 4)",
        "class_accuracy",
        ("Table 4", "Free-form (region)"),
        ("Table 4", "Box (bbox)"),
    ),
    (
        "region + box (tied) beats free-form (Table 4)",
        "class_accuracy",
        ("Table 4", "Region + box, tied"),
        ("Table 4", "Free-form (region)"),
    ),
    (
        "separate beats tied weights (Table 4)",
        "class_accuracy",
        ("Table 4", "Region + box, separate"),
        ("Table 4", "Region + box, tied"),
    ),
    (
        "free-form regions beat purely rectangular ones (Table 4)",
        "class_accuracy",
        ("Table 4", "Free-form (region)"),
        ("Table 4", "Purely rectangular"),
    ),
    (
        "end to end beats the baseline, both box pooling (Sec. 4.3)",
        "global_accuracy",
        ("Sec. 4.3", "End to end, box pooling"),
        ("Sec. 4.3", "Baseline, box pooling"),
    ),
    (
        "max before softmax beats softmax before max (Sec. 4.3)",
        "class_accuracy",
        ("Table 1", "Ours, balanced loss"),
        ("Sec. 4.3", "Softmax before max"),
    ),
    (
        "overlapping regions beat non-overlapping ones (Sec. 4.3)",
        "class_accuracy",
        ("Sec. 4.3", "Overlapping regions (Selective Search)"),
        ("Sec. 4.3", "Non-overlapping regions (superpixels)"),
    ),
    ("ours beats FCN at boundaries (Table 3)", "boundary_class_accuracy", ("Table 3", "Ours"), ("Table 3", "FCN-16s")),
    ("ours beats FCN on all pixels (Table 3)", "class_accuracy", ("Table 3", "Ours"), ("Table 3", "FCN-16s")),
    (
        "ours beats the FCN with our balanced loss at boundaries (like for like)",
        "boundary_class_accuracy",
        ("Table 3", "Ours"),
        ("Table 3", "FCN-16s, balanced loss (like for like)"),
    ),
    (
        "ours beats the FCN with our balanced loss on all pixels (like for like)",
        "class_accuracy",
        ("Table 3", "Ours"),
        ("Table 3", "FCN-16s, balanced loss (like for like)"),
    ),
    (
        "ours beats the FCN with our balanced loss at boundaries, both on the frozen backbone",
        "boundary_class_accuracy",
        ("Table 3", "Ours, frozen backbone"),
        ("Table 3", "FCN-16s, balanced loss, frozen backbone"),
    ),
    (
        "ours beats the FCN with our balanced loss on all pixels, both on the frozen backbone",
        "class_accuracy",
        ("Table 3", "Ours, frozen backbone"),
        ("Table 3", "FCN-16s, balanced loss, frozen backbone"),
    ),
    (
        "ours beats the FCN with the same unbalanced loss at boundaries (like for like)",
        "boundary_class_accuracy",
        ("Table 3", "Ours, unbalanced loss"),
        ("Table 3", "FCN-16s"),
    ),
    (
        "ours beats the FCN with the same unbalanced loss on all pixels (like for like)",
        "class_accuracy",
        ("Table 3", "Ours, unbalanced loss"),
        ("Table 3", "FCN-16s"),
    ),
    (
        "ours beats the FCN with the same unbalanced loss at boundaries, both on the frozen backbone",
        "boundary_class_accuracy",
        ("Table 3", "Ours, unbalanced loss, frozen backbone"),
        ("Table 3", "FCN-16s, unbalanced loss, frozen backbone"),
    ),
    (
        "ours beats the FCN with the same unbalanced loss on all pixels, both on the frozen backbone",
        "class_accuracy",
        ("Table 3", "Ours, unbalanced loss, frozen backbone"),
        ("Table 3", "FCN-16s, unbalanced loss, frozen backbone"),
    ),
)


def claims(results: dict) -> pd.DataFrame:
    """Each comparison the paper makes, its difference there and here (A - B, points).

    Every claim is phrased so that the paper finds A above B; the like-for-like rows (ours
    against the FCN with the same loss, fine-tuned or frozen) have no paper number, the paper's
    FCN being read as the unbalanced one and its model as the balanced one. ``reproduces`` is
    "yes" when ours is too by more than the noise, "no" when B is above A by more than that,
    "within noise" otherwise, empty until every seed of both sides has run. The noise
    (``seed range``) is the larger of the two sides' seed ranges where either has several
    seeds; between single runs, the largest seed range of any experiment of their presets in the
    same measure (:func:`rpl.experiments.seed_ranges`)."""
    records = []
    typical = {key: seed_ranges(results, key) for key in {key for _, key, _, _ in CLAIMS}}
    for claim, key, row_a, row_b in CLAIMS:
        a, b = OURS[row_a], OURS[row_b]
        paper = PAPER.get(row_a, {}).get(key, NaN) - PAPER.get(row_b, {}).get(key, NaN)
        ours_a, ours_b = _ours(results, a, key), _ours(results, b, key)
        diff = ours_a["ours"] - ours_b["ours"]
        ranges = [ours["ours_max"] - ours["ours_min"] for ours in (ours_a, ours_b) if ours["seeds"] > 1]
        if not ranges:  # single runs: the spread seeds of their presets show elsewhere
            ranges = [typical[key].get(EXPERIMENTS[e].preset, 0.0) for e in (a, b)]
        noise = max(ranges)
        if not (ours_a["complete"] and ours_b["complete"]):
            verdict = ""
        elif abs(diff) <= noise:
            verdict = "within noise"
        else:
            verdict = "yes" if diff > 0 else "no"
        records.append(
            {
                "claim": claim,
                "measure": MEASURE_NAMES[key],
                "paper A - B": _cell(paper),
                "ours A - B": _cell(diff),
                "seed range": _cell(noise) if noise and not math.isnan(diff) else "",
                "reproduces": verdict,
                "A": a,
                "B": b,
            }
        )
    return pd.DataFrame.from_records(records)
