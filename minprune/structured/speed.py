"""Why sparsity is not speed: time dense, masked, CSR-sparse and compacted models side by side.

A dense kernel multiplies zeros as fast as any other number, so a masked model costs what the dense one costs
(plus the mask hooks). A CSR kernel skips zeros but loses the dense kernel's vectorisation and needs very high
sparsity to win. Only removing whole units makes every remaining multiply useful. Timings on a shared machine
are noisy: `latency_grid` and `speedups` interleave the models (the kit's one timer, `timing.time_models`) and
report medians, so ratios within one call are fair.
Each model runs where it sits (a GPU is synchronized before the clock is read); the table's title names the device.
See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from minprune import devices
from minprune.layers import set_module
from minprune.table import Table
from minprune.timing import check_baseline, check_models, check_warmup, input_shape_arg, speedups_over, time_models
from minprune.validate import float_model, positive_int


def _counts(values, name: str, *, none_ok: bool = False) -> list:
    """`values` as a list of positive ints (None allowed with none_ok): a list or tuple, not one number."""
    if not isinstance(values, (list, tuple)) or not values:
        raise TypeError(f"{name} must be a non-empty list or tuple of positive ints, got {values!r:.60}")
    return [positive_int(v, name, none_ok=none_ok) for v in values]


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
    PyTorch's CPU CSR kernels have no float16/bfloat16 version, so those models are refused.
    See notebooks/06_structured_pruning.ipynb.
    """
    float_model(model, "to_csr")
    new = copy.deepcopy(model).cpu()
    for name, mod in list(new.named_modules()):
        if isinstance(mod, nn.Linear):
            if hasattr(mod, "weight_orig"):  # torch.nn.utils.prune reparametrisation: bake the mask in
                torch.nn.utils.prune.remove(mod, "weight")
            set_module(new, name, CSRLinear(mod))
    return new


def latency_grid(models: dict[str, nn.Module], input_shape, *, batch_sizes=(1, 8, 64, 256), threads=(1, 2),
                 repeats: int = 10, warmup: int = 2) -> Table:
    """Median forward time (ms) of each model for every thread count and batch size: one row each, from one
    interleaved `timing.time_models` call (`repeats` rounds of one call per model, after `warmup` rounds).

    `threads` lists the thread counts to compare (the kit's rule elsewhere: one thread unless told). A model
    converted with `.to(memory_format=torch.channels_last)` is fed NHWC inputs, for a fair test of that layout.
    Every model runs on its own device; the title says which. See notebooks/06_structured_pruning.ipynb.
    """
    check_models(models)
    input_shape = input_shape_arg(input_shape)
    batch_sizes = _counts(batch_sizes, "batch_sizes")
    threads = _counts(threads, "threads", none_ok=True)
    positive_int(repeats, "repeats")
    check_warmup(warmup)
    rows = []
    for n_threads in threads:
        for batch in batch_sizes:
            x = torch.randn(batch, *input_shape)
            timed = time_models(models, x, threads=n_threads, rounds=repeats, per_round=1, warmup=warmup)
            rows.append({"threads": timed.threads, "batch": batch, **timed.medians()})
    return Table(rows, title=f"median forward time (ms) on {devices.where(models.values())}")


def speedups(models: dict[str, nn.Module], input_shape, *, batch_size: int = 64, threads: int | None = 1,
             repeats: int = 10, baseline: str | None = None) -> dict[str, float]:
    """Speedup of every model over `baseline` (default: the first), timed interleaved (`timing.time_models`,
    `repeats` rounds after 2 warm-up rounds) on `threads` threads (1 unless told).

    Timed where the models sit (compare models on one device); channels_last models get NHWC inputs.
    See notebooks/05_neuron_and_filter_pruning.ipynb and notebooks/06_structured_pruning.ipynb.
    """
    check_models(models)
    baseline = check_baseline(models, baseline)
    positive_int(batch_size, "batch_size")
    positive_int(repeats, "repeats")
    x = torch.randn(batch_size, *input_shape_arg(input_shape))
    timed = time_models(models, x, threads=threads, rounds=repeats, per_round=1, warmup=2)
    return speedups_over(timed.medians(), baseline)
