"""Benchmark: pruning during training against pruning after it, at equal epoch budgets.

LeNet-300-100 and LeNet-5 on the embedded MNIST sample, 3 seeds. Every method trains for the same number of
epochs E from the same initialisation. E is a budget at which dense training has converged on the validation
split (LeNet-5 dense val accuracy over seeds 10-15: 96.5 at 6 epochs, 96.9 at 9, 96.9 at 12, 97.0 at 15).
A network sparse from the first step needs more steps than a dense one: on val, RigL at 6 epochs is no better
than training its first random mask (regrown weights start at zero and are mostly dropped again before they
grow), and only at 12 epochs do its updates pay (+1.1 points over the fixed mask). A budget cut short of
convergence measures the speed of training, not what the sparse network reaches. Method list:
- dense: E epochs, no pruning (gives dense_acc);
- one-shot + fine-tune: E/2 dense epochs, global magnitude pruning, E/2 fine-tuning epochs;
- gradual: cubic schedule (Zhu & Gupta) from epoch 1 to 3E/4, global magnitude, then the rest at final sparsity;
- RigL and SET: constant sparsity from step 0, ER densities (ERK without the kernel dims: LeNet-5's two small
  convolutions stay dense), kept initial weights rescaled by 1/sqrt(layer density), RigL regrowing by the
  gradient summed over each 25-step interval, cosine-decayed drop fraction 0.3, updates until 3E/4;
- ticket: global magnitude pruning of the trained dense network (one round), rewinding to initialisation,
  then E epochs (the search costs the dense run: column search_epochs); reinit: the same masks with fresh
  random weights, E epochs.
Each (model, seed) is split into three jobs (dense-based methods, gradual, RigL + SET) run on 2 processes.
Writes bench/results/dynamic.json and dynamic.md. Run: python bench/dynamic.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

import minprune as mp
from minprune.dynamic.gradual import GradualPruner
from minprune.dynamic.schedules import make_schedule
from minprune.dynamic.sparse_training import DynamicSparseTrainer, SparseConfig
from minprune.masked import copy_model
from minprune.unstructured.lottery import RewindPoint, random_reinit, rewind, snapshot
from minprune.unstructured.prune import prune
from minprune.unstructured.scores import magnitude_scores

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = {"epochs": {"lenet300": 8, "lenet5": 12}, "lr": 3e-3, "batch_size": 64, "seeds": [0, 1, 2],
          "prune_after": [0.95], "dst": [0.9], "imp_path": [0.9], "tickets": [0.9],
          "dst_options": {"distribution": "er", "rescale_init": True, "accumulate": True, "interval": 25,
                          "drop_fraction": 0.3}}
GROUPS = ("dense", "dst", "gradual")  # longest first


def _train(model, splits, epochs, seed, callbacks=()):
    loader = splits.loader("train", CONFIG["batch_size"], seed=seed)
    mp.fit(model, loader, mp.TrainConfig(epochs=epochs, lr=CONFIG["lr"]), callbacks=callbacks, progress=False)
    return mp.accuracy(model, splits.loader("test", 1000))


def _fresh(arch, splits, seed):
    mp.seed_everything(seed)
    return mp.build(arch, input_shape=splits.input_shape, num_classes=splits.num_classes)


def run_one(arch: str, seed: int, group: str) -> list[dict]:
    """One group of methods for one model and seed: rows {model, method, sparsity, seed, acc, search_epochs}."""
    torch.set_num_threads(1)
    splits, E = mp.load("mnist-small"), CONFIG["epochs"][arch]
    steps = len(splits.loader("train", CONFIG["batch_size"])) * E
    rows = []

    def row(method, sparsity, acc, search=0):
        rows.append({"model": arch, "method": method, "sparsity": sparsity, "seed": seed, "acc": acc,
                     "epochs": E, "search_epochs": search})

    if group == "gradual":
        for s in CONFIG["prune_after"]:
            model = _fresh(arch, splits, seed)
            schedule = make_schedule("cubic", s, start=steps // E, end=3 * steps // 4,
                                     interval=max(1, steps // E // 2))
            pruner = GradualPruner(model, schedule, scope="global")
            row("gradual (cubic)", s, _train(model, splits, E, seed, [pruner]))
        return rows
    if group == "dst":
        for s in CONFIG["dst"]:
            for method, label in (("rigl", "RigL"), ("set", "SET")):
                model = _fresh(arch, splits, seed)
                cfg = SparseConfig(sparsity=s, method=method, end=3 * steps // 4, seed=seed, **CONFIG["dst_options"])
                row(label, s, _train(model, splits, E, seed, [DynamicSparseTrainer(model, cfg)]))
        return rows
    dense = _fresh(arch, splits, seed)
    init, halfway = snapshot(dense), RewindPoint(steps // 2)
    row("dense", 0.0, _train(dense, splits, E, seed, [halfway]))
    for s in CONFIG["prune_after"]:
        model = rewind(_fresh(arch, splits, seed), halfway.state)
        prune(model, magnitude_scores(model), s, scope="global")
        row("one-shot + fine-tune", s, _train(model, splits, E - E // 2, seed))
    trained, search = dense, 0  # IMP round 1 is the dense run itself
    for s in CONFIG["imp_path"]:
        ticket = copy_model(trained)
        prune(ticket, magnitude_scores(ticket), s, scope="global")
        rewind(ticket, init)
        acc = _train(ticket, splits, E, seed)
        search += E
        if s in CONFIG["tickets"]:
            control = random_reinit(copy_model(ticket), seed=1000 + seed)
            row("ticket (rewind to init)", s, acc, search)
            row("ticket reinit (control)", s, _train(control, splits, E, seed), search)
        trained = ticket
    return rows


def aggregate(raw: list[dict]) -> tuple[list[dict], dict]:
    """Mean and standard deviation over seeds; dense accuracy per model."""
    groups: dict[tuple, list[dict]] = {}
    for r in raw:
        groups.setdefault((r["model"], r["method"], r["sparsity"]), []).append(r)
    rows = []
    for (model, method, sparsity), rs in groups.items():
        accs = [r["acc"] for r in rs]
        rows.append({"model": model, "method": method, "sparsity": sparsity, "epochs": rs[0]["epochs"],
                     "search_epochs": rs[0]["search_epochs"], "acc_mean": statistics.mean(accs),
                     "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "seeds": len(accs)})
    order = ["dense", "one-shot + fine-tune", "gradual (cubic)", "RigL", "SET", "ticket (rewind to init)",
             "ticket reinit (control)"]
    rows.sort(key=lambda r: (list(CONFIG["epochs"]).index(r["model"]), order.index(r["method"]), r["sparsity"]))
    dense = {r["model"]: r["acc_mean"] for r in rows if r["method"] == "dense"}
    return rows, dense


def targets(rows: list[dict], dense: dict) -> list[dict]:
    """The issue's three targets, per model, with the numbers behind each verdict."""
    acc = {(r["model"], r["method"], r["sparsity"]): r["acc_mean"] for r in rows}
    out = []
    for m in dense:
        g, o = acc[(m, "gradual (cubic)", 0.95)], acc[(m, "one-shot + fine-tune", 0.95)]
        out.append({"model": m, "target": "gradual >= one-shot + fine-tune at 95%", "values": [g, o], "met": g >= o})
        r = acc[(m, "RigL", 0.9)]
        out.append({"model": m, "target": "RigL at 90% within 1 point of dense", "values": [r, dense[m]],
                    "met": r >= dense[m] - 1.0})
        for s in CONFIG["tickets"]:
            t, c = acc[(m, "ticket (rewind to init)", s)], acc[(m, "ticket reinit (control)", s)]
            out.append({"model": m, "target": f"ticket beats random reinit at {s:.0%}", "values": [t, c],
                        "met": t > c})
    return out


def to_markdown(rows: list[dict], dense: dict, checks: list[dict], seconds: float) -> str:
    lines = ["# Dynamic pruning benchmark", "",
             f"Embedded MNIST sample (3,500 train / 1,000 test), seeds {CONFIG['seeds']}, Adam lr {CONFIG['lr']}, "
             f"epochs per method {CONFIG['epochs']}; sparsity of the Linear/Conv weights. RigL/SET options "
             f"{CONFIG['dst_options']}. Runtime {seconds:.0f} s (2 processes).", "",
             "| model | method | sparsity | epochs | search epochs | acc mean (%) | acc std |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['method']} | {r['sparsity']:.2f} | {r['epochs']} | {r['search_epochs']} "
                     f"| {r['acc_mean']:.2f} | {r['acc_std']:.2f} |")
    lines += ["", "Dense accuracy: " + ", ".join(f"{m} {a:.2f}%" for m, a in dense.items()), "", "## Targets", ""]
    for c in checks:
        values = " vs ".join(f"{v:.2f}" for v in c["values"])
        lines.append(f"- {c['model']}: {c['target']}: {values} -> {'met' if c['met'] else 'MISSED'}")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 2 epochs (a smoke run, not saved)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        CONFIG.update(seeds=[0], epochs={"lenet300": 2, "lenet5": 2})
    jobs = [(arch, seed, group) for group in GROUPS for arch in CONFIG["epochs"] for seed in CONFIG["seeds"]]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        raw = [r for rows in pool.map(run_one, *zip(*jobs)) for r in rows]
    seconds = time.perf_counter() - start
    rows, dense = aggregate(raw)
    checks = targets(rows, dense)
    report = {"config": CONFIG, "rows": rows, "dense_acc": dense, "targets": checks, "raw": raw, "seconds": seconds}
    text = to_markdown(rows, dense, checks, seconds)
    print(text)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "dynamic.json").write_text(json.dumps(report, indent=1))
        (RESULTS / "dynamic.md").write_text(text)


if __name__ == "__main__":
    main()
