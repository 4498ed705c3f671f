"""The pipeline's stages, one function each: the dense model, a pruned copy, a fine-tuned (or distilled) copy, and
a quantized copy. Each takes the previous stage's model and the recipe, and returns a new model (never changing
the one it was given). Scores are looked up by name in `pipeline.registry`.
Devices: stages train and score on `RunOptions.device` (default `mp.device()`) and stay there; int8 stages are
made from a CPU copy (int8 kernels are CPU kernels). See notebooks/10_capstone.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from minprune import devices
from minprune.data import DataSplits
from minprune.distillation.augment import labels_loss
from minprune.distillation.student import KDConfig, distill_student
from minprune.masked import copy_model, make_permanent
from minprune.models import build
from minprune.pipeline.recipe import PipelineConfig, PruneStep, check_types
from minprune.pipeline.registry import compute_scores
from minprune.quantization import int8
from minprune.quantization.uniform import quantize_weights
from minprune.structured.dependency import trace_groups
from minprune.structured.surgery import prune_channels
from minprune.train import History, TrainConfig, fit, seed_everything
from minprune.unstructured.prune import prune
from minprune.validate import check_flag, model_arg, non_negative_int
from minprune.zoo import pretrained


@dataclass(frozen=True)
class RunOptions:
    """How the stages run: with progress bars or not, and on which device they train and score (None:
    `mp.device()`). See notebooks/10_capstone.ipynb."""

    progress: bool = False
    device: str | torch.device | None = None

    def __post_init__(self):
        check_flag(self.progress, "progress")
        if self.device is not None:
            devices.resolve(None, self.device)


def _checked_run(run) -> RunOptions:
    """`run`, or RunOptions() for None; TypeError for anything else."""
    if run is None:
        return RunOptions()
    if not isinstance(run, RunOptions):
        raise TypeError(f"run must be a RunOptions(progress=, device=), got {type(run).__name__}")
    return run


def _check_splits(splits) -> None:
    if not isinstance(splits, DataSplits):
        raise TypeError(f"splits must be a DataSplits (minprune.data.load(name)), got {type(splits).__name__}")


def base_model(config: PipelineConfig, splits, *, run: RunOptions | None = None) -> nn.Module:
    """The dense starting point on `run.device`: the cached baseline, or a model trained from scratch for
    `base.epochs`. See notebooks/10_capstone.ipynb."""
    check_types(config)
    base, run = config.base, _checked_run(run)
    if base.source == "train":
        _check_splits(splits)
    if base.source == "pretrained":
        model = pretrained(base.arch, base.data, seed=base.seed, progress=run.progress)
        devices.place(model, run.device)
        return model
    seed_everything(base.seed)
    model = build(base.arch, input_shape=splits.input_shape, num_classes=splits.num_classes)
    fit(model, splits.loader("train", 64, seed=base.seed), TrainConfig(epochs=base.epochs), progress=run.progress,
        device=run.device)
    return model


def prune_step(model: nn.Module, config: PipelineConfig, loader, *, device=None) -> nn.Module:
    """A pruned copy of `model` (on the model's device; data-driven scores run on `device`): masked weights
    (`weight`) or a physically smaller model (`structured`). See notebooks/10_capstone.ipynb."""
    model_arg(model)
    check_types(config)
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


def channel_sparsities(model: nn.Module, step: PruneStep) -> float | dict[str, float]:
    """`prune.sparsity`, or with `prune.layers` a value for every prunable layer: its own where named, else
    `prune.sparsity`. Layers that share channels (a residual sum) take the value named for any of them.

    A named layer whose channels cannot be removed stays in the dict, so that `prune_channels` refuses it by name.
    See notebooks/10_capstone.ipynb.
    """
    if not step.layers:
        return step.sparsity
    out = dict(step.layers)
    for group in trace_groups(model).prunable():
        named = [step.layers[name] for name in group.producers if name in step.layers]
        default = named[0] if named else step.sparsity  # two different named values: prune_channels refuses
        out.update({name: step.layers.get(name, default) for name in group.producers})
    return out


def finetune_step(model: nn.Module, teacher: nn.Module, config: PipelineConfig, splits, *, seed: int | None = None,
                  run: RunOptions | None = None) -> tuple[nn.Module, History]:
    """A fine-tuned copy of a pruned model (masks stay applied), taught by `teacher` when `finetune.distill`;
    with `finetune.max_shift`, every training batch is moved by random shifts, and with `finetune.mixup` its images
    are blended in pairs (the teacher labels the same images; without a teacher, the labels are blended too).
    seed: the shuffling, shift and initialisation seed (default `base.seed`). See notebooks/10_capstone.ipynb.
    """
    model_arg(model)
    model_arg(teacher, "teacher")
    check_types(config)
    _check_splits(splits)
    if seed is not None:
        non_negative_int(seed, "seed")
    step, student, run = config.finetune, copy_model(model), _checked_run(run)
    seed = config.base.seed if seed is None else seed
    seed_everything(seed)
    loader, val = splits.loader("train", 64, seed=seed), splits.loader("val", 500)
    train = TrainConfig(epochs=step.epochs, lr=step.lr)
    if step.distill:
        kd = KDConfig(temperature=step.temperature, alpha=step.alpha, max_shift=step.max_shift, mixup=step.mixup)
        history = distill_student(student, teacher, loader, kd, train, val_loader=val, progress=run.progress,
                                  device=run.device)
    else:
        history = fit(student, loader, train, val_loader=val, loss_fn=labels_loss(step.max_shift, step.mixup),
                      progress=run.progress, device=run.device)
    return student, history


def quantize_step(model: nn.Module, config: PipelineConfig, splits) -> nn.Module:
    """A quantized copy with the masks folded in.

    `int8`: static int8 (weights and activations, calibrated on 256 training images; one weight scale per
    output channel, or per layer with `per_channel = false`; `linear_weights_only = true` keeps the Linear
    layers' arithmetic in float, with int8 weights); `dynamic-int8`: int8
    Linear weights, activations quantized per batch; `fake`: weights on a `bits`-bit grid, stored as float.
    The int8 models are made from a CPU copy (their kernels are CPU kernels); a fake-quantized one stays put.
    See notebooks/10_capstone.ipynb.
    """
    model_arg(model)
    check_types(config)
    if config.quantize.method == "int8":
        _check_splits(splits)
    plain = make_permanent(copy_model(model))
    step = config.quantize
    if step.method == "fake":
        return quantize_weights(plain, step.bits)
    plain = plain.cpu()
    if step.method == "dynamic-int8":
        return int8.dynamic_int8(plain)
    x, _ = splits.sample(256, "train")
    return int8.static_int8(plain, list(x.split(64)), per_channel=step.per_channel,
                            linear_weights_only=step.linear_weights_only)
