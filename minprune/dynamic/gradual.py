"""Gradual pruning during training (Zhu & Gupta 2017): a callback that follows a sparsity schedule.

Every time the schedule's target rises (every `interval` steps between start and end) the pruner scores the
weights and masks the lowest ones with `minprune.unstructured.prune` (already pruned weights stay pruned), so training
continues with the masks applied. With `structured=True` it scores whole channels/neurons instead, masks them
during training, and `finish()` returns a physically smaller model (`surgery.remove_channels`).
Each update is recorded per layer: step, target, sparsity and how many weights were newly pruned.
The pruner follows the model to whatever device `fit` moved it to (masks are made where the weights are).
See notebooks/07_dynamic_pruning.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from minprune.masked import apply_masks, copy_model, get_masks, make_permanent
from minprune.structured.dependency import trace_groups
from minprune.structured.selection import score_groups, select_channels
from minprune.structured.surgery import channel_masks, remove_channels
from minprune.structured.unit_scores import norm_scores
from minprune.unstructured.masks import masks_sparsity, prunable_names
from minprune.unstructured.prune import prune
from minprune.unstructured.scores import magnitude_scores
from minprune.validate import callable_arg, finite_number, float_model, model_arg, non_negative_int


def check_target(value, step: int) -> float:
    """The schedule's value at `step` as a float when it is a finite sparsity in [0, 1); else ValueError naming
    the step (a schedule that returns NaN, 1.0 or a string is refused when it is used, before anything is pruned)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"schedule({step}) returned {value!r}: the target sparsity at step {step} must be a "
                         f"finite number in [0, 1)")
    return float(value)


class GradualPruner:
    """A training callback: `mp.fit(model, loader, callbacks=[GradualPruner(model, schedule)])`.

    schedule: step -> target sparsity (e.g. `make_schedule('cubic', 0.9, end=500, interval=25)`).
    score_fn: model -> {name: scores}; weight scores (default magnitude), or unit scores with structured=True
    (default L1 norm of each channel). scope: 'local' or 'global' ranking.
    The model must be float32 or float64 (it is trained): a float16 or bfloat16 model is refused when the pruner
    is built, not later by `fit`. See notebooks/07_dynamic_pruning.ipynb.
    """

    def __init__(self, model: nn.Module, schedule: Callable[[int], float], *, score_fn: Callable | None = None,
                 scope: str = "local", structured: bool = False, keep_masks: bool = False):
        float_model(model, "GradualPruner")  # it prunes while `fit` trains: float16/bfloat16 are refused now
        if not prunable_names(model):
            raise ValueError(f"{type(model).__name__} has no prunable layers (Linear or Conv weights) to prune")
        if not callable(schedule):
            raise TypeError(f"schedule must be a function of the step, got {type(schedule).__name__}")
        if not isinstance(scope, str) or scope not in ("local", "global"):
            raise ValueError(f"scope must be 'local' or 'global', got {scope!r}")
        callable_arg(score_fn, "score_fn", none_ok=True)
        for name, flag in (("structured", structured), ("keep_masks", keep_masks)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        check_target(schedule(0), 0)  # a schedule that is wrong from the start fails now, not during training
        self.schedule, self.scope, self.structured = schedule, scope, structured
        self.score_fn = score_fn or (norm_scores if structured else magnitude_scores)
        self.graph = trace_groups(model) if structured else None
        self.keep = None  # structured: {group id: kept channel indices}
        self.target = 0.0
        self.history: list[dict] = []  # one row per layer and update
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.keep_masks = keep_masks

    def on_step_end(self, model: nn.Module, step: int) -> None:
        target = check_target(self.schedule(step), step)
        if target > self.target:
            self.update(model, target, step)

    def update(self, model: nn.Module, target: float, step: int = 0) -> None:
        """Prune `model` in place to `target` sparsity now, and record the change."""
        model_arg(model)
        finite_number(target, "target", low=0, high=1, high_open=True)
        non_negative_int(step, "step")
        before = get_masks(model)
        if self.structured:
            self._update_channels(model, target)
        else:
            prune(model, self.score_fn(model), target, scope=self.scope)
        self.target = target
        self._record(model, before, target, step)

    def _update_channels(self, model: nn.Module, target: float) -> None:
        group_scores = score_groups(self.graph, self.score_fn(model))
        if self.keep is not None:  # channels removed earlier stay removed: scored below every other channel
            lowest = min(float(scores.min()) for scores in group_scores.values())
            floor = lowest - (1.0 + abs(lowest))  # finite: select_channels refuses NaN and inf scores
            for gid, scores in group_scores.items():
                gone = torch.ones(len(scores), dtype=torch.bool)
                gone[self.keep[gid]] = False
                group_scores[gid] = scores.masked_fill(gone, floor)
        self.keep = select_channels(self.graph, group_scores, target, scope=self.scope)
        apply_masks(model, channel_masks(model, self.keep, self.graph))

    def _record(self, model: nn.Module, before: dict, target: float, step: int) -> None:
        masks = get_masks(model)
        for name, mask in masks.items():
            old = before.get(name, torch.ones_like(mask))
            self.history.append({"step": step, "layer": name, "target": target, "pruned": int((old & ~mask).sum()),
                                 "regrown": int((~old & mask).sum()), "sparsity": masks_sparsity({name: mask})})
        if self.keep_masks:
            self.snapshots[step] = {n: m.clone().cpu() for n, m in masks.items()}

    def finish(self, model: nn.Module) -> nn.Module:
        """The final model: masks folded in (in place) or, if structured, a compacted copy without the channels."""
        model_arg(model)
        if not self.structured:
            return make_permanent(model)
        if self.keep is None:
            raise RuntimeError("no channels were pruned yet: the schedule never raised the sparsity above 0")
        return remove_channels(make_permanent(copy_model(model)), self.keep, self.graph)
