"""The reproduction's experiments in one place: which runs regenerate which table of the paper.

    python -m rpl reproduce            # every run below: train, evaluate, results/<run>.json
    python -m rpl reproduce --quick    # the same sequence on the quick preset (CI, minutes)

Each :class:`Experiment` is one row of the paper (Tables 1, 3, 4 and the Sec. 4.3 analyses)
trained with one preset and a few overrides, for one or more seeds. Runs live in
``runs/<run>`` (resumable, locked while a process works on them, so several ``reproduce``
processes can share the list); each finished run is evaluated into ``results/<run>.json`` with
its provenance and wall times. Finished runs and results are skipped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from .files import FileLock, write_json
from .provenance import provenance

__all__ = [
    "Experiment",
    "EXPERIMENTS",
    "RECIPE_CHAIN",
    "run_names",
    "run_lock",
    "reproduce",
    "load_results",
    "seed_ranges",
    "QUICK_RUNS",
    "QUICK_RESULTS",
    "compare",
    "notebook_run",
    "finished_run",
]

# Where quick mode (CI, ``--quick``) keeps its runs and results, apart from the real ones.
QUICK_RUNS, QUICK_RESULTS = "cache/quick-runs", "cache/quick-results"


@dataclass(frozen=True)
class Experiment:
    """One configuration. ``name`` is the run's folder and results file (seed 0; other seeds
    add ``_seed<k>``); ``overrides`` are ``--set`` pairs on ``preset``."""

    name: str
    preset: str
    overrides: tuple = ()
    seeds: tuple = (0,)
    description: str = ""
    needs_data: bool = False  # skipped, with a note, when its data set is not in place
    group: str = "paper"  # "paper": a row of the paper's tables; "diagnosis": issue 12's measurements
    keep_epochs: bool = False  # keep every epoch's checkpoint, for `diagnose --curve`
    # The transfer test: start from the trained backbone of this experiment's first run
    # (``weights=<runs>/<run>``), which ``reproduce`` trains first where it is not there.
    backbone_from: str = ""

    def runs(self, quick: bool = False) -> list[tuple[str, int]]:
        """(run name, seed) pairs; quick mode runs seed 0 only."""
        seeds = self.seeds[:1] if quick else self.seeds
        return [(self.name if s == 0 else f"{self.name}_seed{s}", s) for s in seeds]

    def config(self, seed: int = 0, quick: bool = False, runs_dir=None):
        """The run's TrainConfig; ``runs_dir`` (default ``runs``, quick: :data:`QUICK_RUNS`)
        holds the run a ``backbone_from`` experiment starts from."""
        from .runs import PRESETS

        if self.backbone_from:
            source = EXPERIMENTS[self.backbone_from].runs()[0][0]
            weights = f"weights={Path(runs_dir or (QUICK_RUNS if quick else 'runs')) / source}"
            return dataclasses.replace(self, overrides=(*self.overrides, weights), backbone_from="").config(seed, quick)

        if quick:  # the quick preset, on the experiment's code path (frozen features or not, its pooling)
            p = PRESETS[self.preset]
            path = [f"freeze_backbone={p.freeze_backbone}", f"pooling={p.pooling}", f"combine={p.combine}"]
            if not p.head:  # a linear head: its own code path, and small enough for quick mode
                path += [f"neck={p.neck}", "head=0", f"bins={p.bins}"]
            return PRESETS["quick"].with_overrides([*path, *self.overrides, f"seed={seed}"])
        return PRESETS[self.preset].with_overrides([*self.overrides, f"seed={seed}"])


# Issue 12: why the region model trails the FCN. The frozen-backbone preset (10 epochs: 3
# underfit), changing one thing per row, each row keeping the changes above it: from rpl's recipe
# before issue 12 to the authors' training regions, pooling and feature grid. A row named after
# a paper experiment is that experiment (the same configuration, one run): step 2 is today's
# ablation preset, Table 4's free-form row.
_STEPS = (
    (
        "recipe0_legacy",
        ("alignment=legacy", "train_regions=exact", "proposal_iou=0"),
        "rpl before issue 12 (boxes and masks half a cell apart, exact ground-truth regions, every proposal), "
        "10 epochs",
        {},
    ),
    ("recipe1_centred", ("alignment=centred",), "+ boxes and masks on the cells the backbone centres", {}),
    (
        "ablation_free-form",
        ("train_regions=superpixels", "proposal_iou=0.1"),
        "+ the authors' training regions: ground truth as unions of superpixels, proposals with IoU >= 0.1 "
        "(the ablation preset)",
        {},
    ),
    (
        "recipe3_bins",
        ("mask=bins",),
        "+ the authors' free-form pooling: box pooling, bins outside the region zeroed",
        {},
    ),
    ("recipe4_os8", ("output_stride=8",), "+ a finer feature grid: MobileNetV2 at output stride 8 (32x32 cells)", {}),
)


# Then one lever at a time on today's ablation preset (step 2), same length. The last field of
# each row: other Experiment settings (seeds; keep_epochs for accuracy against training length).
_LEVERS = (
    ("lever_dropout0", ("dropout=0",), "the ablation preset without dropout after fc6 and fc7", {"seeds": (0, 1)}),
    (
        "lever_25-epochs",
        ("epochs=25", "lr_drop_epoch=18"),
        "the ablation preset trained 25 epochs, as the authors",
        {"keep_epochs": True},
    ),
    (
        "ablation_both-separate",
        ("pooling=both", "combine=separate"),
        "the paper's model: region + box, separate weights",
        {},
    ),
    (
        "lever_lr-1e-3",
        ("lr=1e-3",),
        "the ablation preset at 3.3x the learning rate (fc layers and classifier at 1e-2)",
        {},
    ),
)


def _changed(settings: tuple, changes: tuple) -> tuple:
    """``settings`` (``key=value`` strings) with ``changes`` in place of the keys they set."""
    keys = {c.split("=")[0] for c in changes}
    return tuple(o for o in settings if o.split("=")[0] not in keys) + changes


def _recipe_rows() -> list[Experiment]:
    rows, settings = [], ()
    for name, changes, what, extra in _STEPS:
        settings = _changed(settings, changes)
        rows.append(Experiment(name, "ablation", settings, description=what, group="diagnosis", **extra))
    for name, changes, what, extra in _LEVERS:
        rows.append(Experiment(name, "ablation", changes, description=what, group="diagnosis", **extra))
    return rows


# The diagnosis chain in order (steps, then levers); rows sharing a paper experiment's name
# are not repeated in EXPERIMENTS: the paper's experiment, its seeds included, is the row (tests
# check that their configurations agree).
RECIPE_CHAIN = _recipe_rows()

_FREE_FORM = ("pooling=free-form", "combine=tied")  # the cpu preset before it took the paper's model

# Two seeds wherever the paper's difference to a neighbouring row is under 2 points, three where
# two seeds spread more than that difference (Table 4's pooling rows: region + box separate's
# seeds 0 and 1 differ by 3.7 points, the paper's rows by 0.5-0.6), and two for the superpixels
# run, whose first seed landed within 1.5 points of free-form pooling.
EXPERIMENTS = {
    e.name: e
    for e in (
        Experiment(
            "e2s2_cpu",
            "cpu",
            seeds=(0, 1),
            description="end to end, region + box pooling with separate weights, each region's max per channel "
            "straight to the classifier, balanced loss, fine-tuned backbone",
        ),
        Experiment(
            "fcn_cpu", "cpu", ("model=fcn",), (0, 1), description="FCN-16s-style on the same fine-tuned backbone"
        ),
        Experiment(
            "fcn_cpu_unbalanced",
            "cpu",
            ("model=fcn", "loss=unbalanced"),
            description="the same FCN with the unbalanced loss (the authors' FCN default)",
        ),
        Experiment(
            "e2s2_cpu_unbalanced",
            "cpu",
            ("loss=unbalanced",),
            seeds=(0, 1),
            description="the cpu preset's region model with the unbalanced loss, beside the FCN's",
        ),
        Experiment("ablation_free-form", "ablation", seeds=(0, 1, 2), description="free-form pooling (region)"),
        Experiment("ablation_box", "ablation", ("pooling=box",), (0, 1, 2), "box pooling (Fast R-CNN)"),
        Experiment(
            "ablation_both-tied", "ablation", ("pooling=both", "combine=tied"), (0, 1, 2), "region + box, tied weights"
        ),
        Experiment(
            "ablation_both-separate",
            "ablation",
            ("pooling=both", "combine=separate"),
            (0, 1, 2),
            "region + box, separate weights",
        ),
        Experiment(
            "ablation_rectangles",
            "ablation",
            ("regions=rectangles", "train_regions=boxes"),
            description="purely rectangular: bounding boxes as the regions, the ground truth's too",
        ),
        Experiment("ablation_unbalanced", "ablation", ("loss=unbalanced",), description="unbalanced pixel loss"),
        Experiment(
            "ablation_baseline",
            "ablation",
            ("model=baseline",),
            description="region classification baseline: box pooling, region loss, Eq. 1",
        ),
        Experiment(
            "ablation_softmax-max",
            "ablation",
            ("order=softmax-max",),
            description="softmax before the max (Eq. 1 inside the end-to-end model)",
        ),
        Experiment(
            "ablation_box-unbalanced",
            "ablation",
            ("pooling=box", "loss=unbalanced"),
            description="end to end, box pooling, unbalanced loss: the paper reports global accuracy from "
            "the unbalanced loss (Table 1), and the baseline's region loss is unweighted too",
        ),
        Experiment(
            "ablation_superpixels",
            "ablation",
            ("regions=superpixels",),
            (0, 1),
            description="non-overlapping regions: the Felzenszwalb superpixels only",
        ),
        Experiment(
            "pascal-context_cpu",
            "cpu",
            ("dataset=pascal-context",),
            description="Table 2: PASCAL Context",
            needs_data=True,
        ),
    )
}
EXPERIMENTS |= {e.name: e for e in RECIPE_CHAIN if e.name not in EXPERIMENTS}

# The cpu preset's head before the diagnosis of the fine-tuning gap: a 1x1 neck to 128 channels,
# 7x7 bins, random fc6/fc7 of 512 with dropout. The rows below measured it; each keeps it.
_FC512 = ("neck=128", "head=512", "bins=7")
EXPERIMENTS |= {
    e.name: e
    for e in (
        Experiment(
            "e2s2_cpu_fc512",
            "cpu",
            _FC512,
            group="diagnosis",
            description="the cpu preset's region model with the old head: a 1x1 neck to 128, 7x7 bins, random "
            "fc6/fc7 of 512 with dropout",
        ),
        Experiment(
            "e2s2_cpu_free-form",
            "cpu",
            (*_FC512, *_FREE_FORM),
            group="diagnosis",
            description="the old head with free-form pooling alone (tied weights)",
        ),
        Experiment(
            "e2s2_cpu_head-lr1",
            "cpu",
            (*_FC512, "head_lr_mult=1"),
            group="diagnosis",
            description="the old head with one learning rate for every layer (no 10x on the layers after the backbone)",
        ),
        Experiment(
            "e2s2_cpu_10-epochs",
            "cpu",
            (*_FC512, "epochs=10", "lr_drop_epoch=7"),
            group="diagnosis",
            description="the old head trained 10 epochs (7, then 3 at a tenth of the rate) instead of 5",
        ),
        Experiment(
            "e2s2_cpu_dropout0",
            "cpu",
            (*_FC512, "dropout=0"),
            group="diagnosis",
            description="the old head without dropout after fc6 and fc7 (randomly initialised, where the "
            "authors' come from ImageNet)",
        ),
        Experiment(
            "e2s2_cpu_head-epochs",
            "cpu",
            (*_FC512, *_FREE_FORM, "epochs=5", "head_epochs=2"),
            group="diagnosis",
            description="the old head with free-form pooling, its first 2 of 5 epochs on the head alone (cached "
            "features): a stand-in for the authors' ImageNet fc6/fc7",
        ),
    )
}


# Why the backbone tunes badly through the region layers: each frozen row (the ablation preset,
# 10 epochs) has a fine-tuned partner (the cpu preset, 5 epochs) or a frozen FCN beside it. The
# region rows are region + box pooling with separate weights and the head each names.
_SEPARATE = ("pooling=both", "combine=separate")
_LINEAR_1X1 = ("neck=0", "head=0", "bins=1")  # pooled features straight to the classifier: the cpu preset
_HEADS = (
    ("linear-1x1", _LINEAR_1X1, "no neck, no fc layers: each region's max per channel, then the classifier"),
    ("imagenet-1280", ("neck=1280", "neck_init=imagenet", "head=0", "bins=1"),
     "MobileNetV2's own ImageNet 1x1 convolution to 1280 channels as the neck, then each region's max per "
     "channel and the classifier"),
    ("linear-7x7", ("neck=0", "head=0", "bins=7", "head_lr_mult=1"),
     "no neck, no fc layers, 7x7 bins straight to the classifier, at the backbone's rate (10x diverged)"),
    ("levels-2", (*_FC512, "levels=2"), "the old head reading the stride-8 features too (pooled at stride 8)"),
    ("linear-1x1-levels-2", (*_LINEAR_1X1, "levels=2"),
     "no neck, no fc layers, the stride-8 features pooled too: each region's max per channel at stride 8, "
     "then the classifier"),
)  # fmt: skip
EXPERIMENTS |= {
    e.name: e
    for e in (
        Experiment(
            "frozen_fcn",
            "ablation",
            ("model=fcn",),
            seeds=(0, 1),
            group="diagnosis",
            description="the FCN on the frozen backbone: its two 1x1 classifiers alone (a linear probe with "
            "the stride-8 skip)",
        ),
        Experiment(
            "frozen_fcn_unbalanced",
            "ablation",
            ("model=fcn", "loss=unbalanced"),
            seeds=(0, 1),
            group="diagnosis",
            description="the FCN on the frozen backbone with the unbalanced loss",
        ),
        Experiment(
            "frozen_linear-1x1_unbalanced",
            "ablation",
            (*_SEPARATE, *_LINEAR_1X1, "loss=unbalanced"),
            group="diagnosis",
            description="the cpu preset's region model on the frozen backbone with the unbalanced loss",
        ),
        Experiment(
            "frozen_fcn_no-skip",
            "ablation",
            ("model=fcn", "fcn_skip=false"),
            group="diagnosis",
            description="the FCN on the frozen backbone without its skip: one 1x1 classifier at stride 16",
        ),
        Experiment(
            "fcn_cpu_no-skip",
            "cpu",
            ("model=fcn", "fcn_skip=false"),
            group="diagnosis",
            description="the fine-tuned FCN without its stride-8 skip",
        ),
        *(  # the cpu preset's head, frozen, is a Table 3 row: two seeds
            Experiment(
                f"frozen_{name}",
                "ablation",
                (*_SEPARATE, *changes),
                seeds=(0, 1) if name == "linear-1x1" else (0,),
                group="diagnosis",
                description=what,
            )
            for name, changes, what in _HEADS
        ),
        *(  # linear-1x1 fine-tuned is e2s2_cpu, the cpu preset
            Experiment(f"e2s2_cpu_{name}", "cpu", changes, group="diagnosis", description=what)
            for name, changes, what in _HEADS
            if name != "linear-1x1"
        ),
        Experiment(
            "transfer_fcn",
            "ablation",
            ("model=fcn",),
            group="diagnosis",
            backbone_from="fcn_cpu",
            description="the transfer test's control: the FCN's 1x1 classifiers trained anew on the frozen "
            "backbone the fine-tuned FCN (fcn_cpu) left",
        ),
        *(
            Experiment(
                f"transfer_{name}",
                "ablation",
                (*_SEPARATE, *changes),
                group="diagnosis",
                backbone_from="fcn_cpu",
                description=f"on the frozen backbone the fine-tuned FCN (fcn_cpu) left: {what}",
            )
            for name, changes, what in _HEADS
            if name != "levels-2"  # the old head on two levels, not a head of HEADS
        ),
        *(
            Experiment(
                f"e2s2_cpu_lr{rate}",
                "cpu",
                (*_FC512, f"lr={rate}", f"head_lr_mult={3e-3 / float(rate):g}"),
                group="diagnosis",
                description=f"the old head with the backbone at {rate} (the layers after it at 3e-3, as the preset)",
            )
            for rate in ("1e-4", "3e-5")
        ),
    )
}


def run_names(quick: bool = False, groups=None) -> list[str]:
    """Every run of :data:`EXPERIMENTS` (of ``groups``, default all) in the order ``reproduce``
    takes them."""
    return [name for e in EXPERIMENTS.values() if groups is None or e.group in groups for name, _ in e.runs(quick)]


def run_lock(folder: Path) -> FileLock:
    """The lock a ``reproduce`` process holds on a run folder while it trains and evaluates it."""
    return FileLock(folder.parent / f".{folder.name}.lock")


def _runs(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")


def reproduce(
    runs_dir="runs",
    results_dir="results",
    quick: bool = False,
    only=None,
    data_root=None,
    cache_root=None,
    device: str = "cpu",
    progress: bool = True,
    log=print,
    first_seed: bool = False,
) -> list[str]:
    """Train and evaluate every run not finished yet (``only``: these experiments; default
    every experiment of the paper's tables, not the diagnosis; ``first_seed``: seed 0 of each
    only); returns the runs this call finished.

    Runs another process holds are skipped (and reported), so ``reproduce`` may run in several
    processes at once; an interrupted run resumes from its last epoch. Each results file
    records the git commit and tree state as this call found them: the code it runs."""
    from .runs import evaluate, load_dataset, train

    code = {key: value for key, value in provenance().items() if key.startswith("git_")}

    runs_dir, results_dir = Path(runs_dir), Path(results_dir)
    todo = [
        (e, name, seed)
        for e in EXPERIMENTS.values()
        for name, seed in e.runs(quick or first_seed)
        if (e.name in only if only is not None else e.group == "paper")
    ]
    unknown = set(only or ()) - set(EXPERIMENTS)
    if unknown:
        raise ValueError(f"unknown experiments {sorted(unknown)}; choose from {sorted(EXPERIMENTS)}")
    finished = []
    for position, (experiment, name, seed) in enumerate(todo, 1):
        result = results_dir / f"{name}.json"
        folder = runs_dir / name
        header = f"[{position}/{len(todo)}] {name}"
        if result.is_file():
            made = json.loads(result.read_text())
            cfg = experiment.config(seed, quick, runs_dir)
            stale = _stale(made["config"], cfg) or _source_changed(made, cfg)
            log(
                f"{header}: done ({result})"
                if not stale
                else f"{header}: {result} was made with other settings ({stale}); delete it and {folder} to rerun"
            )
            continue
        with run_lock(folder) as mine:
            if not mine:
                log(f"{header}: another process is on it, skipped")
                continue
            if result.is_file():  # finished by another process since we looked
                log(f"{header}: done ({result})")
                continue
            cfg = experiment.config(seed, quick, runs_dir)
            stale = _folder_stale(folder, cfg)
            if stale:
                log(f"{header}: {folder} holds a run with other settings ({stale}); delete it to rerun")
                continue
            if experiment.needs_data:
                try:
                    load_dataset(cfg, "train", data_root)
                except (FileNotFoundError, ValueError) as e:
                    log(f"{header}: skipped, its data is not here ({e})")
                    continue
            train_kwargs = dict(data_root=data_root, cache_root=cache_root, progress=progress, device=device)
            if experiment.backbone_from and not (folder / "train.json").is_file():
                if not _train_source(experiment, cfg, quick, runs_dir, lambda m: log(f"{header}: {m}"), train_kwargs):
                    continue
            started = time.monotonic()
            if not (folder / "train.json").is_file():
                log(
                    f"{header}: training ({experiment.description}; preset {cfg.preset}), "
                    f"{_runs(len(todo) - position)} after this one"
                )
                train(cfg, folder, resume=True, keep_epochs=experiment.keep_epochs, **train_kwargs)
            log(f"{header}: evaluating")
            metrics = evaluate(folder, data_root=data_root, cache_root=cache_root, progress=progress, device=device)
            summary = json.loads((folder / "train.json").read_text())
            write_json(
                result,
                provenance(
                    run=name,
                    experiment=experiment.name,
                    description=experiment.description,
                    train_seconds=summary["train_seconds"],
                    wall_seconds_this_call=time.monotonic() - started,
                    **metrics,
                    **({"source_backbone": _source_backbone(cfg)} if experiment.backbone_from else {}),
                )
                | code,
            )
            log(
                f"{header}: class {metrics['all']['class_accuracy']:.1%}, global "
                f"{metrics['all']['global_accuracy']:.1%} -> {result}"
            )
            finished.append(name)
    return finished


def _train_source(experiment, cfg, quick, runs_dir, log, train_kwargs) -> bool:
    """Train the run a ``backbone_from`` experiment starts from (``cfg.weights``) where it is not
    finished; False (logged) when it cannot be used now: another process trains it, or it holds
    a run of other settings."""
    from .runs import train

    folder, wanted = Path(cfg.weights), EXPERIMENTS[experiment.backbone_from].config(0, quick, runs_dir)
    stale = _folder_stale(folder, wanted)
    if stale:
        log(f"{folder}, the run whose backbone it starts from, holds other settings ({stale}); delete it to rerun")
        return False
    if (folder / "train.json").is_file():
        return True
    with run_lock(folder) as free:
        if not free:
            log(f"another process is training {folder}, the run whose backbone it starts from; skipped")
            return False
        if not (folder / "train.json").is_file():  # or finished by another process since we looked
            log(f"training {folder} first, the run whose backbone it starts from")
            train(wanted, folder, resume=True, **train_kwargs)
    return True


def _source_backbone(cfg) -> dict:
    """What a run that starts from another run's backbone records of it: the folder and the
    hash of the backbone's weights (:func:`rpl.runs.frozen.backbone_hash`)."""
    from .runs.config import backbone_state
    from .runs.frozen import backbone_hash

    return {"run": cfg.weights, "backbone_sha1": backbone_hash(backbone_state(cfg))}


def _source_changed(saved: dict, cfg) -> str:
    """Why a results file of a run started from another run's backbone is stale (that run was
    retrained since), or "" (it was not, the file predates the record, or the run is not here)."""
    record = saved.get("source_backbone")
    if not record or not (Path(cfg.weights) / "train.json").is_file():
        return ""
    now = _source_backbone(cfg)["backbone_sha1"]
    return "" if now == record["backbone_sha1"] else f"{cfg.weights} was retrained since"


def _folder_stale(folder: Path, cfg) -> str:
    """How the run in ``folder`` (its ``config.json``) differs from ``cfg``; "" when it does not
    or the folder holds no run yet."""
    saved = folder / "config.json"
    return _stale(json.loads(saved.read_text()), cfg) if saved.is_file() else ""


def _stale(config: dict, cfg) -> str:
    """:func:`rpl.runs.config_differences` (imported when called: ``rpl.runs`` is heavy)."""
    from .runs import config_differences

    return config_differences(config, cfg)


def load_results(results_dir="results") -> dict:
    """{run name: results payload} for every run of :data:`EXPERIMENTS` with a results file;
    each payload's ``results_file`` names the file it was read from."""
    out = {}
    for name in run_names():
        path = Path(results_dir) / f"{name}.json"
        if path.is_file():
            out[name] = {**json.loads(path.read_text()), "results_file": str(path)}
    return out


def seed_results(results: dict, name: str) -> list[dict]:
    """The results payloads (of :func:`load_results`' dict) of ``name``: every seed's of an
    experiment, or one run's."""
    if name in EXPERIMENTS:
        return [results[run] for run, _ in EXPERIMENTS[name].runs() if run in results]
    return [results[name]] if name in results else []


def seed_ranges(results: dict, key: str = "class_accuracy") -> dict[str, float]:
    """{preset: the largest range (max - min, points) of ``key`` over the seeds of any experiment
    of that preset with several}: the seed-to-seed spread one run of the preset can show, the
    noise a difference between single runs is judged against."""
    from .report.tables import measure

    ranges = {}
    for e in EXPERIMENTS.values():
        values = [measure(p, key) for p in seed_results(results, e.name)]
        if len(values) > 1:
            ranges[e.preset] = max(ranges.get(e.preset, 0.0), max(values) - min(values))
    return ranges


def compare(rerun_dir, committed_dir="results", groups=("paper",)):
    """A rerun's results beside the committed ones and the paper's: one row per experiment of
    ``groups`` with a rerun results file (pandas DataFrame, percentages), class / global /
    boundary class accuracy, each as ``rerun``, ``committed`` (the mean of its seeds) and
    ``paper`` (the paper's number for the row the experiment gives, where it gives one).

    ``spread`` is the committed seeds' range of class accuracy where there are several, else the
    largest range of any experiment of the same preset (the seed-to-seed spread one run can
    show; of any preset where none has several seeds), and ``verdict`` judges
    ``rerun - committed`` in class accuracy against it: "same" within the spread, "higher" or
    "lower" beyond it, "quick preset" for quick runs (a handful of images: not comparable)."""
    import pandas as pd

    from .report.paper import PAPER
    from .report.tables import OURS, measure

    rerun, committed = load_results(rerun_dir), load_results(committed_dir)
    keys = ("class_accuracy", "global_accuracy", "boundary_class_accuracy")
    seeds = seed_results

    ranges = seed_ranges(committed)
    rows = []
    for e in EXPERIMENTS.values():
        again = seeds(rerun, e.name)
        if e.group not in groups or not again:
            continue
        before = seeds(committed, e.name)
        presets = sorted({p["config"]["preset"] for p in again})
        row = {"experiment": e.name, "preset": ", ".join(presets), "seeds": f"{len(again)} / {len(before)}"}
        paper = next((PAPER.get(k, {}) for k, v in OURS.items() if v == e.name and k in PAPER), {})
        for key in keys:
            short = key.removesuffix("_accuracy").replace("_", " ")
            row[f"{short}: rerun"] = sum(measure(p, key) for p in again) / len(again)
            row[f"{short}: committed"] = sum(measure(p, key) for p in before) / len(before) if before else float("nan")
            row[f"{short}: paper"] = paper.get(key, float("nan"))
        values = [measure(p, "class_accuracy") for p in before]
        typical = ranges.get(e.preset, max(ranges.values(), default=0.0))
        spread = max(values) - min(values) if len(values) > 1 else typical
        diff = row["class: rerun"] - row["class: committed"]
        row["spread"] = spread
        if presets == ["quick"]:  # a handful of images for one epoch: nothing to judge
            row["verdict"] = "quick preset"
        elif not before:
            row["verdict"] = ""
        else:
            row["verdict"] = "same" if abs(diff) <= spread else "higher" if diff > 0 else "lower"
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def notebook_run(experiment: str, quick: bool, root=Path(".."), cache_root=None) -> Path:
    """The run folder a notebook shows for ``experiment``: its first seed with a finished run in
    ``$RPL_RUNS`` (default ``root/runs``; quick mode: ``root/cache/quick-runs``). In quick mode a
    missing run is trained here (seed 0, a minute or two; its results into ``$RPL_RESULTS`` or
    ``root/cache/quick-results``); otherwise a missing run raises FileNotFoundError naming
    ``make notebooks``, which trains the runs the notebooks show."""
    import os

    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose from {sorted(EXPERIMENTS)}")
    runs = Path(os.environ.get("RPL_RUNS") or Path(root) / (QUICK_RUNS if quick else "runs"))
    found = finished_run(runs, experiment)
    if found is not None:
        return found
    if quick:
        results = Path(os.environ.get("RPL_RESULTS") or Path(root) / QUICK_RESULTS)
        reproduce(
            runs, results, quick=True, only=[experiment], cache_root=cache_root, progress=False, log=lambda _: None
        )
        return runs / EXPERIMENTS[experiment].runs(quick=True)[0][0]
    raise FileNotFoundError(
        f"{runs / experiment} has no finished run: `make notebooks` trains the runs the notebooks show "
        f"(about 1 h on 2 cores), or this one alone: python -m rpl reproduce --only {experiment} "
        "--results reproduction/notebook-results"
    )


def finished_run(runs_dir, experiment: str, quick: bool = False) -> Path | None:
    """The folder of ``experiment``'s first seed with a finished run under ``runs_dir`` trained
    with the experiment's configuration (a run of other settings, say an older preset's, does not
    count), or None."""
    for name, seed in EXPERIMENTS[experiment].runs(quick):
        folder = Path(runs_dir) / name
        if (folder / "train.json").is_file() and not _folder_stale(
            folder, EXPERIMENTS[experiment].config(seed, quick, runs_dir)
        ):
            return folder
    return None
