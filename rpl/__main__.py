"""The command line: ``python -m rpl <command> ...`` (``python -m rpl -h`` lists them)."""

from __future__ import annotations

import argparse
import os
import sys

from . import data


def _fetch(args) -> int:
    path = data.fetch(args.dataset, root=args.root, timeout=args.timeout)
    print(f"{args.dataset} is ready in {path}")
    return 0


def _dataset(text: str) -> str:
    """A ``--dataset`` value: a registered name or a data set folder."""
    try:
        return data.check_dataset(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _check(args) -> int:
    sets = [data.open_dataset(args.dataset, split, root=args.root) for split in ("train", "test")]
    sizes = " / ".join(f"{len(ds)} {ds.split}" for ds in sets)
    print(f"{args.dataset}: {sizes} images, {sets[0].num_classes} classes, in {sets[0].root}")
    problems = [p for ds in sets for p in ds.problems()]
    for line in problems[:20]:
        print(f"rpl check: {line}", file=sys.stderr)
    if problems:
        more = " (the first 20 above)" if len(problems) > 20 else ""
        again = f" and fetch it again (`python -m rpl fetch {args.dataset}`)" if args.dataset in data.SOURCES else ""
        print(
            f"rpl check: {len(problems)} bad files{more}; repair them, or move {sets[0].root} away{again}",
            file=sys.stderr,
        )
        return 1
    print("every image decoded and every label file read and checked")
    return 0


def _env_pair(text: str) -> str:
    if "=" not in text or not text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return text


def _workers(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"need at least 1 process, got {count}")
    return count


def _device(text: str) -> str:
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:<index>, got {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: no CUDA GPU is visible here (torch.cuda.is_available() is False)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text}: only {torch.cuda.device_count()} GPU(s) here")
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:<index>, got {text!r}")
    return text


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"shard {text}: need 0 <= i < n")
    return index, count


def _proposals(args) -> int:
    from .proposals import COLOR_SPACES, ProposalCache

    color_spaces = tuple(c.strip() for c in args.color_spaces.split(",") if c.strip())
    unknown = set(color_spaces) - set(COLOR_SPACES)
    if unknown or not color_spaces:
        print(f"rpl proposals: --color-spaces takes a list from {COLOR_SPACES}", file=sys.stderr)
        return 2
    sets = [
        data.open_dataset(args.dataset, s, root=args.root)
        for s in (("train", "test") if args.split == "all" else ["test" if args.split == "val" else args.split])
    ]
    for ds in sets:
        cache = ProposalCache(ds, root=args.cache)
        stats = cache.build(color_spaces, shard=args.shard, workers=args.workers)
        print(
            f"{args.dataset} {ds.split}: {stats['computed']} computed, {stats['cached']} already "
            f"cached, {stats['seconds']:.1f} s -> {cache.folder}"
        )
    return 0


def _train(args) -> int:
    import torch.distributed as dist

    from .runs import PRESETS, train

    cfg = PRESETS[args.preset]
    try:
        dataset = [f"dataset={args.dataset}"] if args.dataset else []
        cfg = cfg.with_overrides([f"model={args.model}", *dataset, *args.set])
        summary = train(
            cfg,
            args.out,
            resume=args.resume,
            data_root=args.root,
            cache_root=args.cache,
            device=args.device,
            keep_epochs=args.keep_epochs,
        )
    finally:
        if dist.is_initialized():  # under torchrun
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 reports
        print(
            f"trained {summary['epochs']} epochs on {summary['train_images']} images in "
            f"{summary['train_seconds'] / 60:.1f} min ({summary['images_per_s']:.2f} images/s, "
            f"{summary['ranks']} process{'es' if summary['ranks'] > 1 else ''}) -> {args.out}"
        )
    return 0


def _evaluate(args) -> int:
    from .files import write_json
    from .provenance import provenance
    from .runs import evaluate

    metrics = evaluate(
        args.run, args.split, data_root=args.root, cache_root=args.cache, device=args.device, dataset=args.dataset
    )
    for part in ("all", "boundary"):
        m = metrics[part]
        print(
            f"{part:>8}: global {m['global_accuracy']:.1%}  class {m['class_accuracy']:.1%}  "
            f"mIoU {m['mean_iou']:.1%}  ({m['pixels']} pixels, {m['classes_present']} classes)"
        )
    if args.results:
        write_json(args.results, provenance(run=str(args.run), **metrics))
        print(f"wrote {args.results}")
    return 0


def _predict(args) -> int:
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from .data.base import read_image
    from .report.viz import prediction_figure, save_figure
    from .runs import open_run, predict_image

    out = Path(args.output)  # checked before any work
    if out.is_dir() or out.suffix.lower() != ".png":
        raise ValueError(f"-o {out}: a label map is written losslessly, as PNG; give a file name ending in .png")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"-o {out}: cannot create the folder {out.parent} ({e.strerror})") from None
    if not os.access(out.parent, os.W_OK):
        raise ValueError(f"-o {out}: the folder {out.parent} is not writable")
    run = open_run(args.run)
    image = read_image(Path(args.image))
    labels = predict_image(run, image, size=args.size)
    classes = run.classes
    Image.fromarray(labels.astype(np.uint8 if len(classes) < 256 else np.uint16)).save(out)
    overlay_path = out.with_name(f"{out.stem}_overlay.png")
    save_figure(prediction_figure(image, labels, classes), overlay_path)
    found, counts = np.unique(labels[labels > 0], return_counts=True)
    share = ", ".join(
        f"{classes[k - 1]} {c / labels.size:.0%}" for k, c in sorted(zip(found, counts), key=lambda kc: -kc[1])
    )
    print(f"wrote {out} (label k = class k of the run's {len(classes)}) and {overlay_path} (with a legend)")
    print(f"classes found: {share}")
    return 0


def _reproduce(args) -> int:
    from .experiments import QUICK_RESULTS, QUICK_RUNS, reproduce

    runs = args.runs or (QUICK_RUNS if args.quick else "runs")
    results = args.results or (QUICK_RESULTS if args.quick else "results")
    reproduce(
        runs,
        results,
        quick=args.quick,
        only=args.only or None,
        data_root=args.root,
        cache_root=args.cache,
        device=args.device,
        progress=args.progress,
        first_seed=args.first_seed,
    )
    return 0


def _notebooks(args) -> int:
    from .course import run_notebooks

    env = dict(pair.split("=", 1) for pair in args.env)
    run_notebooks(args.folder, args.output_dir, args.quick, env, args.times)
    return 0


def _docs(args) -> int:
    from .report.docs import render_all

    changed = render_all(args.root_dir, args.results, check=args.check)
    for path in changed:
        print(f"{path}: {'differs from its template rendered' if args.check else 'written'}")
    if args.check and changed:
        print("rpl docs: run `python -m rpl docs` to write them from docs/templates/", file=sys.stderr)
        return 1
    if not changed:
        print("README.md and docs/ are up to date with their templates and results/")
    return 0


def _triples(table):
    """compare()'s table with each measure's rerun, committed and paper numbers in one cell."""
    out = table[["experiment", "preset", "seeds"]].copy()
    for short in ("class", "global", "boundary class"):
        out[f"{short} acc.: rerun / committed / paper"] = [
            " / ".join("–" if v != v else f"{v:.1f}" for v in values)
            for values in table[[f"{short}: rerun", f"{short}: committed", f"{short}: paper"]].itertuples(index=False)
        ]
    return out.assign(spread=table["spread"], verdict=table["verdict"])


def _compare(args) -> int:
    from pathlib import Path

    from .experiments import compare
    from .files import write_text
    from .report.tables import markdown_table

    if not Path(args.rerun).is_dir():
        raise FileNotFoundError(f"{args.rerun}: no such folder of results (python -m rpl reproduce --results ...)")
    groups = tuple(args.group) or ("paper",)
    table = compare(args.rerun, args.committed, groups)
    if table.empty:
        print(f"rpl compare: no results of the {', '.join(groups)} experiments in {args.rerun}", file=sys.stderr)
        return 1
    text = (
        f"Rerun ({args.rerun}) against the committed results ({args.committed}) and the paper, in %. "
        "seeds: rerun / committed; verdict: the rerun's class accuracy against the committed mean, "
        "judged by the seeds' spread (its own seeds' range, or the largest range among its preset's "
        "experiments).\n\n" + markdown_table(_triples(table))
    )
    print(text, end="")
    if args.out:
        write_text(args.out, text)
        print(f"-> {args.out}")
    return 0


def _gradients(args) -> int:
    from pathlib import Path

    import torch

    from .experiments import EXPERIMENTS
    from .files import write_json
    from .provenance import provenance
    from .runs import build_model, load_dataset, open_run
    from .runs.gradients import backbone_gradients

    if not args.runs and not args.init:
        print("rpl gradients: give run folders, or --init EXPERIMENT", file=sys.stderr)
        return 2
    unknown = [name for name in args.init if name not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"--init {unknown[0]}: not an experiment; choose from {sorted(EXPERIMENTS)}")
    code = {key: value for key, value in provenance().items() if key.startswith("git_")}  # the code it starts from
    command = "python -m rpl gradients " + " ".join(
        [*(f"runs/{Path(r).name}" for r in args.runs), *(f"--init {n}" for n in args.init)]
    )
    command += f" --images {args.images} --per-step {args.per_step} --out {args.out}"
    models = {}
    for folder in args.runs:
        run = open_run(folder)
        models[Path(folder).name] = (run.model, run.cfg)  # the run's name: its trained layers
    for name in args.init:
        cfg = EXPERIMENTS[name].config()
        torch.manual_seed(cfg.seed)
        models[f"init:{name}"] = (build_model(cfg, load_dataset(cfg, "train", args.root).num_classes), cfg)
    payload = {}
    for key, (model, cfg) in models.items():
        payload[key] = backbone_gradients(model, cfg, args.images, args.per_step, args.root, args.cache)
        last = payload[key]["blocks"][-1]
        print(
            f"{key}: loss {payload[key]['loss']:.3f}, backbone output gradient {last['grad_norm']:.3g} per image, "
            f"coherence {last['coherence']:.2f}, output entries with a gradient "
            f"{payload[key]['output_entries_with_gradient']:.1%}"
        )
    write_json(args.out, provenance(command=command, models=payload) | code)
    print(f"-> {args.out}")
    return 0


def _diagnose(args) -> int:
    from pathlib import Path

    from .report import diagnostics
    from .files import write_json
    from .provenance import provenance

    if bool(args.run) == args.bounds or (args.curve and args.bounds):
        print("rpl diagnose: give a run folder (with --curve, or not) or --bounds", file=sys.stderr)
        return 2
    if args.bounds:
        from .proposals import ProposalCache

        test = data.open_dataset(args.dataset, "test", root=args.root)
        payload = {
            "dataset": args.dataset,
            "split": test.split,
            "images": len(test),
            **diagnostics.upper_bounds(test, ProposalCache(test, root=args.cache)),
        }
        out = Path(args.out or "results/diagnostics_bounds.json")
    elif args.curve:
        payload = {
            "run": str(args.run),
            **diagnostics.learning_curve(args.run, args.train_images, args.root, args.cache, device=args.device),
        }
        out = Path(args.out or f"results/learning_curve_{Path(args.run).name}.json")
    else:
        payload = {
            "run": str(args.run),
            **diagnostics.diagnose(args.run, args.train_images, args.root, args.cache, device=args.device),
        }
        out = Path(args.out or f"results/diagnostics_{Path(args.run).name}.json")
    write_json(out, provenance(**payload))
    for entry in payload.get("epochs", []):  # --curve
        print(
            f"epoch {entry['epoch']:>3}: test class {entry['test']['class_accuracy']:.1%}  "
            f"train class {entry['train']['class_accuracy']:.1%}"
        )
    for key, value in payload.items():
        if isinstance(value, dict) and "all" in value:
            value = value["all"]
        if isinstance(value, dict) and "class_accuracy" in value:
            print(
                f"{key:>32}: global {value['global_accuracy']:.1%}  class {value['class_accuracy']:.1%}  "
                f"mIoU {value['mean_iou']:.1%}"
            )
    print(f"wrote {out}")
    return 0


def _figures(args) -> int:
    from pathlib import Path

    from .experiments import QUICK_RESULTS, QUICK_RUNS, reproduce
    from .report.figures import make_figures

    out = args.out or ("cache/figures-quick" if args.quick else "figures")
    runs = args.runs or (QUICK_RUNS if args.quick else "runs")
    if args.quick:  # the quick runs the figures compare, trained first when missing (minutes)
        reproduce(
            runs,
            Path(runs).parent / Path(QUICK_RESULTS).name,
            quick=True,
            only=["e2s2_cpu", "fcn_cpu"],
            data_root=args.root,
            cache_root=args.cache,
            progress=False,
        )
    make_figures(
        out, runs, examples_count=3 if args.quick else 5, data_root=args.root, cache_root=args.cache, quick=args.quick
    )
    return 0


def _tables(args) -> int:
    from .report.tables import markdown

    print(markdown(args.results), end="")
    return 0


def _add_locations(parser, device: bool = True) -> None:
    parser.add_argument("--root", help="data root (default: $RPL_DATA)")
    parser.add_argument("--cache", help="proposal cache root (default: $RPL_CACHE or ./cache)")
    if device:
        parser.add_argument("--device", default="cpu", type=_device, help="cpu or cuda (cuda:<index>)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rpl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download and extract a data set into $RPL_DATA (resumable)")
    fetch.add_argument("dataset", choices=sorted(data.SOURCES))
    fetch.add_argument("--root", help="data root (default: $RPL_DATA)")
    fetch.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a server")
    fetch.set_defaults(handler=_fetch)
    check = commands.add_parser("check", help="check that a data set is in place and readable")
    check.add_argument("dataset", type=_dataset, help="siftflow, pascal-context, or a data set folder")
    check.add_argument("--root", help="data root (default: $RPL_DATA)")
    check.set_defaults(handler=_check)
    prop = commands.add_parser("proposals", help="Selective Search for a whole data set into the cache (resumable)")
    prop.add_argument("--dataset", type=_dataset, default="siftflow", help="a name, or a data set folder")
    prop.add_argument(
        "--split",
        default="all",
        choices=["train", "test", "val", "all"],
        help="train, test (val: the same, PASCAL Context's name for it), or all (default)",
    )
    prop.add_argument("--color-spaces", default="rgb,hsv,lab", help="comma-separated")
    prop.add_argument("--shard", type=_shard, default=(0, 1), help="i/n: this job's share")
    prop.add_argument("--workers", type=_workers, default=None, help="processes (default: all cores)")
    prop.add_argument("--root", help="data root (default: $RPL_DATA)")
    prop.add_argument("--cache", help="cache root (default: $RPL_CACHE or ./cache)")
    prop.set_defaults(handler=_proposals)
    tr = commands.add_parser("train", help="train a model (resumable)")
    tr.add_argument("--preset", choices=["quick", "cpu", "ablation", "paper"], default="cpu")
    tr.add_argument("--model", choices=["e2s2", "baseline", "fcn"], default="e2s2")
    tr.add_argument("--dataset", type=_dataset, help="siftflow (default), pascal-context, or a data set folder")
    tr.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of the preset (repeatable), e.g. --set pooling=box",
    )
    tr.add_argument("--out", required=True, help="run folder (checkpoint, log, config)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    tr.add_argument(
        "--keep-epochs",
        action="store_true",
        help="keep every epoch's checkpoint in --out/epochs (for `diagnose --curve`)",
    )
    _add_locations(tr)
    tr.set_defaults(handler=_train)
    ev = commands.add_parser("evaluate", help="evaluate a run: all pixels and 4-px boundaries")
    ev.add_argument("run", help="run folder written by `train`")
    ev.add_argument("--split", default="test", choices=["train", "test"])
    ev.add_argument("--results", help="also write the metrics with provenance to this JSON file")
    ev.add_argument(
        "--dataset",
        type=_dataset,
        help="evaluate on this data set (a name or a folder with the run's classes) "
        "instead of the one the run was trained on, e.g. its folder moved",
    )
    _add_locations(ev)
    ev.set_defaults(handler=_evaluate)
    pr = commands.add_parser("predict", help="label any image with a trained run")
    pr.add_argument("run", help="run folder written by `train`")
    pr.add_argument("image", help="an image file")
    pr.add_argument("-o", "--output", required=True, help="label map PNG to write (an overlay is written beside it)")
    pr.add_argument(
        "--size",
        type=int,
        help="rescale the image so its longer side has this many pixels before "
        "predicting (default: as the run was trained; the label map keeps the image's size)",
    )
    pr.set_defaults(handler=_predict)
    rep = commands.add_parser("reproduce", help="train and evaluate every experiment of rpl.experiments (resumable)")
    rep.add_argument("--quick", action="store_true", help="quick preset, into cache/quick-runs and cache/quick-results")
    rep.add_argument("--only", action="append", default=[], metavar="EXPERIMENT", help="run only these (repeatable)")
    rep.add_argument("--first-seed", action="store_true", help="seed 0 of each experiment only")
    rep.add_argument("--runs", help="run folders (default: runs/)")
    rep.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    rep.add_argument("--results", help="results files (default: results/)")
    _add_locations(rep)
    rep.set_defaults(handler=_reproduce)
    dia = commands.add_parser(
        "diagnose",
        help="why a run gets what it gets: train-set fit, ground-truth regions "
        "at test, winning regions; or (--bounds) what the regions allow",
    )
    dia.add_argument("run", nargs="?", help="run folder written by `train`")
    dia.add_argument("--bounds", action="store_true", help="the superpixel and proposal upper bounds on the test set")
    dia.add_argument(
        "--curve", action="store_true", help="test and train accuracy of each epoch the run kept (train --keep-epochs)"
    )
    dia.add_argument("--dataset", type=_dataset, default="siftflow", help="with --bounds: a name or a folder")
    dia.add_argument("--train-images", type=int, default=200, help="training images to measure the fit on")
    dia.add_argument("--out", help="JSON file (default: results/diagnostics_<run>.json or _bounds.json)")
    _add_locations(dia)
    dia.set_defaults(handler=_diagnose)
    nbs = commands.add_parser("notebooks", help="run the notebooks in order, each timed")
    nbs.add_argument("--quick", action="store_true", help="quick mode (RPL_QUICK=1)")
    nbs.add_argument("--output-dir", help="write the executed notebooks there (default: in place)")
    nbs.add_argument("--times", help="record each notebook's time in this JSON file")
    nbs.add_argument("--folder", default="notebooks", help="the notebooks' folder (default: notebooks/)")
    nbs.add_argument(
        "--env", action="append", default=[], type=_env_pair, metavar="KEY=VALUE", help="for the kernels (repeatable)"
    )
    nbs.set_defaults(handler=_notebooks)
    doc = commands.add_parser("docs", help="write README.md and docs/ from docs/templates/, numbers from results/")
    doc.add_argument("--check", action="store_true", help="only say which files differ (exit 1 if any)")
    doc.add_argument("--results", help="results folder (default: results/)")
    doc.add_argument("--root-dir", default=".", help="the repository (default: .)")
    doc.set_defaults(handler=_docs)
    com = commands.add_parser(
        "compare", help="a rerun's results beside the committed results and the paper's, each difference judged"
    )
    com.add_argument("rerun", help="the rerun's results folder (python -m rpl reproduce --results ...)")
    com.add_argument("--committed", default="results", help="the committed results (default: results/)")
    com.add_argument(
        "--group", action="append", default=[], help="experiment groups (default: paper; repeatable: diagnosis)"
    )
    com.add_argument("--out", help="also write the table to this Markdown file")
    com.set_defaults(handler=_compare)
    gra = commands.add_parser(
        "gradients",
        help="the gradient each model sends into its backbone, per block, on the same training images",
    )
    gra.add_argument("runs", nargs="*", help="run folders written by `train` (their trained layers, as saved)")
    gra.add_argument(
        "--init",
        action="append",
        default=[],
        metavar="EXPERIMENT",
        help="an experiment's model as initialised (seed 0)",
    )
    gra.add_argument("--images", type=int, default=20, help="training images, a multiple of --per-step (default 20)")
    gra.add_argument("--per-step", type=int, default=10, help="images per step (default 10, the presets')")
    gra.add_argument("--out", default="results/gradients.json", help="JSON file (default: results/gradients.json)")
    _add_locations(gra, device=False)
    gra.set_defaults(handler=_gradients)
    tab = commands.add_parser("tables", help="the paper's tables beside ours, from results/, as Markdown")
    tab.add_argument("--results", default="results", help="results folder (default: results/)")
    tab.set_defaults(handler=_tables)
    fig = commands.add_parser("figures", help="draw the reproduction's figures from runs/ and results/")
    fig.add_argument("--quick", action="store_true", help="use (and train if missing) the quick runs")
    fig.add_argument("--out", help="folder (default: figures/, quick: cache/figures-quick)")
    fig.add_argument("--runs", help="run folders (default: runs/, quick: cache/quick-runs)")
    _add_locations(fig, device=False)
    fig.set_defaults(handler=_figures)
    return parser


# What a command reports in one line, "rpl <command>: <what is wrong>", exit status 1: bad input
# and missing files, named by the code that found them. Anything else is a bug and keeps its
# traceback.
ERRORS = (FileNotFoundError, FileExistsError, ValueError, data.DownloadError)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ERRORS as e:
        print(f"rpl {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
