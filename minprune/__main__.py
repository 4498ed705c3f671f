"""The command line: `minprune demo`, `minprune run RECIPE`, `minprune export`, `minprune course`, `--version`.

Installed as the `minprune` command (and as `python -m minprune`); `minprune COMMAND --help` shows each one's
options and examples.

Each subcommand is one `add_<name>(subparsers)` function that registers its parser and sets `func`;
to add one, write such a function and append it to SUBCOMMANDS. Exit codes: 0 success, 2 a user error
(bad arguments, a bad recipe, a missing file: one line on stderr, no traceback), 130 interrupted.
See notebooks/10_capstone.ipynb.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from minprune import __version__
from minprune import data as data_lib
from minprune.assets import shipped_recipes
from minprune.deploy.cli import add_export_parser
from minprune.files import atomic_write
from minprune.measure import LatencyOptions, compare
from minprune.pipeline.recipe import PipelineConfig, from_dict, load_recipe, to_dict
from minprune.zoo import BASELINE_RECIPES, default_dataset, pretrained

EXIT_OK, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 2, 130
IMAGE_BASELINES = [arch for arch in BASELINE_RECIPES if default_dataset(arch) == "mnist-small"]  # demo's choices

# The pipeline `demo` runs after the baselines: LeNet-5, half of its channels removed, distilled, int8.
DEMO_PIPELINE = {
    "name": "demo",
    "base": {"arch": "lenet5"},
    "prune": {"method": "structured", "score": "l1", "sparsity": 0.5, "scope": "local"},
    "finetune": {"epochs": 3, "distill": True, "temperature": 4.0, "alpha": 0.5},
    "quantize": {"method": "int8"},
    "measure": {"repeats": 10},
}


def demo(args) -> int:
    """Train (or load) the baselines, print their measurements, then run the whole pipeline on LeNet-5."""
    start = time.perf_counter()
    splits = data_lib.load("mnist-small")
    print(f"data: {splits}")
    models = {}
    for arch in args.models:
        print(f"baseline {arch} ...")
        models[arch] = pretrained(arch, retrain=args.retrain)
    table = compare(models, splits.loader("test", 500), timing=LatencyOptions(threads=args.threads))
    table.title = ("Baselines on mnist-small (test accuracy %, per-image MACs, batch-64 CPU latency on "
                   f"{args.threads} thread(s), bytes)")
    print(table)
    if not args.skip_pipeline:
        config = from_dict({**DEMO_PIPELINE, "measure": {**DEMO_PIPELINE["measure"], "threads": args.threads}})
        print("\ncompression pipeline: " + _describe(config))
        result = _run_pipeline(config, splits)
        print(result.table)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return EXIT_OK


def _describe(config: PipelineConfig) -> str:
    p, f, q = config.prune, config.finetune, config.quantize
    teacher = f", distilled from the dense model (T={f.temperature}, alpha={f.alpha})" if f.distill else ""
    return (f"{config.base.arch} -> {p.method} pruning ({p.score}, sparsity {p.sparsity}, {p.scope}) -> "
            f"{f.epochs} epoch(s) of fine-tuning{teacher} -> quantize: {q.method}")


def _run_pipeline(config: PipelineConfig, splits=None):
    from minprune.pipeline.runner import run_pipeline  # imported late: `--help` stays fast

    return run_pipeline(config, splits, progress=True)


def write_report(result, out: Path) -> list[Path]:
    """Write report.md, results.json, pareto.png (and history.png after fine-tuning) into `out`."""
    import matplotlib  # heavy and only for the report: imported here, after the pipeline ran

    matplotlib.use("Agg")  # before pyplot is imported (the two plot modules below import it)
    from minprune.course.plots import plot_history
    from minprune.pipeline.pareto import plot_pareto

    out.mkdir(parents=True, exist_ok=True)
    images = [out / "pareto.png"]
    plot_pareto(result.table.rows).savefig(images[0])
    if result.history is not None and result.history.epoch:
        images.append(out / "history.png")
        plot_history(result.history, label="fine-tune").savefig(images[1])
    results = out / "results.json"
    payload = {"config": to_dict(result.config), "stages": result.table.rows, "seconds": result.seconds}
    atomic_write(results, lambda f: f.write((json.dumps(payload, indent=2) + "\n").encode()))
    report = out / "report.md"
    atomic_write(report, lambda f: f.write(_markdown(result, [p.name for p in images]).encode()))
    return [report, results, *images]


def _markdown(result, images: list[str]) -> str:
    config = result.config
    lines = [f"# minprune pipeline: {config.name}", "", _describe(config), "", result.table.to_markdown(), "",
             "Accuracy is test accuracy (%); `drop` is in points against the dense model; latency is the median "
             f"over interleaved rounds at batch {config.measure.batch_size}, {config.measure.threads} thread(s); "
             "KB is the serialized state_dict.", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {sec:.1f} |" for name, sec in result.seconds.items()]
    lines += ["", *[f"![{name}]({name})" for name in images], "", "## Recipe", "", "```json",
              json.dumps(to_dict(config), indent=2), "```", ""]
    return "\n".join(lines)


def run(args) -> int:
    """Run the pipeline of a TOML recipe and write a markdown report with plots to the output folder."""
    config = load_recipe(args.recipe)
    out = Path(args.out) if args.out else Path("runs") / config.name
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    print(f"recipe {args.recipe}: " + _describe(config))
    result = _run_pipeline(config)
    print(result.table)
    for path in write_report(result, out):
        print(f"wrote {path}")
    return EXIT_OK


def _parser(sub, name: str, *, help: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """A subcommand's parser with its examples below the options."""
    epilog = "examples:\n" + "\n".join(f"  python -m minprune {line}" for line in examples)
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_demo(sub) -> None:
    p = _parser(sub, "demo", help="load the baselines, measure them, and run the compression pipeline",
                description="Baselines on the embedded data, then LeNet-5 pruned, distilled and quantized.",
                examples=["demo", "demo --models lenet5 vgg --skip-pipeline", "demo --threads 2"])
    p.add_argument("--models", nargs="+", default=["lenet300", "lenet5"], choices=IMAGE_BASELINES,
                   metavar="ARCH", help=f"baselines to measure, from: {', '.join(IMAGE_BASELINES)} "
                                        "(default: %(default)s)")
    p.add_argument("--retrain", action="store_true",
                   help="train the baselines again on this machine instead of loading the shipped files")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for the latency measurements (default: %(default)s, the kit's rule for "
                        "comparing models)")
    p.add_argument("--skip-pipeline", action="store_true", help="only the baseline table")
    p.set_defaults(func=demo)


def add_run(sub) -> None:
    shipped = ", ".join(shipped_recipes())
    p = _parser(sub, "run", help="run a pipeline recipe (TOML) and write a report",
                description="Run the pipeline described by a TOML recipe and write report.md, results.json and "
                            f"plots to the output folder. Shipped recipes: {shipped}.",
                examples=["run tiny", "run lenet5-capstone --out runs/capstone", "run my-recipe.toml"])
    p.add_argument("recipe", help=f"a TOML recipe file, or the name of a shipped recipe ({shipped})")
    p.add_argument("--out", default=None, help="output folder (default: runs/<recipe name>)")
    p.set_defaults(func=run)


def course(args) -> int:
    """Write the student notebooks, an nbgrader course, or the HTML pages, from the solution notebooks."""
    if args.action == "nbgrader":
        from minprune.course.nbgrader import write_course as write
    elif args.action == "html":
        from minprune.course.site import write_site as write
    else:
        from minprune.course.student import generate_student_notebooks as write

    for path in write(args.src, args.outdir):
        print(f"wrote {path}")
    return EXIT_OK


def add_course(sub) -> None:
    p = _parser(sub, "course", help="course tools: generate student notebooks, an nbgrader course or HTML pages",
                description="Generate student notebooks from the solution notebooks for a lab hand-out "
                            "(solutions replaced by stubs, outputs cleared), or an nbgrader course folder "
                            "(nbgrader_config.py and source/<notebook>/, one assignment per notebook with "
                            "exercises, for nbgrader generate_assignment and autograde), or static HTML pages "
                            "with the committed outputs (each live widget replaced by a note).",
                examples=["course student student/", "course student handout/ --src notebooks",
                          "course nbgrader grading/", "course html site/"])
    p.add_argument("action", choices=["student", "nbgrader", "html"],
                   help="what to do; 'student': write student notebooks; 'nbgrader': write an nbgrader course; "
                        "'html': write the notebooks as HTML pages")
    p.add_argument("outdir", help="folder for the student notebooks (must differ from --src), the nbgrader course or "
                                  "the HTML pages")
    p.add_argument("--src", default="notebooks", help="folder of the solution notebooks (default: %(default)s)")
    p.set_defaults(func=course)


SUBCOMMANDS = [add_demo, add_run, add_export_parser, add_course]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minprune", description="minprune: learn neural-network pruning",
                                     epilog="Run 'python -m minprune COMMAND --help' for a command's options and "
                                            "examples.")
    parser.add_argument("--version", action="version", version=f"minprune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)  # argparse itself exits with 2 on bad arguments
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # RecipeError, CheckpointError, missing or unwritable files
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
