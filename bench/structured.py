"""Structured pruning benchmark: MACs, parameters, accuracy and real CPU speedup, next to Torch-Pruning 1.6.1.

For SmallVGG and SmallResNet (embedded MNIST subset, fine-tuned) and torchvision resnet18 (10 classes, 3x32x32,
untrained: no offline data set of that shape, so no accuracy), remove the same fraction of channels of every
coupled group with L1 filter scores, once with minprune and once with Torch-Pruning, then time dense, minprune
and Torch-Pruning models interleaved in this process (medians). Writes bench/results/structured.json and .md.
Run: python bench/structured.py   (MINPRUNE_FAST=1 for a quick smoke run)
"""

from __future__ import annotations

import copy
import json
import os
import platform
import time
from pathlib import Path

import torch
import torchvision

import minprune as mp

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
SPARSITY = 0.5625  # 9/16 of the channels of every group: 0.4375^2 ~ 0.19 of a conv's MACs stay; exact for 16..512
FINETUNE_EPOCHS = 1 if FAST else 2
THREADS = 2
REPEATS = {64: 5 if FAST else 11, 1: 10 if FAST else 31}
OUT = Path(__file__).parent / "results"


def tp_prune(model, example, sparsity, classifier):
    """Torch-Pruning at the same per-group channel fraction, L1 magnitude importance, no global ranking."""
    import torch_pruning as tp

    model = copy.deepcopy(model)
    start = time.perf_counter()
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=sparsity, ignored_layers=[classifier])
    pruner.step()
    return model, time.perf_counter() - start


def mp_prune(model, example, sparsity):
    start = time.perf_counter()
    small = mp.prune_channels(model, sparsity, example=example)
    return small, time.perf_counter() - start


def fine_tune(model, data):
    mp.seed_everything(0)
    mp.fit(model, data.loader("train", 64), epochs=FINETUNE_EPOCHS, lr=1e-3, progress=False)
    return mp.evaluate(model, data.loader("test", 500))["acc"]


def measure(name, dense, example, data=None):
    shape = tuple(example.shape[1:])
    dense.eval()
    ours, t_ours = mp_prune(dense, example, SPARSITY)
    theirs, t_theirs = tp_prune(dense, example, SPARSITY, _classifier(dense))
    macs = {k: mp.count_macs(m, shape) for k, m in (("dense", dense), ("ours", ours), ("tp", theirs))}
    params = {k: mp.count_params(m) for k, m in (("dense", dense), ("ours", ours), ("tp", theirs))}
    acc_drop = None
    if data is not None:
        base = mp.evaluate(dense, data.loader("test", 500))["acc"]
        acc_drop = base - fine_tune(ours, data)
    models = {"dense": dense, "ours": ours, "tp": theirs}
    speed = {b: mp.speedups(models, shape, batch_size=b, threads=THREADS, repeats=REPEATS[b]) for b in (64, 1)}
    row = {"model": name, "method": f"L1 filters, {SPARSITY:.0%} channels per group",
           "macs_ratio": macs["dense"] / macs["ours"], "macs_removed": 1 - macs["ours"] / macs["dense"],
           "params_ratio": params["dense"] / params["ours"], "speedup_b64": speed[64]["ours"],
           "speedup_b1": speed[1]["ours"], "acc_drop": acc_drop, "prune_s": t_ours}
    tp_row = {"model": name, "method": "torch_pruning", "macs_ours": macs["ours"], "macs_tp": macs["tp"],
              "params_ours": params["ours"], "params_tp": params["tp"], "speedup_b64_ours": speed[64]["ours"],
              "speedup_b64_tp": speed[64]["tp"], "speedup_b1_ours": speed[1]["ours"], "speedup_b1_tp": speed[1]["tp"],
              "prune_s_ours": t_ours, "prune_s_tp": t_theirs}
    return row, tp_row


def _classifier(model):
    return model.fc if hasattr(model, "fc") else model.classifier


def main():
    torch.set_num_threads(THREADS)
    data = mp.load("mnist-small")
    rows, tp_rows = [], []
    cases = [("resnet18", lambda: torchvision.models.resnet18(num_classes=10), None),
             ("SmallVGG", lambda: mp.pretrained("vgg", progress=False), data),
             ("SmallResNet", lambda: mp.pretrained("resnet", progress=False), data)]
    for name, make, d in cases:
        model = make()
        example = torch.zeros(1, *(model.input_shape if hasattr(model, "input_shape") else (3, 32, 32)))
        row, tp_row = measure(name, model, example, d)
        print(json.dumps(row), flush=True)
        rows.append(row)
        tp_rows.append(tp_row)
        write(rows, tp_rows)  # after every model, so a partial run still leaves its results
    print(mp.Table(rows))
    print(mp.Table(tp_rows))


def write(rows, tp_rows):
    meta = {"torch": torch.__version__, "torch_pruning": _tp_version(), "threads": THREADS, "fast": FAST,
            "cpu": platform.processor() or platform.machine(), "finetune_epochs": FINETUNE_EPOCHS,
            "sparsity": SPARSITY}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "structured.json").write_text(json.dumps({"meta": meta, "rows": rows, "torch_pruning": tp_rows}, indent=2))
    md = ["# Structured pruning benchmark", "", f"`{json.dumps(meta)}`", "", mp.Table(rows).to_markdown(), "",
          "## Side by side with Torch-Pruning", "", mp.Table(tp_rows).to_markdown(), ""]
    (OUT / "structured.md").write_text("\n".join(md))


def _tp_version():
    import torch_pruning as tp

    return getattr(tp, "__version__", "unknown")


if __name__ == "__main__":
    main()
