"""The paper's tables beside ours, built from ``results/`` (one JSON per run).

Each table is a :class:`pandas.DataFrame` with the paper's number, ours (mean over seeds, with
the lowest and highest seed and the seed count) and the results files the row was read from, so
every cell can be traced. Numbers are percentages. A run without a results file gives NaN.

The paper's numbers are in :mod:`rpl.report.paper`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..experiments import EXPERIMENTS, load_results, seed_results
from .paper import PAPER

__all__ = [
    "measure",
    "table1",
    "table2",
    "table3",
    "table4",
    "section43",
    "all_tables",
    "pretty",
    "markdown",
    "markdown_table",
]

NaN = math.nan

# Our rows: (table, row) -> experiment whose runs give our numbers.
OURS = {
    ("Table 2", "Ours"): "pascal-context_cpu",
    ("Table 1", "Ours, balanced loss"): "ablation_free-form",
    ("Table 1", "Ours, unbalanced loss"): "ablation_unbalanced",
    ("Table 1", "Ours, balanced loss, fine-tuned backbone, region + box separate"): "e2s2_cpu",
    # The paper's FCN is most likely trained with the unbalanced loss, its authors' FCN default
    # (useInvFreqWeights=false in their fcnTrainGeneric.m; its 49.3% is near Long et al.'s 51.7%);
    # the balanced one is like for like with ours, and ours with the unbalanced loss with it.
    ("Table 3", "FCN-16s"): "fcn_cpu_unbalanced",
    ("Table 3", "FCN-16s, balanced loss (like for like)"): "fcn_cpu",
    ("Table 3", "Ours"): "e2s2_cpu",
    ("Table 3", "Ours, unbalanced loss"): "e2s2_cpu_unbalanced",
    # Both models on the frozen ImageNet backbone (the ablation preset, 10 epochs), with each
    # loss: what the layers after the backbone give alone, before fine-tuning moves it.
    ("Table 3", "FCN-16s, balanced loss, frozen backbone"): "frozen_fcn",
    ("Table 3", "Ours, frozen backbone"): "frozen_linear-1x1",
    ("Table 3", "FCN-16s, unbalanced loss, frozen backbone"): "frozen_fcn_unbalanced",
    ("Table 3", "Ours, unbalanced loss, frozen backbone"): "frozen_linear-1x1_unbalanced",
    ("Table 3", "Ours, PASCAL Context"): "pascal-context_cpu",
    ("Table 4", "Box (bbox)"): "ablation_box",
    ("Table 4", "Free-form (region)"): "ablation_free-form",
    ("Table 4", "Region + box, tied"): "ablation_both-tied",
    ("Table 4", "Region + box, separate"): "ablation_both-separate",
    ("Table 4", "Purely rectangular"): "ablation_rectangles",
    ("Sec. 4.3", "Baseline, box pooling"): "ablation_baseline",
    # Sec. 4.3 compares global accuracy, which the paper reports from the unbalanced loss (Table 1),
    # as the baseline's unweighted region loss (Eq. 2) trains for it too.
    ("Sec. 4.3", "End to end, box pooling"): "ablation_box-unbalanced",
    ("Sec. 4.3", "Softmax before max"): "ablation_softmax-max",
    ("Sec. 4.3", "Overlapping regions (Selective Search)"): "ablation_free-form",
    ("Sec. 4.3", "Non-overlapping regions (superpixels)"): "ablation_superpixels",
}


LITERATURE_ROW = "(literature)"  # the results column of a row with no experiment of ours

# Paper rows we cannot run here, and why.
_NO_PASCAL = "needs the PASCAL Context training set (only a 50-image val sample here)"
NOT_HERE = {
    ("Table 2", "Ours"): _NO_PASCAL,
    ("Table 3", "Ours, PASCAL Context"): _NO_PASCAL,
    ("Table 3", "FCN-16s, PASCAL Context"): _NO_PASCAL,
}


def measure(payload: dict, key: str) -> float:
    """A measure of one results payload in percent; ``boundary_`` prefixes read the 4-px band."""
    part, name = ("boundary", key[len("boundary_") :]) if key.startswith("boundary_") else ("all", key)
    value = payload[part][name]
    return NaN if value is None else 100.0 * value


def _ours(results: dict, experiment: str, key: str) -> dict:
    ran = seed_results(results, experiment)
    values = [measure(payload, key) for payload in ran]
    return {
        "complete": len(ran) == len(EXPERIMENTS[experiment].seeds),
        "ours": float(np.mean(values)) if values else NaN,
        "ours_min": min(values) if values else NaN,
        "ours_max": max(values) if values else NaN,
        "seeds": len(ran),
        "preset": ", ".join(sorted({payload["config"]["preset"] for payload in ran})) or EXPERIMENTS[experiment].preset,
        "results": ", ".join(payload["results_file"] for payload in ran) or "(not run yet)",
    }


def _table(results: dict, table: str, keys: tuple) -> pd.DataFrame:
    rows = []
    for (t, row), paper in PAPER.items():
        if t == table:
            rows.append((row, paper))
    for (t, row), _ in OURS.items():
        if t == table and (t, row) not in PAPER:
            rows.append((row, {}))
    rows.sort(key=lambda r: r[0].endswith(", PASCAL Context"))  # Table 3: SIFT Flow's rows first
    records = []
    for row, paper in rows:
        for key in keys:
            record = {"row": row, "measure": key, "paper": paper.get(key, NaN)}
            experiment = OURS.get((table, row))
            if experiment is None:
                record.update(
                    ours=NaN,
                    ours_min=NaN,
                    ours_max=NaN,
                    seeds=0,
                    preset="",
                    results=NOT_HERE.get((table, row), LITERATURE_ROW),
                )
            else:
                record.update(_ours(results, experiment, key))
                if record["seeds"] == 0 and (table, row) in NOT_HERE:
                    record["results"] = NOT_HERE[(table, row)]
            records.append(record)
    frame = pd.DataFrame.from_records(records)
    return frame


def table1(results: dict) -> pd.DataFrame:
    """SIFT Flow, balanced versus unbalanced pixel loss, with the literature rows."""
    return _table(results, "Table 1", ("class_accuracy", "global_accuracy", "mean_iou"))


def table2(results: dict) -> pd.DataFrame:
    """PASCAL Context, with the literature rows (ours need the PASCAL Context training set)."""
    return _table(results, "Table 2", ("class_accuracy", "global_accuracy", "mean_iou"))


def table3(results: dict) -> pd.DataFrame:
    """Class-average accuracy on all pixels and within 4 px of a boundary, ours versus the FCN
    on the same backbone, fine-tuned and frozen, each model with each loss."""
    return _table(results, "Table 3", ("class_accuracy", "boundary_class_accuracy"))


def table4(results: dict) -> pd.DataFrame:
    """ROI pooling variants, class-average accuracy."""
    return _table(results, "Table 4", ("class_accuracy",))


def section43(results: dict) -> pd.DataFrame:
    """Sec. 4.3: baseline versus end to end, softmax before max, non-overlapping regions."""
    return _table(results, "Sec. 4.3", ("class_accuracy", "global_accuracy"))


def all_tables(results_dir="results") -> dict[str, pd.DataFrame]:
    """{title: table} for every table, read from ``results_dir``."""
    results = load_results(results_dir)
    return {
        "Table 1": table1(results),
        "Table 2": table2(results),
        "Table 3": table3(results),
        "Table 4": table4(results),
        "Sec. 4.3": section43(results),
    }


def _cell(value: float, low: float = NaN, high: float = NaN, seeds: int = 1) -> str:
    if math.isnan(value):
        return "–"
    if seeds > 1:
        return f"{value:.1f} ({low:.1f}–{high:.1f})"
    return f"{value:.1f}"


MEASURE_NAMES = {
    "class_accuracy": "class acc.",
    "global_accuracy": "global acc.",
    "mean_iou": "mIoU",
    "boundary_class_accuracy": "class acc., 4-px boundaries",
}


def markdown(results_dir="results") -> str:
    """One Markdown table of every row, paper versus ours, with the results files: the README's.
    A literature row takes one line, its measures side by side."""
    lines = ["| table | row | measure | paper | ours | preset | results |", "|---|---|---|---|---|---|---|"]
    for title, frame in all_tables(results_dir).items():
        for row, group in frame.groupby("row", sort=False):
            if (group["results"] == LITERATURE_ROW).all():
                group = group[group["paper"].notna()]
                measures = " / ".join(MEASURE_NAMES[m].removesuffix(" acc.") for m in group["measure"])
                paper = " / ".join(_cell(v) for v in group["paper"])
                lines.append(f"| {title} | {row} | {measures} | {paper} | – |  | {LITERATURE_ROW} |")
                continue
            for r in group.itertuples():
                if math.isnan(r.paper) and math.isnan(r.ours):
                    continue
                lines.append(
                    f"| {title} | {r.row} | {MEASURE_NAMES[r.measure]} | {_cell(r.paper)} | "
                    f"{_cell(r.ours, r.ours_min, r.ours_max, r.seeds)} | {r.preset} | {r.results} |"
                )
    return "\n".join(lines) + "\n"


def markdown_table(frame: pd.DataFrame) -> str:
    """Any table as Markdown: numbers to one decimal, "–" for NaN."""

    def cell(value):
        if isinstance(value, float):
            return "–" if math.isnan(value) else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def pretty(frame: pd.DataFrame) -> pd.DataFrame:
    """A table for reading: one line per row and measure, paper, ours (mean, and the seeds'
    range where there are several), difference, and the results files."""
    out = pd.DataFrame(
        {
            "row": frame["row"],
            "measure": frame["measure"].map(MEASURE_NAMES),
            "paper": [_cell(v) for v in frame["paper"]],
            "ours": [
                _cell(m, lo, hi, n)
                for m, lo, hi, n in zip(frame["ours"], frame["ours_min"], frame["ours_max"], frame["seeds"])
            ],
            "ours - paper": [_cell(o - p) for o, p in zip(frame["ours"], frame["paper"])],
            "seeds": frame["seeds"],
            "results": frame["results"],
        }
    )
    keep = ~(frame["paper"].isna() & frame["ours"].isna())
    return out[keep.to_numpy()].reset_index(drop=True)
