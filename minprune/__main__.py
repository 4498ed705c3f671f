"""The command line: `python -m minprune demo` (and `--help`)."""

from __future__ import annotations

import argparse
import sys
import time

from . import data as data_lib
from .measure import compare
from .zoo import pretrained


def demo(args) -> int:
    """Train (or load) the baseline models on the embedded data and print the measurement table."""
    start = time.perf_counter()
    splits = data_lib.load("mnist-small")
    print(f"data: {splits}")
    models = {}
    for arch in args.models:
        print(f"training / loading baseline {arch} ...")
        models[arch] = pretrained(arch, retrain=args.retrain)
    table = compare(models, splits.loader("test", 500), threads=args.threads)
    table.title = "Baselines on mnist-small (test accuracy %, per-image MACs, batch-64 CPU latency, bytes)"
    print(table)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minprune", description="minprune: learn neural-network pruning")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train the baselines on the embedded data and measure them")
    p.add_argument("--models", nargs="+", default=["lenet300", "lenet5"],
                   choices=["lenet300", "lenet5", "vgg", "resnet"])
    p.add_argument("--retrain", action="store_true", help="ignore the cache and train again")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the latency measurement")
    p.set_defaults(func=demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
