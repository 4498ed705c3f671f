"""Why sparsity is not speed: time dense, masked, CSR-sparse and compacted models side by side.

A dense kernel multiplies zeros as fast as any other number, so a masked model costs what the dense one costs
(plus the mask hooks). A CSR kernel skips zeros but loses the dense kernel's vectorisation and needs very high
sparsity to win. Only removing whole units makes every remaining multiply useful. Timings on a shared machine
are noisy: `latency_grid` interleaves the models and reports medians, so ratios within one call are fair.
Each model runs where it sits (a GPU is synchronized before the clock is read); the table's title names the device.
See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings

import torch
from torch import nn

from minprune import devices
from minprune.layers import set_module
from minprune.measure import num_threads
from minprune.table import Table
from minprune.train import check_model


class CSRLinear(nn.Module):
    """A Linear layer whose weight is stored in compressed sparse row format (only the nonzeros)."""

    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        with warnings.catch_warnings():  # torch notes that CSR support is "in beta": true, nothing to act on
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
            self.weight = layer.weight.detach().to_sparse_csr()  # (out, in), nonzeros only
        self.bias = None if layer.bias is None else layer.bias.detach().clone()

    def forward(self, x):  # (batch, in) -> (batch, out): y^T = W @ x^T
        y = torch.sparse.mm(self.weight, x.t()).t()
        return y if self.bias is None else y + self.bias


def to_csr(model: nn.Module) -> nn.Module:
    """A copy of `model` with every nn.Linear replaced by a CSRLinear (masks made permanent first).

    The copy is on the CPU (its CSR tensors are no parameters, so it could not say where it runs otherwise).
    See notebooks/06_structured_pruning.ipynb.
    """
    check_model(model)
    new = copy.deepcopy(model).cpu()
    for name, mod in list(new.named_modules()):
        if isinstance(mod, nn.Linear):
            if hasattr(mod, "weight_orig"):  # torch.nn.utils.prune reparametrisation: bake the mask in
                torch.nn.utils.prune.remove(mod, "weight")
            set_module(new, name, CSRLinear(mod))
    return new


@torch.inference_mode()
def _time_once(model: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x)
    devices.synchronize(x.device)
    return 1000 * (time.perf_counter() - start)


def latency_grid(models: dict[str, nn.Module], input_shape, *, batch_sizes=(1, 8, 64, 256), threads=(1, 2),
                 repeats: int = 10, warmup: int = 2, channels_last: bool = False) -> Table:
    """Median forward time (ms) of each model for every batch size and thread count, runs interleaved.

    channels_last: feed (N, C, H, W) inputs in NHWC memory layout (convert the models too, for a fair test).
    Every model runs on its own device; the title says which. See notebooks/06_structured_pruning.ipynb.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for m in models.values():
        m.eval()
    rows = []
    for n_threads in threads:
        with num_threads(n_threads):
            for batch in batch_sizes:
                x = torch.randn(batch, *input_shape)
                if channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                inputs = {name: x.to(devices.model_device(m)) for name, m in models.items()}
                times = {name: [] for name in models}
                for i in range(warmup + repeats):
                    for name, m in models.items():  # interleaved: load changes hit every model alike
                        t = _time_once(m, inputs[name])
                        if i >= warmup:
                            times[name].append(t)
                row = {"threads": n_threads, "batch": batch}
                row.update({name: statistics.median(ts) for name, ts in times.items()})
                rows.append(row)
    return Table(rows, title=f"median forward time (ms) on {devices.where(models.values())}")


def speedups(models: dict[str, nn.Module], input_shape, *, batch_size: int = 64, threads: int | None = None,
             repeats: int = 10, baseline: str | None = None, channels_last: bool = False) -> dict[str, float]:
    """Speedup of every model over `baseline` (default: the first), from one interleaved `latency_grid`.

    Timed where the models sit (compare models on one device). See notebooks/06_structured_pruning.ipynb.
    """
    if not isinstance(models, dict) or not models:
        raise ValueError(f"models must be a non-empty dict {{name: model}}, got {models!r:.60}")
    n_threads = threads or torch.get_num_threads()
    row = latency_grid(models, input_shape, batch_sizes=(batch_size,), threads=(n_threads,), repeats=repeats,
                       channels_last=channels_last).rows[0]
    base = row[baseline or next(iter(models))]
    return {name: base / row[name] for name in models}
