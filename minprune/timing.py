"""Latency you can explain and trust: where a forward pass spends its time, and how far a speedup moves.

MACs count arithmetic, not time. On a CPU a small layer also pays a fixed cost per kernel call (dispatch,
memory-layout reorders, padding its channels to the kernel's vector width), so a layer can cost the same
whatever its width, and pruning it buys nothing. `layer_latency` times every layer with forward hooks, so you
see which layers set the latency before you choose what to prune (Amdahl's law: a layer that keeps its
time bounds the speedup of the whole model).

A shared CPU changes speed from second to second, so models compared one after the other are timed on
different machines. `interleaved_latency` times them in alternating rounds, so that a slow phase slows all
alike; even so, one measurement is one draw, and small models feel the machine's state more than big ones.
`speedup_spread` repeats it in passes and reports the median speedup with its lowest and highest;
`SpeedupSampler` takes its passes whenever you ask, so that they can be spread over minutes of other work.
Every model is timed where it sits (ONNX Runtime sessions on the CPU); on a GPU the clock is read only after
the queued work is done (`devices.synchronize`), and each table's title names the device(s) it timed.
See notebooks/10_capstone.ipynb and notebooks/11_deploy.ipynb.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import onnxruntime as ort
import torch
from torch import nn
from torch.ao.nn.quantized.modules.linear import LinearPackedParams

from minprune import devices
from minprune.measure import example_batch, num_threads
from minprune.quantization.int8 import Int8Model
from minprune.table import Table
from minprune.train import eval_mode

OUTSIDE = "(outside layers)"


def _check_count(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _is_layer(module: nn.Module) -> bool:
    """A module without children; int8 Linear layers count too, though they hold their packed weights in a
    child module that is never called."""
    return all(isinstance(child, LinearPackedParams) for child in module.children())


def _check_models(models) -> None:
    if not isinstance(models, dict) or not models:
        raise ValueError(f"models must be a non-empty dict {{name: model}}, got {models!r:.60}")


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    """The layers, named as in the float model (an int8 model's wrapper prefix removed)."""
    root = model.quantized if isinstance(model, Int8Model) else model
    return {name: m for name, m in root.named_modules() if name and _is_layer(m)}


def _add_timers(leaves: dict[str, nn.Module], spent: dict[str, float], calls: dict[str, int],
                device: torch.device) -> list:
    """Hooks that add each leaf's forward time (ms) to spent[name] and count its calls (GPU work waited for)."""
    handles, started = [], {}
    for name, module in leaves.items():
        def before(_module, _args, name=name):
            devices.synchronize(device)
            started[name] = time.perf_counter()

        def after(_module, _args, _output, name=name):
            devices.synchronize(device)
            spent[name] += 1000 * (time.perf_counter() - started.pop(name))
            calls[name] += 1
        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    return handles


@torch.inference_mode()
def layer_latency(model: nn.Module, input_shape=None, *, batch_size: int = 64, threads: int | None = 1,
                  warmup: int = 3, repeats: int = 20) -> Table:
    """Median forward time (ms) of every layer (module without children) at `batch_size`, one row each.

    `share %` is the layer's part of the median forward pass; the row `(outside layers)` is the time spent
    between layers (functional ops, quantize/dequantize steps, Python). The timers add a few microseconds per
    layer. Works for float models and int8 models (`static_int8`), whose rows carry the float layer names.
    Timed on the model's device, which the title names. See notebooks/10_capstone.ipynb.
    """
    _check_count("batch_size", batch_size, 1)
    _check_count("warmup", warmup, 0)
    _check_count("repeats", repeats, 1)
    x = example_batch(model, input_shape, batch_size)
    leaves = _leaves(model)
    per_pass = {name: [] for name in leaves}
    totals, calls = [], dict.fromkeys(leaves, 0)
    spent = dict.fromkeys(leaves, 0.0)
    handles = _add_timers(leaves, spent, calls, x.device)
    try:
        with eval_mode(model), num_threads(threads):
            for i in range(warmup + repeats):
                spent.update(dict.fromkeys(leaves, 0.0))
                start = time.perf_counter()
                model(x)
                devices.synchronize(x.device)
                if i >= warmup:
                    totals.append(1000 * (time.perf_counter() - start))
                    for name in leaves:
                        per_pass[name].append(spent[name])
    finally:
        for handle in handles:
            handle.remove()
    total = statistics.median(totals)
    rows = [{"layer": name, "type": type(leaves[name]).__name__, "ms": statistics.median(times)}
            for name, times in per_pass.items() if calls[name]]
    rows.append({"layer": OUTSIDE, "type": "", "ms": max(0.0, total - sum(row["ms"] for row in rows))})
    for row in rows:
        row["share %"] = 100 * row["ms"] / total
    return Table(rows, title=f"{type(model).__name__}: {total:.2f} ms per batch of {batch_size} on {x.device}")


def compare_layer_latency(models: dict[str, nn.Module], input_shape=None, **kwargs) -> Table:
    """`layer_latency` of several models side by side: one row per layer name (a float model and its pruned or
    int8 versions share names), columns `<model> ms` and `<model> %`; blank where a model has no such layer
    (int8 fuses each ReLU into the layer before it). kwargs go to `layer_latency`.
    See notebooks/10_capstone.ipynb.
    """
    _check_models(models)
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


def runner(model) -> Callable:
    """A function x -> output for a PyTorch model (inference mode; x on the model's device, which is waited for
    before returning) or an ONNX Runtime session (x on the CPU)."""
    if isinstance(model, ort.InferenceSession):
        name = model.get_inputs()[0].name
        return lambda x: model.run(None, {name: x.numpy()})

    def run(x):
        with torch.inference_mode():
            out = model(x)
        devices.synchronize(x.device)
        return out
    return run


def interleaved_latency(models: dict, input_shape, *, batch_size: int = 64, threads: int = 1,
                        rounds: int = 15, per_round: int = 3) -> dict[str, float]:
    """Median latency (ms) of PyTorch models (in eval mode; their mode is restored) and ONNX Runtime sessions,
    timed in alternating rounds.

    Each round times `per_round` calls of every model in turn, so a noisy, shared CPU slows all alike. Each
    model's turn starts with one untimed call: the first call after another model ran finds the caches cold
    (+0.6 ms for a 2.3 ms int8 LeNet-5 here), which a model serving requests does not pay.
    PyTorch runs with `threads` threads (sessions carry their own count, see `export.session`); each PyTorch model
    runs on its own device (`devices.where(models.values())` names them). See notebooks/11_deploy.ipynb.
    """
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0))  # global RNG untouched
    modules = [m for m in models.values() if isinstance(m, nn.Module)]
    training = [m.training for m in modules]
    runs = {name: runner(m.eval() if isinstance(m, nn.Module) else m) for name, m in models.items()}
    inputs = {name: x.to(devices.model_device(m)) if isinstance(m, nn.Module) else x for name, m in models.items()}
    times = {name: [] for name in models}
    try:
        with num_threads(threads):
            for _ in range(rounds):
                for name, run in runs.items():
                    run(inputs[name])  # warm again after the other models
                    start = time.perf_counter()
                    for _ in range(per_round):
                        run(inputs[name])
                    times[name].append(1000 * (time.perf_counter() - start) / per_round)
    finally:
        for module, mode in zip(modules, training):
            module.train(mode)
    return {name: statistics.median(t) for name, t in times.items()}


class SpeedupSampler:
    """Speedups of every model over `baseline` (default: the first), one interleaved pass (`rounds` rounds of
    `interleaved_latency`) each time `sample()` is called. Passes taken minutes apart, between other work, see
    more of a shared machine's states than passes taken back to back. `table()` summarises them.
    See notebooks/10_capstone.ipynb.
    """

    def __init__(self, models: dict, input_shape, *, baseline: str | None = None, rounds: int = 15,
                 batch_size: int = 64, threads: int = 1):
        _check_models(models)
        self.baseline = next(iter(models)) if baseline is None else baseline
        if self.baseline not in models:
            raise ValueError(f"baseline {self.baseline!r} is not one of the models: {', '.join(models)}")
        _check_count("rounds", rounds, 1)
        self.models, self.input_shape = models, input_shape
        self.options = {"rounds": rounds, "batch_size": batch_size, "threads": threads}
        self.ratios = {name: [] for name in models}

    def sample(self) -> None:
        """Time one interleaved pass and record every model's speedup in it."""
        ms = interleaved_latency(self.models, self.input_shape, **self.options)
        for name in self.models:
            self.ratios[name].append(ms[self.baseline] / ms[name])

    @property
    def passes(self) -> int:
        return len(self.ratios[self.baseline])

    def table(self) -> Table:
        """Per model: the median speedup over the passes so far, the lowest and the highest."""
        if not self.passes:
            raise ValueError("no passes yet: call sample() first")
        return Table([{"model": name, "x faster": statistics.median(r), "lowest": min(r), "highest": max(r),
                       "passes": len(r)} for name, r in self.ratios.items()],
                     title=f"speedup over {self.baseline!r} on {devices.where(self.models.values())}, batch "
                           f"{self.options['batch_size']}, {self.options['threads']} thread(s), {self.passes} passes")


def speedup_spread(models: dict, input_shape, *, baseline: str | None = None, passes: int = 5,
                   rounds: int = 15, batch_size: int = 64, threads: int = 1) -> Table:
    """Speedup of every model over `baseline` (default: the first) in `passes` interleaved measurements taken
    back to back (`SpeedupSampler`, `rounds` rounds each): median, lowest and highest, per model.

    Models may be PyTorch modules or ONNX Runtime sessions. See notebooks/10_capstone.ipynb.
    """
    _check_count("passes", passes, 1)
    sampler = SpeedupSampler(models, input_shape, baseline=baseline, rounds=rounds, batch_size=batch_size,
                             threads=threads)
    for _ in range(passes):
        sampler.sample()
    return sampler.table()
