"""Where a forward pass spends its time: every layer timed with forward hooks.

MACs count arithmetic, not time. On a CPU a small layer also pays a fixed cost per kernel call (dispatch,
memory-layout reorders, padding its channels to the kernel's vector width), so a layer can cost the same
whatever its width, and pruning it buys nothing. `layer_latency` times every layer with forward hooks during the
passes of the kit's timer (`timing.time_models`, one thread unless told), so you see which layers set the latency
before you choose what to prune (Amdahl's law: a layer that keeps its time bounds the speedup of the whole model).
See notebooks/10_capstone.ipynb.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.ao.nn.quantized.modules.linear import LinearPackedParams

from minprune import devices
from minprune.measure import example_batch
from minprune.table import Table
from minprune.timing import check_models, check_warmup, time_models
from minprune.validate import model_arg, positive_int

OUTSIDE = "(outside layers)"


def unwrap(model: nn.Module) -> nn.Module:
    """The network a wrapper runs: `model.quantized` when the model keeps one there (the kit's int8 models from
    `static_int8` / `dynamic_int8` do), else the model itself, so that layers carry the float model's names."""
    inner = getattr(model, "quantized", None)
    return inner if isinstance(inner, nn.Module) else model


def _is_layer(module: nn.Module) -> bool:
    """A module without children; int8 Linear layers count too, though they hold their packed weights in a
    child module that is never called."""
    return all(isinstance(child, LinearPackedParams) for child in module.children())


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    """The layers, named as in the float model (an int8 model's wrapper prefix removed)."""
    return {name: m for name, m in unwrap(model).named_modules() if name and _is_layer(m)}


def _add_timers(model: nn.Module, leaves: dict[str, nn.Module], passes: list[dict], calls: dict[str, int],
                device: torch.device) -> list:
    """Hooks: each forward pass of `model` appends {layer: 0.0} to `passes`, and each leaf adds its forward time
    (ms, GPU work waited for) to that pass's entry and counts its calls."""
    handles, started = [], {}
    handles.append(model.register_forward_pre_hook(lambda _module, _args: passes.append(dict.fromkeys(leaves, 0.0))))
    for name, module in leaves.items():
        def before(_module, _args, name=name):
            devices.synchronize(device)
            started[name] = time.perf_counter()

        def after(_module, _args, _output, name=name):
            devices.synchronize(device)
            passes[-1][name] += 1000 * (time.perf_counter() - started.pop(name))
            calls[name] += 1
        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    return handles


def layer_latency(model: nn.Module, input_shape=None, *, batch_size: int = 64, threads: int | None = 1,
                  warmup: int = 3, repeats: int = 20) -> Table:
    """Median forward time (ms) of every layer (module without children) at `batch_size`, one row each.

    `share %` is the layer's part of the median forward pass; the row `(outside layers)` is the time spent
    between layers (functional ops, quantize/dequantize steps, Python). The timers add a few microseconds per
    layer. Works for float models and int8 models (`static_int8`), whose rows carry the float layer names.
    On `threads` threads (1 unless told) and the model's device, which the title names; float16 and bfloat16
    models are timed on inputs of their dtype. See notebooks/10_capstone.ipynb.
    """
    model_arg(model)
    positive_int(batch_size, "batch_size")
    positive_int(threads, "threads", none_ok=True)
    check_warmup(warmup)
    positive_int(repeats, "repeats")
    x = example_batch(model, input_shape, batch_size)
    leaves = _leaves(model)
    passes, calls = [], dict.fromkeys(leaves, 0)
    handles = _add_timers(model, leaves, passes, calls, x.device)
    try:
        timed = time_models({"model": model}, x, threads=threads, rounds=repeats, per_round=1, warmup=warmup)
    finally:
        for handle in handles:
            handle.remove()
    total = statistics.median(timed.samples["model"])
    timed_passes = passes[-repeats:]  # one pass per round; the first `warmup` were not timed
    rows = [{"layer": name, "type": type(leaves[name]).__name__, "ms": statistics.median(p[name] for p in timed_passes)}
            for name in leaves if calls[name]]
    rows.append({"layer": OUTSIDE, "type": "", "ms": max(0.0, total - sum(row["ms"] for row in rows))})
    for row in rows:
        row["share %"] = 100 * row["ms"] / total
    return Table(rows, title=f"{type(model).__name__}: {total:.2f} ms per batch of {batch_size}, "
                             f"{timed.threads} thread(s), on {timed.device}")


def compare_layer_latency(models: dict[str, nn.Module], input_shape=None, **kwargs) -> Table:
    """`layer_latency` of several models side by side: one row per layer name (a float model and its pruned or
    int8 versions share names), columns `<model> ms` and `<model> %`; blank where a model has no such layer
    (int8 fuses each ReLU into the layer before it). kwargs go to `layer_latency`.
    See notebooks/10_capstone.ipynb.
    """
    check_models(models)
    for name, model in models.items():
        model_arg(model, f"models[{name!r}]")
    tables = {name: {row["layer"]: row for row in layer_latency(m, input_shape, **kwargs).rows}
              for name, m in models.items()}
    layers = list(dict.fromkeys(layer for rows in tables.values() for layer in rows if layer != OUTSIDE))
    rows = []
    for layer in [*layers, OUTSIDE]:
        row = {"layer": layer}
        for name, by_layer in tables.items():
            found = by_layer.get(layer)
            row[f"{name} ms"] = found["ms"] if found else ""
            row[f"{name} %"] = found["share %"] if found else ""
        rows.append(row)
    totals = {name: sum(row["ms"] for row in by_layer.values()) for name, by_layer in tables.items()}
    return Table(rows, title=f"per-layer latency (ms) on {devices.where(models.values())}, forward pass: " + ", ".join(
        f"{name} {total:.2f}" for name, total in totals.items()))
