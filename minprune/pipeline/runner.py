"""The whole compression pipeline in one call: dense -> prune -> fine-tune (or distill) -> quantize.

Each stage is a separate model, measured the same way (accuracy, parameters, nonzeros, MACs, batch latency,
bytes) and compared with the dense model. Latencies are measured in interleaved rounds so that a noisy,
shared CPU slows every stage alike. Deep Compression (Han et al. 2016) is the classic prune + quantize chain.
Devices: the stages are trained, scored and fine-tuned on `device` (default `mp.device()`) and stay there; int8
stages are made from a CPU copy (int8 kernels are CPU kernels). The stage table measures every stage on the
CPU, the deployment target (a copy of any stage that sits elsewhere), and says so in its `device` column.
See notebooks/10_capstone.ipynb.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
from torch import nn
from tqdm.auto import tqdm

from minprune import data as data_lib
from minprune import devices
from minprune.course.plots import style
from minprune.distillation.distill import distill_student, labels_loss
from minprune.masked import copy_model, is_pruned, make_permanent
from minprune.measure import count_macs, count_nonzeros, count_params, size_on_disk
from minprune.models import build
from minprune.pipeline.recipe import PipelineConfig, validate
from minprune.pipeline.registry import compute_scores
from minprune.quantization import int8
from minprune.quantization.uniform import quantize_weights
from minprune.structured.dependency import trace_groups
from minprune.structured.surgery import prune_channels
from minprune.table import Table
from minprune.timing import interleaved_latency
from minprune.train import History, evaluate, fit, seed_everything
from minprune.unstructured.prune import prune
from minprune.zoo import pretrained


@dataclass
class PipelineResult:
    """What `run_pipeline` gives back: the stage models (in order), their table, and the fine-tuning history."""

    config: PipelineConfig
    models: dict[str, nn.Module]
    table: Table
    history: History | None = None
    seconds: dict = field(default_factory=dict)

    def _repr_html_(self) -> str:
        return self.table._repr_html_()

    def __str__(self) -> str:
        return str(self.table)


def base_model(config: PipelineConfig, splits, *, progress: bool = False, device=None) -> nn.Module:
    """The dense starting point on `device`: the cached baseline, or a model trained from scratch for `base.epochs`."""
    base = config.base
    if base.source == "pretrained":
        model = pretrained(base.arch, base.data, seed=base.seed, progress=progress)
        devices.place(model, device)
        return model
    seed_everything(base.seed)
    model = build(base.arch, input_shape=splits.input_shape, num_classes=splits.num_classes)
    fit(model, splits.loader("train", 64, seed=base.seed), epochs=base.epochs, progress=progress, device=device)
    return model


def prune_step(model: nn.Module, config: PipelineConfig, loader, *, device=None) -> nn.Module:
    """A pruned copy of `model` (on the model's device; data-driven scores run on `device`): masked weights
    (`weight`) or a physically smaller model (`structured`)."""
    step = config.prune
    if step.method == "weight":
        pruned = copy_model(model)
        overrides = {f"{name}.weight": value for name, value in step.layers.items()}
        weight_scores = compute_scores("weight", step.score, pruned, loader, device=device)
        prune(pruned, weight_scores, step.sparsity, scope=step.scope, overrides=overrides)
        return pruned
    sparsity = channel_sparsities(model, step)
    unit_scores = compute_scores("unit", step.score, model, loader, device=device)
    return prune_channels(model, sparsity, scores=unit_scores, scope=step.scope)


def channel_sparsities(model: nn.Module, step) -> float | dict[str, float]:
    """`prune.sparsity`, or with `prune.layers` a value for every prunable layer: its own where named, else
    `prune.sparsity`. Layers that share channels (a residual sum) take the value named for any of them."""
    if not step.layers:
        return step.sparsity
    out = {}
    for group in trace_groups(model).prunable():
        named = [step.layers[name] for name in group.producers if name in step.layers]
        default = named[0] if named else step.sparsity  # two different named values: prune_channels refuses
        out.update({name: step.layers.get(name, default) for name in group.producers})
    return out


def finetune_step(model: nn.Module, teacher: nn.Module, config: PipelineConfig, splits, *,
                  progress: bool = False, seed: int | None = None, device=None) -> tuple[nn.Module, History]:
    """A fine-tuned copy of a pruned model (masks stay applied), taught by `teacher` when `finetune.distill`;
    with `finetune.max_shift`, every training batch is moved by random shifts, and with `finetune.mixup` its images
    are blended in pairs (the teacher labels the same images; without a teacher, the labels are blended too).
    seed: the shuffling, shift and initialisation seed (default `base.seed`). device: as in `fit`."""
    step, student = config.finetune, copy_model(model)
    seed = config.base.seed if seed is None else seed
    seed_everything(seed)
    loader, val = splits.loader("train", 64, seed=seed), splits.loader("val", 500)
    if step.distill:
        history = distill_student(student, teacher, loader, epochs=step.epochs, lr=step.lr,
                                  temperature=step.temperature, alpha=step.alpha, max_shift=step.max_shift,
                                  mixup=step.mixup, val_loader=val, progress=progress, device=device)
    else:
        history = fit(student, loader, epochs=step.epochs, lr=step.lr, val_loader=val, progress=progress,
                      loss_fn=labels_loss(step.max_shift, step.mixup), device=device)
    return student, history


def quantize_step(model: nn.Module, config: PipelineConfig, splits) -> nn.Module:
    """A quantized copy with the masks folded in.

    `int8`: static int8 (weights and activations, calibrated on 256 training images; one weight scale per
    output channel, or per layer with `per_channel = false`; `linear_weights_only = true` keeps the Linear
    layers' arithmetic in float, with int8 weights); `dynamic-int8`: int8
    Linear weights, activations quantized per batch; `fake`: weights on a `bits`-bit grid, stored as float.
    The int8 models are made from a CPU copy (their kernels are CPU kernels); a fake-quantized one stays put.
    """
    plain = make_permanent(copy_model(model))
    method = config.quantize.method
    if method == "fake":
        return quantize_weights(plain, config.quantize.bits)
    plain = plain.cpu()
    if method == "dynamic-int8":
        return int8.dynamic_int8(plain)
    x, _ = splits.sample(256, "train")
    step = config.quantize
    return int8.static_int8(plain, list(x.split(64)), per_channel=step.per_channel,
                            linear_weights_only=step.linear_weights_only)


def run_stages(config: PipelineConfig, splits=None, *, progress: bool = False, device=None):
    """Run every stage of `config` on `device` (default `mp.device()`); returns ({stage name: model}, fine-tuning
    History or None, seconds per stage). See notebooks/10_capstone.ipynb.
    """
    validate(config)
    device = devices.resolve(None, device)
    splits = splits or data_lib.load(config.base.data, seed=config.base.seed)
    stages, history, seconds = {}, None, {}
    steps = [("dense", lambda m: base_model(config, splits, progress=progress, device=device))]
    if config.prune.method != "none":
        loader = splits.loader("train", 64, seed=config.base.seed)
        steps.append((f"pruned ({config.prune.method})", lambda m: prune_step(m, config, loader, device=device)))
    if config.finetune.epochs > 0 and config.prune.method != "none":
        label = "distilled" if config.finetune.distill else "fine-tuned"
        steps.append((label, lambda m: finetune_step(m, stages["dense"], config, splits, progress=progress,
                                                     device=device)))
    if config.quantize.method != "none":
        method = config.quantize.method
        label = f"fake-int{config.quantize.bits}" if method == "fake" else method
        steps.append((label, lambda m: quantize_step(m, config, splits)))
    model = None
    bar = tqdm(steps, desc="pipeline", disable=not progress, leave=False)
    for name, step in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        model = step(model)
        if isinstance(model, tuple):
            model, history = model
        stages[name] = model
        seconds[name] = time.perf_counter() - start
    return stages, history, seconds


def deployable(model: nn.Module) -> nn.Module:
    """What you would ship, on the CPU: `model` itself, or a copy with the masks folded in (a masked model) or
    moved to the CPU (a model on another device)."""
    if is_pruned(model):
        return make_permanent(copy_model(model)).cpu()  # already a copy: moved in place
    return model if devices.model_device(model).type == "cpu" else copy_model(model).cpu()


def _counts(model: nn.Module, input_shape, previous: dict | None) -> dict:
    """Parameters, nonzeros and MACs. An int8 model has the same weights as the float model it came from,
    packed where torch's counters cannot see them, so its counts carry over from the previous stage."""
    if isinstance(model, int8.Int8Model) and previous is not None:
        return {k: previous[k] for k in ("params", "nonzeros", "MACs")}
    return {"params": count_params(model), "nonzeros": count_nonzeros(model), "MACs": count_macs(model, input_shape)}


def measure_stages(models: dict[str, nn.Module], loader, *, input_shape=None, batch_size: int = 64,
                   threads: int = 1, repeats: int = 20, timing: bool = True) -> Table:
    """One row per stage: test accuracy, counts, latency, bytes, and ratios against the first (dense) stage.

    Latency: `timing.interleaved_latency`, `repeats` rounds in which every stage runs one warm-up batch and 3
    timed batches in turn, so a noisy CPU slows all stages alike. Everything is measured on the CPU (`deployable`
    copies); the `device` column says so. See notebooks/10_capstone.ipynb.
    """
    models = {name: deployable(model) for name, model in models.items()}
    input_shape = input_shape or next(iter(models.values())).input_shape
    rows, previous = [], None
    for name, model in models.items():
        row = {"stage": name, "acc": evaluate(model, loader, device="cpu")["acc"],
               **_counts(model, input_shape, previous)}
        size = size_on_disk(model)
        row["KB"], row["zip KB"] = size["bytes"] / 1024, size["zip_bytes"] / 1024
        rows.append(row)
        previous = row
    if timing:
        ms = interleaved_latency(models, input_shape, batch_size=batch_size, threads=threads, rounds=repeats)
        for row in rows:
            row[f"ms@b{batch_size}"], row["device"] = ms[row["stage"]], "cpu"
    return Table([{**row, **ratios(rows[0], row, f"ms@b{batch_size}" if timing else None)} for row in rows])


def ratios(base: dict, row: dict, latency_key: str | None = "ms@b64") -> dict:
    """How a stage compares with the `base` (dense) stage: accuracy `drop` in points, `x smaller` (bytes),
    `x smaller zip` (zip-compressed bytes) and, with a `latency_key`, `x faster`. Bigger ratios are better.

    See notebooks/10_capstone.ipynb.
    """
    out = {"drop": base["acc"] - row["acc"], "x smaller": base["KB"] / row["KB"],
           "x smaller zip": base["zip KB"] / row["zip KB"]}
    if latency_key is not None:
        out["x faster"] = base[latency_key] / row[latency_key]
    return out


def run_pipeline(config: PipelineConfig, splits=None, *, progress: bool = False, timing: bool = True,
                 device=None) -> PipelineResult:
    """Train or load, prune, fine-tune (with or without distillation), quantize, and measure every stage.

    device: where the stages train (default `mp.device()`); the table measures them on the CPU.
    Returns a PipelineResult whose `.table` has one row per stage. See notebooks/10_capstone.ipynb.
    """
    splits = splits or data_lib.load(config.base.data, seed=config.base.seed)
    models, history, seconds = run_stages(config, splits, progress=progress, device=device)
    m = config.measure
    table = measure_stages(models, splits.loader("test", 500), input_shape=splits.input_shape,
                           batch_size=m.batch_size, threads=m.threads, repeats=m.repeats, timing=timing)
    table.title = f"{config.name}: {config.base.arch} on {config.base.data}"
    return PipelineResult(config, models, table, history, seconds)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (size, accuracy) points that no other point beats on both (smaller and more accurate).

    Sorted by size. See notebooks/10_capstone.ipynb.
    """
    for i, point in enumerate(points):
        if not (isinstance(point, (tuple, list)) and len(point) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)):
            raise ValueError(f"points must be (size, accuracy) pairs of numbers; points[{i}] is {point!r}")
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(rows: list[dict], *, size: str = "KB", acc: str = "acc", label: str = "stage", ax=None):
    """Size (log scale) against accuracy for every row, with the Pareto front drawn as a step line."""
    points = [(row[size], row[acc]) for row in rows]
    with style():
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 4))
        ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:gray", zorder=2)
        for row, (x, y) in zip(rows, points):
            ax.annotate(str(row[label]), (x, y), fontsize=8, xytext=(4, 3), textcoords="offset points")
        front = [points[i] for i in pareto_front(points)]
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red", label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel(f"size ({size}, log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(loc="lower right")
        fig.tight_layout()
    return fig
