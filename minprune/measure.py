"""Measure what pruning claims to improve: parameters, nonzeros, MACs, latency and size on disk.

MACs come from `torch.utils.flop_counter` (1 MAC = 2 FLOPs); latency is the median of repeated
timed runs after a warm-up, from the kit's one timer (`timing.time_models`), at a given batch size and on one
thread unless told. Measuring never moves a model: it runs where it sits, a GPU is waited for before the clock
is read, and every latency says which `device` and how many `threads` it timed.
See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import io
import statistics
import zipfile
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from minprune.batches import check_loader
from minprune.devices import model_device
from minprune.energy import estimate_energy
from minprune.masked import copy_model, effective_parameters
from minprune.table import Table
from minprune.timing import check_baseline, check_models, check_warmup, time_models
from minprune.train import check_model, eval_mode, evaluate
from minprune.validate import check_flag, float_dtype, input_shape_arg, model_arg, positive_int


def stored_tensors(model: nn.Module) -> list[list[torch.Tensor]]:
    """One entry per stored parameter tensor: the effective tensors (`effective_parameters`) of every use of it.

    A tensor shared by several layers (weight tying, `model.c.weight = model.a.weight`) is one entry, also when
    some of those layers mask it with torch.nn.utils.prune (their `weight_orig` is the shared tensor), so it is
    counted once, like `model.parameters()` does. See notebooks/01_train_baseline.ipynb.
    """
    effective = effective_parameters(model)
    uses: dict[int, list[torch.Tensor]] = {}
    for name, stored in model.named_parameters(remove_duplicate=False):
        name = name.removesuffix("_orig")
        if name in effective:  # a module reachable under two names is listed under its first name only
            uses.setdefault(id(stored), []).append(effective[name])
    return list(uses.values())


def count_params(model: nn.Module) -> int:
    """Number of parameters (pruned weights still count: they are stored; a shared tensor counts once)."""
    return sum(tensors[0].numel() for tensors in stored_tensors(model))


def count_nonzeros(model: nn.Module) -> int:
    """Number of parameters that are not exactly zero in at least one use (a shared tensor counts once).

    Any dtype (float16 and bfloat16 too); a model on the meta device holds no values and is refused.
    """
    model_arg(model)
    return sum(int(torch.count_nonzero(_used_entries(tensors))) for tensors in stored_tensors(model))


def _used_entries(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Bool tensor: True where some use of a stored tensor sees a nonzero value (pruned in every use: False)."""
    used = tensors[0].detach() != 0
    for t in tensors[1:]:
        used = used | (t.detach() != 0)
    return used


def model_sparsity(model: nn.Module) -> float:
    """Fraction of all parameters that are exactly zero (`layer_sparsity`: per tensor); any dtype, not meta."""
    model_arg(model)
    total = count_params(model)
    return 1.0 - count_nonzeros(model) / total if total else 0.0


def layer_sparsity(model: nn.Module, *, weights_only: bool = True) -> dict[str, float]:
    """Fraction of zeros per parameter tensor (only `*.weight` tensors unless weights_only=False); any dtype."""
    model_arg(model)
    check_flag(weights_only, "weights_only")
    out = {}
    for name, p in effective_parameters(model).items():
        if weights_only and not name.endswith("weight"):
            continue
        out[name] = 1.0 - int(torch.count_nonzero(p)) / p.numel()
    return out


def example_batch(model: nn.Module, input_shape, batch_size: int) -> torch.Tensor:
    """A random input batch of `batch_size` for timing, shaped (batch, *input_shape or model.input_shape), on the
    model's device and in its float dtype (a float16 model gets a float16 batch); a model that makes its own
    examples (`model.example_input(batch_size, input_shape)`, e.g. CharGPT's token ids) is asked for them."""
    check_model(model)
    if callable(getattr(model, "example_input", None)):
        return model.example_input(batch_size, input_shape)
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("pass input_shape=(C, H, W); the model does not record one")
    shape = input_shape_arg(shape)
    return torch.randn(batch_size, *shape, device=model_device(model), dtype=float_dtype(model))


@torch.no_grad()
def count_macs(model: nn.Module, input_shape=None, *, by_module: bool = False):
    """Multiply-accumulates for one input example (dense count: zeros are multiplied too).

    by_module=True returns {"total": n, "features.0": n, ...} for every module that does arithmetic.
    Any dtype, and meta-device models too (only shapes are counted).
    """
    check_flag(by_module, "by_module")
    x = example_batch(model, input_shape, 1)
    with eval_mode(model), FlopCounterMode(display=False) as counter:
        model(x)
    if not by_module:
        return counter.get_total_flops() // 2
    prefix = type(model).__name__ + "."  # the counter names modules 'ClassName.path.to.module'
    counts = {name.removeprefix(prefix): sum(ops.values()) // 2 for name, ops in counter.get_flop_counts().items()}
    out = {"total": counter.get_total_flops() // 2}
    for name, _ in model.named_modules():  # in the model's own order (the counter's order is not stable)
        if name and name in counts:
            out[name] = counts[name]
    return out


def latency(model: nn.Module, input_shape=None, *, batch_size: int = 64, threads: int | None = 1,
            warmup: int = 5, repeats: int = 30) -> dict:
    """Forward-pass wall time in milliseconds: median, 10th and 90th percentile over `repeats` timed calls after
    `warmup` untimed ones (`timing.time_models` with one model), in inference mode.

    On `threads` threads (1 unless told; None: torch's current count) and on the model's own device (a GPU is
    synchronized before each reading); the result's `threads` and `device` name both.
    Float16 and bfloat16 models are timed on inputs of their dtype. See notebooks/01_train_baseline.ipynb.
    """
    model_arg(model)
    positive_int(batch_size, "batch_size")
    positive_int(threads, "threads", none_ok=True)
    positive_int(repeats, "repeats")
    check_warmup(warmup)
    x = example_batch(model, input_shape, batch_size)
    timed = time_models({"model": model}, x, threads=threads, rounds=repeats, per_round=1, warmup=warmup)
    times = sorted(timed.samples["model"])
    return {"median_ms": statistics.median(times), "p10_ms": times[len(times) // 10],
            "p90_ms": times[(9 * len(times)) // 10], "batch_size": batch_size, "threads": timed.threads,
            "device": timed.device}


def size_on_disk(model: nn.Module) -> dict:
    """Bytes of the serialized state_dict (`torch.save`) and of the same bytes zip-compressed (as a CPU file)."""
    model_arg(model)
    if model_device(model).type != "cpu":  # the file you would ship: CPU tensors
        model = copy_model(model).cpu()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    raw = buffer.getvalue()
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("model.pt", raw)
    return {"bytes": len(raw), "zip_bytes": len(zipped.getvalue())}


@dataclass(frozen=True)
class LatencyOptions:
    """How `summary` and `compare` time a model (the options of `latency`): `timing=LatencyOptions(threads=2)`.

    See notebooks/01_train_baseline.ipynb.
    """

    batch_size: int = 64
    threads: int | None = 1  # the kit's rule: one thread unless told; None: torch's current count
    warmup: int = 5
    repeats: int = 30

    def __post_init__(self):
        positive_int(self.batch_size, "batch_size")
        positive_int(self.threads, "threads", none_ok=True)
        check_warmup(self.warmup)
        positive_int(self.repeats, "repeats")


def _latency_options(timing) -> LatencyOptions | None:
    """`timing` of `summary`: True -> the default options, False or None -> no timing, or LatencyOptions."""
    if isinstance(timing, LatencyOptions):
        return timing
    if timing is True:
        return LatencyOptions()
    if timing is False or timing is None:
        return None
    raise TypeError(f"timing must be True, False or a LatencyOptions, got {type(timing).__name__}")


def summary(model: nn.Module, loader=None, *, name: str = "model", input_shape=None,
            timing: bool | LatencyOptions = True, energy: bool = False) -> dict:
    """One row of measurements: accuracy (if a loader is given), parameters, nonzeros, MACs, latency, bytes.

    All on the model's own device (it is not moved); with timing, `device` names it. timing: True (batch 64,
    one thread), False, or a LatencyOptions (`timing=LatencyOptions(batch_size=1, threads=2)`).
    energy=True adds "energy uJ": `estimate_energy` (fp32, weights from DRAM; see notebooks/11_deploy.ipynb).
    See notebooks/01_train_baseline.ipynb.
    """
    model_arg(model)
    options = _latency_options(timing)
    if not isinstance(name, str):
        raise TypeError(f"name must be a string (the row's label), got {type(name).__name__} {name!r:.60}")
    check_flag(energy, "energy")
    row = {"model": name}
    if loader is not None:
        check_loader(loader)
        row["acc"] = evaluate(model, loader, device=model_device(model))["acc"]
    row["params"] = count_params(model)
    row["nonzeros"] = count_nonzeros(model)
    row["MACs"] = count_macs(model, input_shape)
    if options is not None:
        timed = latency(model, input_shape, **asdict(options))
        row[f"ms@b{options.batch_size}"], row["device"] = timed["median_ms"], timed["device"]
    size = size_on_disk(model)
    row["KB"] = size["bytes"] / 1024
    row["zip KB"] = size["zip_bytes"] / 1024
    if energy:
        row["energy uJ"] = estimate_energy(model, input_shape)["total_uj"]
    return row


def compare(models: dict[str, nn.Module], loader=None, *, baseline: str | None = None, **kwargs) -> Table:
    """A Table with one `summary` row per model, plus ratios against `baseline` (default: the first).

    kwargs go to `summary` (`timing=False`, `timing=LatencyOptions(threads=2)`, `energy=True`, `input_shape=`).
    See notebooks/01_train_baseline.ipynb.
    """
    check_models(models)
    for name, model in models.items():
        model_arg(model, f"models[{name!r}]")
    baseline = check_baseline(models, baseline)
    rows = [summary(m, loader, name=n, **kwargs) for n, m in models.items()]
    base = rows[[*models].index(baseline)]
    for row in rows:
        row["x smaller"] = base["zip KB"] / row["zip KB"]
        row["x fewer MACs"] = base["MACs"] / max(row["MACs"], 1)
    return Table(rows)
