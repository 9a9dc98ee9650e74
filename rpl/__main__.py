"""The command line: ``python -m rpl <command> ...`` (``python -m rpl -h`` lists them)."""

from __future__ import annotations

import argparse
import sys

from . import data


def _fetch(args) -> int:
    try:
        path = data.fetch(args.dataset, root=args.root, timeout=args.timeout)
    except data.DownloadError as e:
        print(f"rpl fetch: {e}", file=sys.stderr)
        return 1
    print(f"{args.dataset} is ready in {path}")
    return 0


DATASETS = {
    "siftflow": (data.SiftFlow, ("train", "test")),
    "pascal-context": (data.PascalContext, ("train", "val")),
}


def _check(args) -> int:
    cls, splits = DATASETS[args.dataset]
    try:
        sets = [cls(split, root=args.root) for split in splits]
    except (FileNotFoundError, ValueError) as e:
        print(f"rpl check: {e}", file=sys.stderr)
        return 1
    sizes = " / ".join(f"{len(ds)} {split}" for ds, split in zip(sets, splits))
    print(f"{args.dataset}: {sizes} images, {sets[0].num_classes} classes, in {sets[0].root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rpl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser(
        "fetch", help="download and extract a data set into $RPL_DATA (resumable)"
    )
    fetch.add_argument("dataset", choices=sorted(data.SOURCES))
    fetch.add_argument("--root", help="data root (default: $RPL_DATA)")
    fetch.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a server")
    fetch.set_defaults(run=_fetch)
    check = commands.add_parser("check", help="check that a data set is in place and readable")
    check.add_argument("dataset", choices=sorted(DATASETS))
    check.add_argument("--root", help="data root (default: $RPL_DATA)")
    check.set_defaults(run=_check)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
