"""Benchmark: unstructured (weight) pruning of LeNet-300-100 on the embedded MNIST sample, 3 seeds.

For every seed the dense baseline is `mp.pretrained("lenet300", seed=seed)`; every figure is compared with the
dense model of the same seed. Methods (all global except local magnitude): random, local magnitude, global
magnitude, Taylor, SNIP, SynFlow (iterative SynFlow masks), each pruned one-shot at the target sparsity and then
fine-tuned; global magnitude and Taylor also iterative (Han et al. 2015: ROUNDS rounds to the target, the same
total number of fine-tuning epochs). Also checks mask parity with torch.nn.utils.prune and times the masked
forward pass against the dense one (interleaved repeats, medians).
Writes bench/results/unstructured.json and .md. Run: python bench/unstructured.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.nn.utils import prune as torch_prune

import minprune as mp

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = {"seeds": [0, 1, 2], "sparsities": [0.9, 0.95, 0.98, 0.99], "fine_tune_epochs": 15, "rounds": 3,
          "lr": 1e-3, "optimizer": "adam", "synflow_rounds": 5, "score_batches": 4, "threads": 1}


def score_fns(splits):
    loader = splits.loader("train", 128, shuffle=False)
    n = CONFIG["score_batches"]
    return {
        "random": lambda m: mp.random_scores(m, seed=0),
        "magnitude-local": mp.magnitude_scores,
        "magnitude-global": mp.magnitude_scores,
        "taylor": lambda m: mp.taylor_scores(m, loader, batches=n),
        "snip": lambda m: mp.snip_scores(m, loader, batches=n),
    }


def one_shot(dense, splits, method, fn, sparsity):
    """(accuracy right after pruning, accuracy after fine-tuning) on the test split."""
    test = splits.loader("test", 1000)
    model = mp.copy_model(dense)
    if method == "synflow":
        mp.apply_masks(model, mp.synflow_masks(model, sparsity, rounds=CONFIG["synflow_rounds"]))
    else:
        scope = "local" if method == "magnitude-local" else "global"
        mp.prune(model, fn(model), sparsity, scope=scope)
    before = mp.accuracy(model, test)
    mp.fine_tune(model, splits,
                 mp.TrainConfig(epochs=CONFIG["fine_tune_epochs"], lr=CONFIG["lr"], optimizer=CONFIG["optimizer"]))
    return before, mp.accuracy(model, test)


def iterative(dense, splits, fn, sparsity):
    model = mp.copy_model(dense)
    epochs = CONFIG["fine_tune_epochs"] // CONFIG["rounds"]
    config = mp.IterativeConfig(epochs=epochs, lr=CONFIG["lr"], optimizer=CONFIG["optimizer"], eval_split="test")
    return mp.iterative_prune(model, fn, mp.iterative_sparsities(sparsity, CONFIG["rounds"]), splits, config)[-1]["acc"]


def run_seed(seed: int) -> tuple[float, list[dict]]:
    splits = mp.load("mnist-small", seed=seed)
    dense = mp.pretrained("lenet300", seed=seed, progress=False)
    dense_acc = mp.accuracy(dense, splits.loader("test", 1000))
    fns, rows = score_fns(splits), []
    for sparsity in CONFIG["sparsities"]:
        for method in [*fns, "synflow"]:
            mp.seed_everything(seed)
            before, after = one_shot(dense, splits, method, fns.get(method), sparsity)
            rows.append({"method": method, "schedule": "one-shot", "sparsity": sparsity, "seed": seed,
                         "acc": after, "acc_no_ft": before, "dense_acc": dense_acc})
        for method in ["magnitude-global", "taylor"]:
            mp.seed_everything(seed)
            acc = iterative(dense, splits, fns[method], sparsity)
            rows.append({"method": f"{method}-iterative", "schedule": "iterative", "sparsity": sparsity,
                         "seed": seed, "acc": acc, "dense_acc": dense_acc})
        print(f"seed {seed} sparsity {sparsity}: done", flush=True)
    return dense_acc, rows


def _std(xs):
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def aggregate(rows: list[dict]) -> list[dict]:
    out = []
    for key in dict.fromkeys((r["method"], r["schedule"], r["sparsity"]) for r in rows):
        group = [r for r in rows if (r["method"], r["schedule"], r["sparsity"]) == key]
        accs = [r["acc"] for r in group]
        deltas = [r["acc"] - r["dense_acc"] for r in group]
        row = {"method": key[0], "schedule": key[1], "sparsity": key[2], "acc_mean": statistics.mean(accs),
               "acc_std": _std(accs), "delta_mean": statistics.mean(deltas), "delta_std": _std(deltas),
               "seeds": accs}
        if "acc_no_ft" in group[0]:
            row["acc_no_ft_mean"] = statistics.mean(r["acc_no_ft"] for r in group)
        out.append(row)
    return out


def torch_parity() -> bool:
    """Our masks equal torch.nn.utils.prune's l1_unstructured (per layer) and global_unstructured."""
    dense = mp.pretrained("lenet300", seed=0, progress=False)
    names = mp.prunable_names(dense)
    same = True
    for sparsity in CONFIG["sparsities"]:
        for scope in ("local", "global"):
            ours, ref = mp.copy_model(dense), mp.copy_model(dense)
            mp.prune(ours, mp.magnitude_scores(ours), sparsity, scope=scope)
            params = [(ref.get_submodule(n.rpartition(".")[0]), "weight") for n in names]
            if scope == "local":
                for module, attr in params:
                    torch_prune.l1_unstructured(module, attr, amount=sparsity)
            else:
                torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=sparsity)
            a, b = mp.get_masks(ours), mp.get_masks(ref)
            same &= a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    return bool(same)


def forward_overhead(batch_size: int, repeats: int = 15) -> float:
    """Median over interleaved repeats of (masked forward time / dense forward time)."""
    dense = mp.pretrained("lenet300", seed=0, progress=False)
    masked = mp.copy_model(dense)
    mp.prune(masked, mp.magnitude_scores(masked), 0.9, scope="global")
    ratios = []
    for _ in range(repeats):
        kw = {"batch_size": batch_size, "threads": CONFIG["threads"], "warmup": 3, "repeats": 15}
        d = mp.latency(dense, **kw)["median_ms"]
        m = mp.latency(masked, **kw)["median_ms"]
        ratios.append(m / d)
    return statistics.median(ratios)


def to_markdown(report: dict) -> str:
    lines = ["# Unstructured pruning benchmark (LeNet-300-100, embedded MNIST, 3 seeds)", "",
             f"Dense test accuracy: {report['dense_acc']:.2f} ± {report['dense_acc_std']:.2f} %. "
             f"Fine-tuning: {CONFIG['fine_tune_epochs']} epochs (iterative: {CONFIG['rounds']} rounds of "
             f"{CONFIG['fine_tune_epochs'] // CONFIG['rounds']}). Δ = accuracy minus the dense model of the same seed.",
             "", "| method | sparsity | acc mean ± std | Δ vs dense | no fine-tune |", "|---|---|---|---|---|"]
    for r in report["results"]:
        no_ft = f"{r['acc_no_ft_mean']:.2f}" if "acc_no_ft_mean" in r else "-"
        lines.append(f"| {r['method']} | {r['sparsity']:g} | {r['acc_mean']:.2f} ± {r['acc_std']:.2f} | "
                     f"{r['delta_mean']:+.2f} ± {r['delta_std']:.2f} | {no_ft} |")
    t = report["targets"]
    lines += ["", f"- torch.nn.utils.prune mask parity: {report['torch_prune_parity']}",
              f"- masked / dense forward time: {report['masked_forward_overhead']:.2f} (batch 256), "
              f"{report['masked_forward_overhead_by_batch']['1']:.2f} (batch 1); goal <= 1.2",
              f"- 98% within 0.5 points of dense: {t['98_within_0.5']} (best: {t['best_at_0.98']})",
              f"- 99% within 1 point of dense (stretch): {t['99_within_1']} (best: {t['best_at_0.99']})",
              f"- runtime: {report['runtime_s']:.0f} s"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, two sparsities, 2 epochs (smoke test)")
    args = parser.parse_args()
    if args.quick:
        CONFIG.update(seeds=[0], sparsities=[0.9, 0.98], fine_tune_epochs=2, rounds=2, synflow_rounds=3)
    start = time.perf_counter()
    parity, overhead = torch_parity(), {str(b): forward_overhead(b) for b in (256, 1)}
    print(f"parity {parity}, masked/dense forward time {overhead}", flush=True)
    dense_accs, rows = [], []
    for seed in CONFIG["seeds"]:
        acc, seed_rows = run_seed(seed)
        dense_accs.append(acc)
        rows += seed_rows
    results = aggregate(rows)

    def best(s):
        candidates = [r for r in results if r["sparsity"] == s]
        return max(candidates, key=lambda r: r["delta_mean"]) if candidates else None

    b98, b99 = best(0.98), best(0.99)
    report = {
        "model": "lenet300", "data": "mnist-small (3500 train / 500 val / 1000 test)", "config": CONFIG,
        "dense_acc": statistics.mean(dense_accs), "dense_acc_std": _std(dense_accs), "dense_acc_seeds": dense_accs,
        "results": results, "torch_prune_parity": parity, "masked_forward_overhead": overhead["256"],
        "masked_forward_overhead_by_batch": overhead,
        "targets": {"98_within_0.5": bool(b98 and b98["delta_mean"] >= -0.5),
                    "best_at_0.98": b98 and {k: b98[k] for k in ("method", "acc_mean", "delta_mean")},
                    "99_within_1": bool(b99 and b99["delta_mean"] >= -1.0),
                    "best_at_0.99": b99 and {k: b99[k] for k in ("method", "acc_mean", "delta_mean")}},
        "rows": rows,
    }
    report["runtime_s"] = time.perf_counter() - start
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "unstructured_quick" if args.quick else "unstructured"
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{name}.md").write_text(to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
