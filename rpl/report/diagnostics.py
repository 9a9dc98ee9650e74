"""Why a region model gets what it gets (issue 12): what the regions allow, fit versus
generalisation, ground-truth regions at test, and which region wins each pixel's max (Eq. 3).

    python -m rpl diagnose --bounds       # results/diagnostics_bounds.json: what the regions allow
    python -m rpl diagnose runs/<run>     # results/diagnostics_<run>.json: what the model does
    python -m rpl diagnose runs/<run> --curve   # results/learning_curve_<run>.json: per kept epoch

The accuracies of the bounds and of ``diagnose``'s evaluations are
:class:`~rpl.metrics.ConfusionMatrix` summaries over real images, so they read like the tables
(global / class-average accuracy, mean IoU, per class); :func:`winning_regions` counts labelled
pixels of images prepared as at training, ground-truth regions included.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from ..metrics import ConfusionMatrix

__all__ = [
    "cell_class_pixels",
    "region_majorities",
    "upper_bounds",
    "winning_regions",
    "diagnose",
    "learning_curve",
    "recipe_table",
    "recipe_markdown",
    "gradient_figure",
    "head_table",
    "HEADS",
    "BACKBONES",
    "gradient_rows",
    "GRADIENT_MODELS",
    "WATCHED",
]

# Classes every region-based run got 0% on before issue 12, where the FCN got 33-91%.
WATCHED = ("balcony", "bus", "crosswalk", "pole", "bird")


def cell_class_pixels(regions, label, num_classes: int) -> np.ndarray:
    """int64[S, C + 1]: pixels of each class (column 0: void) in each cell of ``regions``."""
    flat = regions.superpixels.astype(np.int64).ravel() * (num_classes + 1) + label.ravel()
    return np.bincount(flat, minlength=regions.num_cells * (num_classes + 1)).reshape(-1, num_classes + 1)


def region_majorities(regions, label, num_classes: int) -> np.ndarray:
    """int64[R]: the majority class of each region's labelled pixels (0: it has none)."""
    counts = regions.membership.astype(np.int64) @ cell_class_pixels(regions, label, num_classes)
    counts[:, 0] = 0
    return np.where(counts.sum(1) > 0, counts.argmax(1), 0)


def upper_bounds(dataset, cache, color_space: str = "rgb", progress: bool = True) -> dict:
    """What the regions allow on ``dataset`` with the proposals of ``cache``; two oracles:

    * ``superpixels``: every superpixel labelled with its majority class, the best any model can
      do whose regions are unions of superpixels and that gives a superpixel one label.
    * ``proposals``: a pixel is right when some proposal containing it has the pixel's class as
      its majority (otherwise it takes its superpixel's majority): the best a model can do that
      labels each pixel with the majority class of one of its regions.
    """
    c = dataset.num_classes
    superpixels, proposals = ConfusionMatrix(c), ConfusionMatrix(c)
    for index in tqdm(range(len(dataset)), desc="upper bounds", unit="img", disable=not progress):
        sample = dataset[index]
        regions = cache.get(sample.name, color_space)
        cells, label = regions.superpixels, sample.label
        per_cell = cell_class_pixels(regions, label, c)
        per_cell[:, 0] = 0
        cell_majority = per_cell.argmax(1)[cells]
        superpixels.update(cell_majority, label)
        majority = region_majorities(regions, label, c)
        owned = sp.csr_array(
            (np.ones(len(majority), np.int32), (np.arange(len(majority)), majority)), shape=(len(majority), c + 1)
        )
        reachable = (regions.membership.T.astype(np.int32) @ owned).toarray() > 0  # [S, C + 1]
        right = reachable[cells, label] & (label > 0)
        proposals.update(np.where(right, label, cell_majority), label)
    return {"superpixels": superpixels.summary(dataset.classes), "proposals": proposals.summary(dataset.classes)}


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float | None:
    if values.size == 0:
        return None
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


@torch.no_grad()
def winning_regions(model, cfg, dataset, cache, progress: bool = True, device="cpu") -> dict:
    """Which region wins the max of Eq. 3, per class, over the labelled pixels of ``dataset``
    prepared as at training (RGB proposals with the run's IoU filter, no flip, the run's
    ground-truth regions added).

    For each class, pixel-weighted: ``accuracy``; ``truth_won_by_ground_truth``, how often the
    region that gives the pixel its true class's score is a ground-truth region (ties go to the
    lowest index and proposals come first, so a ground-truth region that equals a proposal, as
    unions of superpixels often do, counts as the proposal); and for the
    pixels labelled wrongly, ``wrong_won_by_other_majority``, how often the region that gave
    the predicted class its score is mostly another class than the pixel's (a *container*),
    ``wrong_margin_median``, the median logit (or probability) of the predicted class minus
    the true one, and ``wrong_true_rank_median``, the true class's median rank (1 = first).
    """
    from ..runs import prepare

    model.eval().to(device)
    c = dataset.num_classes
    total, right, truth_gt, other = (np.zeros(c + 1) for _ in range(4))
    margins, ranks, weights, classes = [], [], [], []
    for index in tqdm(range(len(dataset)), desc="winning regions", unit="img", disable=not progress):
        sample = dataset[index]
        image, label, regions = prepare(sample, cache.get(sample.name, "rgb"), cfg, False, training=True)
        out = model.scores(model.features(image.to(device)), regions, return_winners=True)
        atoms, winners = out.atoms.cpu().numpy(), out.winners.cpu().numpy()
        labels, pixels = regions.cell_labels, regions.cell_areas.astype(np.float64)
        keep = labels > 0
        atoms, winners, labels, pixels = atoms[keep], winners[keep], labels[keep], pixels[keep]
        rows = np.arange(len(labels))
        predicted = atoms.argmax(1) + 1
        majority = region_majorities(regions, label, c)
        wrong = predicted != labels
        np.add.at(total, labels, pixels)
        np.add.at(right, labels, pixels * ~wrong)
        truth_winner = winners[rows, labels - 1]  # -1: the atom is in no region (none wins)
        np.add.at(truth_gt, labels, pixels * ((truth_winner >= 0) & regions.is_ground_truth[truth_winner]))
        predicted_winner = winners[rows, predicted - 1]
        np.add.at(other, labels, pixels * (wrong & (predicted_winner >= 0) & (majority[predicted_winner] != labels)))
        true_score = atoms[rows, labels - 1]
        margins.append((atoms[rows, predicted - 1] - true_score)[wrong])
        ranks.append(1 + (atoms > true_score[:, None]).sum(1)[wrong])
        weights.append(pixels[wrong])
        classes.append(labels[wrong])
    margins, ranks, weights, classes = (np.concatenate(x) for x in (margins, ranks, weights, classes))
    out = {}
    for k, name in enumerate(dataset.classes, 1):
        if total[k] == 0:
            continue
        wrong_pixels = total[k] - right[k]
        mine = classes == k
        out[name] = {
            "pixels": int(total[k]),
            "accuracy": right[k] / total[k],
            "truth_won_by_ground_truth": truth_gt[k] / total[k],
            "wrong_won_by_other_majority": other[k] / wrong_pixels if wrong_pixels else None,
            "wrong_margin_median": _weighted_median(margins[mine], weights[mine]),
            "wrong_true_rank_median": _weighted_median(ranks[mine].astype(np.float64), weights[mine]),
        }
    return out


def diagnose(
    run, train_images: int = 200, data_root=None, cache_root=None, progress: bool = True, device="cpu"
) -> dict:
    """A run's diagnosis: its accuracy on ``train_images`` training images (fit versus
    generalisation), on the test set with each image's ground-truth regions added to its
    proposals (are the regions the limit?), and :func:`winning_regions` on the same training
    images (does a container win the max?). An FCN run gets the first only."""
    from ..proposals import ProposalCache
    from ..runs import evaluate, load_run, training_images
    from ..runs.prepare import subset

    model, cfg = load_run(run)
    common = dict(data_root=data_root, cache_root=cache_root, progress=progress, device=device)
    out = {"train": evaluate(run, "train", images=train_images, **common)}
    if cfg.uses_regions:  # the FCN has none
        out["test_with_ground_truth_regions"] = evaluate(run, "test", ground_truth=True, **common)
        train_set = subset(training_images(cfg, data_root), train_images)
        out["winning_regions_train"] = winning_regions(
            model, cfg, train_set, ProposalCache(train_set, root=cache_root, kind=cfg.regions), progress, device
        )
    return out


def learning_curve(
    run, train_images: int = 200, data_root=None, cache_root=None, progress: bool = True, device="cpu"
) -> dict:
    """Accuracy against training length within one run: for every checkpoint the run kept
    (``train(keep_epochs=True)``, ``run/epochs/epoch<n>.pt``), the run's test images' and
    ``train_images`` training images' global / class-average accuracy, the test images' boundary
    class accuracy and its :data:`WATCHED` classes. Fit and generalisation per epoch, under the
    run's own learning-rate schedule; ``missing_epochs`` lists the epochs up to the last kept one
    that were not kept (a run resumed with ``keep_epochs``, say)."""
    from pathlib import Path

    from ..runs import evaluate

    kept = sorted((Path(run) / "epochs").glob("epoch*.pt"))
    if not kept:
        raise FileNotFoundError(
            f"{Path(run) / 'epochs'} holds no epoch*.pt: train the run with keep_epochs "
            "(`python -m rpl train --keep-epochs`)"
        )
    common = dict(data_root=data_root, cache_root=cache_root, progress=progress, device=device)
    epochs = []
    for path in kept:
        test = evaluate(run, "test", checkpoint=path, **common)  # the run's own test images
        fit = evaluate(run, "train", images=train_images, checkpoint=path, **common)
        epochs.append(
            {
                "epoch": int(path.stem.removeprefix("epoch")),  # as train names it, epoch<n>.pt
                "test": {k: test["all"][k] for k in ("class_accuracy", "global_accuracy", "mean_iou")}
                | {"boundary_class_accuracy": test["boundary"]["class_accuracy"]}
                | {c: test["all"]["per_class_accuracy"].get(c) for c in WATCHED},
                "train": {k: fit["all"][k] for k in ("class_accuracy", "global_accuracy")},
            }
        )
    trained = epochs[-1]["epoch"]
    missing = sorted(set(range(1, trained + 1)) - {e["epoch"] for e in epochs})  # not kept (a resumed run, say)
    return {"train_images": train_images, "epochs": epochs, "missing_epochs": missing}


def recipe_markdown(results_dir="results") -> str:
    """:func:`recipe_table` as the README's Markdown table: one line per run, named by its
    experiment's description; "–" where a run has no such number."""
    from ..experiments import EXPERIMENTS, RECIPE_CHAIN

    described = {run: e.description for e in EXPERIMENTS.values() for run, _ in e.runs()}
    described |= {run: e.description for e in RECIPE_CHAIN for run, _ in EXPERIMENTS[e.name].runs()}
    table = recipe_table(results_dir)
    if table.empty:
        return "(no results of the diagnosis runs yet)\n"
    measures = [c for c in table.columns if c not in ("preset", "epochs")]
    lines = [
        "| run (`results/<run>.json`) | preset, epochs | " + " | ".join(measures) + " |",
        "|---|---|" + "---|" * len(measures),
    ]
    for name, row in table.iterrows():
        cells = ["–" if np.isnan(row[m]) else f"{row[m]:.1f}" for m in measures]
        what = described.get(name, "")
        lines.append(f"| `{name}`: {what} | {row['preset']}, {row['epochs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def recipe_table(results_dir="results", references=("e2s2_cpu", "fcn_cpu", "fcn_cpu_unbalanced")):
    """The diagnosis as a table (pandas DataFrame, percentages): one row per run of
    ``references``, of the recipe chain (:data:`rpl.experiments.RECIPE_CHAIN`) and of the other
    diagnosis experiments with a results file — test class / global
    accuracy, boundary class accuracy, :data:`WATCHED` classes — and, where
    ``diagnostics_<run>.json`` exists, the class accuracy on training images and on the test
    images with their ground-truth regions added."""
    import json
    from pathlib import Path

    import pandas as pd

    from ..experiments import EXPERIMENTS, RECIPE_CHAIN, load_results

    experiments = [EXPERIMENTS[r] for r in (*references, *(e.name for e in RECIPE_CHAIN))]
    experiments += [e for e in EXPERIMENTS.values() if e.group == "diagnosis" and e not in experiments]
    names = [run for e in experiments for run, _ in e.runs()]  # every seed
    results = load_results(results_dir)
    rows = {}
    for name in (n for n in names if n in results):
        result = results[name]
        cfg = result["config"]
        row = {
            "preset": cfg["preset"],
            "epochs": cfg["epochs"],
            "class": result["all"]["class_accuracy"],
            "global": result["all"]["global_accuracy"],
            "boundary class": result["boundary"]["class_accuracy"],
        }
        extra = Path(results_dir) / f"diagnostics_{name}.json"
        if extra.is_file():
            d = json.loads(extra.read_text())
            row["train class"] = d["train"]["all"]["class_accuracy"]
            if "test_with_ground_truth_regions" in d:
                row["test + GT regions class"] = d["test_with_ground_truth_regions"]["all"]["class_accuracy"]
        for c in WATCHED:
            row[c] = result["all"]["per_class_accuracy"].get(c)
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    numeric = [c for c in table.columns if c not in ("preset", "epochs")]
    table[numeric] = table[numeric].astype(float) * 100
    return table.round(1)


# The models of the fine-tuning diagnosis: (what follows the backbone, frozen experiment, transfer
# experiment, fine-tuned experiment); the frozen and transfer rows trained 10 epochs on cached
# features (ImageNet's backbone, the fine-tuned FCN's), the fine-tuned rows 5 epochs of the whole
# network.
HEADS = (
    ("FCN: 1×1 classifiers at stride 16 and 8, upsampled", "frozen_fcn", "transfer_fcn", "fcn_cpu"),
    ("FCN without its skip: one 1×1 classifier at stride 16", "frozen_fcn_no-skip", None, "fcn_cpu_no-skip"),
    (
        "region model, old head: 1×1 neck to 128, 7×7 bins, random fc6/fc7 of 512 with dropout",
        "ablation_both-separate",
        None,
        "e2s2_cpu_fc512",
    ),
    (
        "region model, linear head: each region's max per channel, then the classifier (the cpu preset)",
        "frozen_linear-1x1",
        "transfer_linear-1x1",
        "e2s2_cpu",
    ),
    (
        "region model, linear head reading the stride-8 features too (levels=2)",
        "frozen_linear-1x1-levels-2",
        "transfer_linear-1x1-levels-2",
        "e2s2_cpu_linear-1x1-levels-2",
    ),
    (
        "region model, MobileNetV2's ImageNet 1×1 conv to 1280 channels, then the linear head",
        "frozen_imagenet-1280",
        "transfer_imagenet-1280",
        "e2s2_cpu_imagenet-1280",
    ),
    (
        "region model, 7×7 bins straight to the classifier",
        "frozen_linear-7x7",
        "transfer_linear-7x7",
        "e2s2_cpu_linear-7x7",
    ),
)
# The columns of :func:`head_table`: each model on three backbones.
BACKBONES = ("ImageNet, frozen", "the fine-tuned FCN's, frozen", "fine-tuned")


def head_table(results_dir="results"):
    """The comparison of :data:`HEADS` on the three backbones of :data:`BACKBONES` (pandas
    DataFrame, percentages, means over seeds; "–"/NaN where not run): class and 4-px boundary
    class accuracy of each, the seed counts, and what fine-tuning gives in class accuracy."""
    import pandas as pd

    from ..experiments import load_results
    from .tables import _ours

    results = load_results(results_dir)

    def ours(experiment, key):  # an undefined run (None) reads as one not run
        return _ours(results, experiment, key) if experiment else {"ours": float("nan"), "seeds": 0}

    rows = []
    for what, *runs in HEADS:
        row, seeds = {"after the backbone": what}, []
        for label, experiment in zip(BACKBONES, runs):
            for key, short in (("class_accuracy", "class"), ("boundary_class_accuracy", "boundary class")):
                row[f"{label}: {short}"] = ours(experiment, key)["ours"]
            seeds.append(str(ours(experiment, "class_accuracy")["seeds"] or "–"))
        row["seeds (frozen / transfer / tuned)"] = " / ".join(seeds)
        row["fine-tuning gives (class)"] = row["fine-tuned: class"] - row["ImageNet, frozen: class"]
        rows.append(row)
    return pd.DataFrame.from_records(rows)


# What each model measured by ``python -m rpl gradients`` is, in the figure and the docs: the
# experiment whose model it is, and whether its heads are as initialised or trained.
GRADIENT_MODELS = {
    "init:fcn_cpu": ("FCN", "as initialised"),
    "frozen_fcn": ("FCN", "trained on the frozen backbone"),
    "init:e2s2_cpu_fc512": ("region model, old head (fc 512)", "as initialised"),
    "init:e2s2_cpu": ("region model, linear head (cpu preset)", "as initialised"),
    "frozen_linear-1x1": ("region model, linear head (cpu preset)", "trained on the frozen backbone"),
}


def gradient_rows(gradients: dict) -> str:
    """Markdown rows (model | heads | gradient norm at the backbone output | output entries
    reached | coherence) of ``python -m rpl gradients``' payload."""
    lines = []
    for name, measured in gradients["models"].items():
        model, heads = GRADIENT_MODELS.get(name, (name, ""))
        last = measured["blocks"][-1]
        lines.append(
            f"| {model} | {heads} | {last['grad_norm']:.2f} | {measured['output_entries_with_gradient']:.0%} "
            f"| {last['coherence']:.2f} |"
        )
    return "\n".join(lines)


def gradient_figure(gradients: dict, labels: dict | None = None):
    """The gradient each model sends into its backbone (``python -m rpl gradients``' payload,
    ``{"models": {name: measurement}}``), per block: its norm per image and, over a step's
    images, their coherence (‖Σ g_i‖ / Σ ‖g_i‖). ``labels`` renames the models in the legend."""
    import matplotlib.pyplot as plt

    labels = labels or {k: f"{model}, {heads}" for k, (model, heads) in GRADIENT_MODELS.items()}
    fig, (norm, coherence) = plt.subplots(1, 2, figsize=(10, 4.4))
    for name, measured in gradients["models"].items():
        blocks = measured["blocks"]
        x = [b["block"] for b in blocks]
        line = norm.plot(x, [b["grad_norm"] for b in blocks], marker="o", ms=3, label=labels.get(name, name))[0]
        coherence.plot(x, [b["coherence"] for b in blocks], marker="o", ms=3, color=line.get_color())
    n = next(iter(gradients["models"].values()))["images_per_step"]
    coherence.axhline(n**-0.5, color="grey", lw=0.8, ls="--")
    coherence.text(17, n**-0.5, f"unrelated directions (1/√{n}) ", ha="right", va="top", fontsize=8, color="grey")
    norm.set(yscale="log", xlabel="backbone block (input → output)", ylabel="‖gradient‖ per image")
    coherence.set(xlabel="backbone block (input → output)", ylabel="coherence over a step", ylim=(0, 1))
    fig.legend(*norm.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    return fig
