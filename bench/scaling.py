"""Scaling benchmark: how the time of scoring, masking and surgery grows with model size.

Models, smallest to largest: minprune's LeNet-5, SmallVGG, SmallResNet, LeNet-300-100 and SmallResNet with 2x and
4x the channels (1x28x28 inputs, 10 classes), then torchvision's resnet18, resnet34 and resnet50 (weights=None,
built locally, 10 classes, 3x32x32 inputs, the CIFAR-10 shape): 62k to 23.5M parameters.
Operations, each on the untouched dense model:
- `magnitude`: `mp.magnitude_scores(model)`;
- `taylor`: `mp.taylor_scores(model, [(x, y)], batches=1)` on one batch of 16 random inputs (forward + backward
  on a private copy, so its cost follows the MACs as well as the parameters);
- `global_mask`: `mp.prune(copy, magnitude scores, 0.9, scope="global")`: one global ranking + `apply_masks`
  (the copy is made outside the timed region);
- `surgery`: `mp.prune_channels(model, 0.5, example=x[:1])`: fx tracing, L1 channel scores, selection and
  rebuilding a compacted copy.
All timings are medians over ROUNDS rounds; each round runs every operation on every model in turn
(interleaved), at 1 thread, so load from other processes hits all models alike. The growth is summarised by
the slope of log(time) against log(parameters) (1 = linear), fitted by least squares over all models and over
the models with at least 1M parameters (where fixed per-layer Python overheads no longer dominate).
Writes bench/results/scaling.json and .md. Run: python bench/scaling.py  (MINPRUNE_FAST=1: quick smoke run)
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torchvision

import minprune as mp

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
ROUNDS = 2 if FAST else 7
THREADS = 1
BATCH = 16
OUT = Path(__file__).parent / "results"
OPS = ("magnitude", "taylor", "global_mask", "surgery")


def models() -> dict[str, tuple[torch.nn.Module, tuple[int, int, int]]]:
    """{name: (model in eval mode, input shape)}, smallest first."""
    torch.manual_seed(0)
    mnist = (1, 28, 28)
    out = {"LeNet-5": (mp.build("lenet5"), mnist), "SmallVGG": (mp.build("vgg"), mnist),
           "SmallResNet": (mp.build("resnet"), mnist), "LeNet-300-100": (mp.build("lenet300"), mnist),
           "SmallResNet x2": (mp.build("resnet", widths=[32, 64, 128]), mnist),
           "SmallResNet x4": (mp.build("resnet", widths=[64, 128, 256]), mnist)}
    for name in ("resnet18", "resnet34", "resnet50"):
        out[name] = (getattr(torchvision.models, name)(weights=None, num_classes=10), (3, 32, 32))
    if FAST:
        out = {k: out[k] for k in ("LeNet-5", "SmallResNet", "SmallResNet x4", "resnet18")}
    return {name: (model.eval(), shape) for name, (model, shape) in out.items()}


def operations(model, shape):
    """{op: (prepare() -> arg, run(arg))}: only run() is timed."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(BATCH, *shape, generator=g), torch.randint(0, 10, (BATCH,), generator=g)
    scores = mp.magnitude_scores(model)
    return {
        "magnitude": (lambda: None, lambda _: mp.magnitude_scores(model)),
        "taylor": (lambda: None, lambda _: mp.taylor_scores(model, [(x, y)], batches=1)),
        "global_mask": (lambda: mp.copy_model(model), lambda twin: mp.prune(twin, scores, 0.9, scope="global")),
        "surgery": (lambda: None, lambda _: mp.prune_channels(model, 0.5, example=x[:1])),
    }


def timed(prepare, run) -> float:
    arg = prepare()
    start = time.perf_counter()
    run(arg)
    return time.perf_counter() - start


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log10(y) against log10(x)."""
    lx, ly = [math.log10(v) for v in xs], [math.log10(v) for v in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def main() -> dict:
    torch.set_num_threads(THREADS)
    zoo = models()
    ops = {name: operations(model, shape) for name, (model, shape) in zoo.items()}
    for name in zoo:  # warm-up: first calls import and compile code paths
        for prepare, run in ops[name].values():
            timed(prepare, run)
    times = {name: {op: [] for op in OPS} for name in zoo}
    load = [os.getloadavg()[0]]
    for _ in range(ROUNDS):
        for name in zoo:
            for op, (prepare, run) in ops[name].items():
                times[name][op].append(timed(prepare, run))
        load.append(round(os.getloadavg()[0], 1))
    rows = []
    for name, (model, shape) in zoo.items():
        params, macs = mp.count_params(model), mp.count_macs(model, shape)
        row = {"model": name, "input": "x".join(map(str, shape)), "params": params, "MACs": macs}
        for op in OPS:
            row[f"{op}_ms"] = 1000 * statistics.median(times[name][op])
        rows.append(row)
    fits, big = {}, [r for r in rows if r["params"] >= 1_000_000]
    for op in OPS:
        ms = [r[f"{op}_ms"] for r in rows]
        fits[op] = {"slope_vs_params_all": slope([r["params"] for r in rows], ms),
                    "slope_vs_params_1M_plus": slope([r["params"] for r in big], [r[f"{op}_ms"] for r in big])
                    if len(big) > 2 else None,
                    "slope_vs_macs_all": slope([r["MACs"] for r in rows], ms),
                    "us_per_kparam_largest": 1000 * ms[-1] / (rows[-1]["params"] / 1000)}
    env = {"torch": torch.__version__, "torchvision": torchvision.__version__, "threads": THREADS, "fast": FAST,
           "rounds": ROUNDS, "batch": BATCH, "cpu": platform.machine(), "cores": os.cpu_count(),
           "load_average_1min": load}
    return {"env": env, "rows": rows, "fits": fits}


def verdict(s: float) -> str:
    return "linear" if 0.8 <= s <= 1.2 else ("sub-linear" if s < 0.8 else "super-linear")


def to_markdown(result: dict) -> str:
    out = ["# Scaling benchmark: scoring, masking and surgery time against model size", "",
           f"`{json.dumps(result['env'])}`", "",
           "Median milliseconds per call, every operation of every model interleaved in one process at 1 thread "
           "(minprune models on 1x28x28 inputs, torchvision models on 3x32x32, 10 classes, weights=None). "
           "Absolute times depend on the machine and its load; the slopes are what to read.", "",
           "| model | input | params | MACs | " + " | ".join(f"{op} ms" for op in OPS) + " |",
           "|---|---|---|---|" + "---|" * len(OPS)]
    for r in result["rows"]:
        cells = [r["model"], r["input"], f"{r['params']:,}", f"{r['MACs']:,}"]
        out.append("| " + " | ".join(cells + [f"{r[f'{op}_ms']:.2f}" for op in OPS]) + " |")
    out += ["", "Slope of log(time) against log(size), least squares (1.0 = time proportional to size):", "",
            "| operation | slope vs params (all) | slope vs params (>= 1M params) | slope vs MACs (all) | "
            "us per 1k params (largest) | growth |", "|---|---|---|---|---|---|"]
    for op, f in result["fits"].items():
        tv = f["slope_vs_params_1M_plus"]
        main_slope = tv if tv is not None else f["slope_vs_params_all"]
        out.append(f"| {op} | {f['slope_vs_params_all']:.2f} | {'' if tv is None else f'{tv:.2f}'} | "
                   f"{f['slope_vs_macs_all']:.2f} | {f['us_per_kparam_largest']:.2f} | {verdict(main_slope)} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    result = main()
    OUT.mkdir(exist_ok=True)
    (OUT / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "scaling.md").write_text(to_markdown(result))
    print(to_markdown(result))
