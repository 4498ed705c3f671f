"""Structured pruning benchmark: MACs, parameters, accuracy and real CPU speedup, next to Torch-Pruning 1.6.1.

For SmallVGG and SmallResNet (embedded MNIST subset, fine-tuned 6 epochs) and torchvision resnet18 (10 classes, 3x32x32,
untrained: no offline data set of that shape, so no accuracy), remove the same fraction of channels of every
coupled group with L1 filter scores, once with minprune and once with Torch-Pruning, then time dense, minprune
and Torch-Pruning models interleaved in this process (medians): batch 64 and 1 at 2 threads, batch 64 at 1 thread,
and batch 64 with channels_last (NHWC) models. A last row repeats resnet18 with widths rounded down to multiples
of 16 (`round_to=16` in both tools). Writes bench/results/structured.json and .md.
Run: python bench/structured.py   (MINPRUNE_FAST=1 for a quick smoke run; MINPRUNE_BENCH_THREADS=n to change 2)
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
SPARSITY = 0.5625  # resnet18: 9/16 of the channels of every group, exact for 64..512 (0.5 removes only 73% of MACs)
SMALL_SPARSITY = 0.51  # the smallest uniform fraction that removes >= 75% of SmallVGG's / SmallResNet's MACs
FINETUNE_EPOCHS = 2 if FAST else 6  # Adam, lr 1e-3 with cosine decay to 0 over the epochs
THREADS = int(os.environ.get("MINPRUNE_BENCH_THREADS", "2"))
REPEATS = {64: 5 if FAST else 11, 1: 10 if FAST else 31}
OUT = Path(__file__).parent / "results"


def tp_prune(model, example, sparsity, kept, round_to=None):
    """Torch-Pruning at the same per-group channel counts, L1 magnitude importance, no global ranking.

    kept: {layer name: channels minprune kept}. Torch-Pruning keeps int(size * (1 - sparsity)) channels where
    minprune removes round(size * sparsity) (at 0.51, a 16-channel layer keeps 7 versus 8), so each layer gets
    the ratio 1 - kept / size, which gives both tools the same widths (exact in binary for these sizes).
    """
    import torch_pruning as tp

    model = copy.deepcopy(model)  # the classifier to keep must be the copy's own layer, not the original's
    ratios = {model.get_submodule(name): 1 - n / _width(model.get_submodule(name)) for name, n in kept.items()}
    start = time.perf_counter()
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=sparsity, pruning_ratio_dict=ratios,
                                  ignored_layers=[_classifier(model)], round_to=round_to)
    pruner.step()
    return model, time.perf_counter() - start


def mp_prune(model, example, sparsity, round_to=None):
    start = time.perf_counter()
    small = mp.prune_channels(model, sparsity, example=example, round_to=round_to)
    return small, time.perf_counter() - start


def fine_tune(model, data):
    mp.seed_everything(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=FINETUNE_EPOCHS)
    for _ in range(FINETUNE_EPOCHS):
        mp.fit(model, data.loader("train", 64), mp.TrainConfig(epochs=1, optimizer=opt), progress=False)
        decay.step()
    return mp.evaluate(model, data.loader("test", 500))["acc"]


def timings(models, shape):
    """Speedups over 'dense', every model timed interleaved: b64 and b1 at THREADS threads, b64 at 1 thread
    (less exposed to other processes on a shared machine), and b64 with NHWC (channels_last) models and input."""
    out = {f"b{b}": mp.speedups(models, shape, batch_size=b, threads=THREADS, repeats=REPEATS[b]) for b in (64, 1)}
    out["b64_1t"] = mp.speedups(models, shape, batch_size=64, threads=1, repeats=REPEATS[64])
    nhwc = {k: copy.deepcopy(m).to(memory_format=torch.channels_last) for k, m in models.items()}
    out["b64_nhwc"] = mp.speedups(nhwc, shape, batch_size=64, threads=THREADS, repeats=REPEATS[64])  # NHWC inputs too
    return out


def measure(name, dense, example, sparsity, data=None, round_to=None):
    shape = tuple(example.shape[1:])
    dense.eval()
    ours, t_ours = mp_prune(dense, example, sparsity, round_to)
    graph = mp.trace_groups(dense, example)
    kept = {name: _width(ours.get_submodule(name)) for g in graph.prunable() for name in g.producers}
    theirs, t_theirs = tp_prune(dense, example, sparsity, kept, round_to)
    assert _classifier(theirs).out_features == _classifier(dense).out_features, "Torch-Pruning removed classes"
    macs = {k: mp.count_macs(m, shape) for k, m in (("dense", dense), ("ours", ours), ("tp", theirs))}
    params = {k: mp.count_params(m) for k, m in (("dense", dense), ("ours", ours), ("tp", theirs))}
    acc_drop = None
    if data is not None:
        base = mp.evaluate(dense, data.loader("test", 500))["acc"]
        acc_drop = base - fine_tune(ours, data)
    speed = timings({"dense": dense, "ours": ours, "tp": theirs}, shape)
    method = f"L1 filters, {sparsity:.2%} channels per group" + (f", round_to={round_to}" if round_to else "")
    macs_ratio = macs["dense"] / macs["ours"]
    row = {"model": name, "method": method, "macs_ratio": macs_ratio, "macs_removed": 1 - 1 / macs_ratio,
           "params_ratio": params["dense"] / params["ours"], "speedup_b64": speed["b64"]["ours"],
           "speedup_b1": speed["b1"]["ours"], "speedup_b64_1thread": speed["b64_1t"]["ours"],
           "speedup_b64_nhwc": speed["b64_nhwc"]["ours"], "b64_over_macs": speed["b64"]["ours"] / macs_ratio,
           "acc_drop": acc_drop, "prune_s": t_ours}
    tp_row = {"model": name, "method": "torch_pruning" + (f", round_to={round_to}" if round_to else ""),
              "macs_ours": macs["ours"], "macs_tp": macs["tp"], "macs_diff": macs["ours"] / macs["tp"] - 1,
              "params_ours": params["ours"], "params_tp": params["tp"],
              "params_diff": params["ours"] / params["tp"] - 1,
              "speedup_b64_ours": speed["b64"]["ours"], "speedup_b64_tp": speed["b64"]["tp"],
              "speedup_b1_ours": speed["b1"]["ours"], "speedup_b1_tp": speed["b1"]["tp"],
              "speedup_b64_1thread_ours": speed["b64_1t"]["ours"], "speedup_b64_1thread_tp": speed["b64_1t"]["tp"],
              "latency_b64_ours_over_tp": speed["b64"]["tp"] / speed["b64"]["ours"],
              "prune_s_ours": t_ours, "prune_s_tp": t_theirs}
    return row, tp_row


def _width(layer):
    return layer.out_features if isinstance(layer, torch.nn.Linear) else layer.out_channels


def _classifier(model):
    return model.fc if hasattr(model, "fc") else model.classifier


def main():
    torch.set_num_threads(THREADS)
    data = mp.load("mnist-small")
    rows, tp_rows = [], []
    resnet18 = lambda: torchvision.models.resnet18(num_classes=10)  # noqa: E731
    cases = [("SmallVGG", lambda: mp.pretrained("vgg", progress=False), SMALL_SPARSITY, data, None),
             ("SmallResNet", lambda: mp.pretrained("resnet", progress=False), SMALL_SPARSITY, data, None),
             ("resnet18", resnet18, SPARSITY, None, None),
             ("resnet18", resnet18, SPARSITY, None, 16)]
    start, load = time.perf_counter(), [os.getloadavg()[0]]
    for name, make, sparsity, d, round_to in cases:
        torch.manual_seed(0)
        model = make()
        example = torch.zeros(1, *(model.input_shape if hasattr(model, "input_shape") else (3, 32, 32)))
        row, tp_row = measure(name, model, example, sparsity, d, round_to)
        print(json.dumps(row), flush=True)
        rows.append(row)
        tp_rows.append(tp_row)
        load.append(os.getloadavg()[0])
        write(rows, tp_rows, load, time.perf_counter() - start)  # after every model: a partial run leaves results
    print(mp.Table(rows))
    print(mp.Table(tp_rows))


def write(rows, tp_rows, load, seconds):
    meta = {"torch": torch.__version__, "torch_pruning": _tp_version(), "threads": THREADS, "fast": FAST,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "finetune_epochs": FINETUNE_EPOCHS, "load_average_1min": [round(x, 1) for x in load],
            "bench_seconds": round(seconds)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "structured.json").write_text(json.dumps({"meta": meta, "rows": rows, "torch_pruning": tp_rows}, indent=2))
    md = ["# Structured pruning benchmark", "", f"`{json.dumps(meta)}`", "",
          "Speedups are medians of interleaved runs in one process (dense = 1). `load_average_1min` is the machine's",
          "load before and after each model: above the core count, other processes shared the cores and the",
          "2-thread figures understate what a quiet machine gives (`speedup_b64_1thread` is less affected).", "",
          mp.Table(rows).to_markdown(), "",
          "## Side by side with Torch-Pruning", "", mp.Table(tp_rows).to_markdown(), ""]
    (OUT / "structured.md").write_text("\n".join(md))


def _tp_version():
    import torch_pruning as tp

    return getattr(tp, "__version__", "unknown")


if __name__ == "__main__":
    main()
