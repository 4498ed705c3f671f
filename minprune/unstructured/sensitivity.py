"""Sensitivity analysis: prune one layer at a time over a grid of sparsities and watch the accuracy.

Layers whose accuracy holds up at high sparsity can be pruned harder; the scan turns into per-layer
sparsities (`layer_sparsities`) that plug straight into `make_masks(..., overrides=...)`.
Every point is measured on a private copy, so the model is the same before and after the scan. The scan
evaluates accuracy, so float16/bfloat16 models are refused (call model.float() first).
See notebooks/03_weight_pruning.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from minprune.masked import copy_model
from minprune.table import Table
from minprune.train import evaluate
from minprune.unstructured.masks import check_scores, check_sparsities, name_list, number_arg, prunable_names
from minprune.unstructured.prune import prune
from minprune.unstructured.scores import magnitude_scores, peek_scoring_batch
from minprune.validate import float_model

DEFAULT_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass
class Sensitivity:
    """Accuracy after pruning one tensor to each sparsity of the grid; `acc[name][i]` goes with `sparsities[i]`."""

    dense_acc: float
    sparsities: list[float]
    acc: dict[str, list[float]] = field(default_factory=dict)

    def to_table(self) -> Table:
        rows = []
        for name, accs in self.acc.items():
            rows.append({"tensor": name, **{f"{s:g}": a for s, a in zip(self.sparsities, accs)}})
        return Table(rows)


def sensitivity_scan(model: nn.Module, loader, sparsities=DEFAULT_GRID, *, names=None,
                     score_fn: Callable = magnitude_scores) -> Sensitivity:
    """Prune each tensor in `names` alone to every sparsity of the grid (scores from score_fn(model));
    evaluate on `loader`. The model is not changed. See notebooks/03_weight_pruning.ipynb.
    """
    float_model(model, "sensitivity_scan")
    if not callable(score_fn):
        raise TypeError(f"score_fn must be a function model -> scores (e.g. mp.magnitude_scores), got {score_fn!r}")
    sparsities = check_sparsities(sparsities)
    names = prunable_names(model) if names is None else name_list(names, "names")
    peek_scoring_batch(model, loader, "loader")  # a loader it can read again for every point
    scores = score_fn(model)
    check_scores(scores)
    unknown = [n for n in names if n not in scores]
    if unknown:
        raise ValueError(f"unknown parameter name(s) {unknown}; score_fn scored {list(scores)}")
    result = Sensitivity(dense_acc=evaluate(model, loader)["acc"], sparsities=sparsities)
    for name in names:
        result.acc[name] = []
        for s in sparsities:
            trial = copy_model(model)
            prune(trial, {name: scores[name]}, s)
            result.acc[name].append(evaluate(trial, loader)["acc"])
    return result


def layer_sparsities(result: Sensitivity, max_drop: float = 1.0) -> dict[str, float]:
    """Per tensor, the largest grid sparsity whose accuracy stays within `max_drop` points of dense (else 0).

    See notebooks/03_weight_pruning.ipynb.
    """
    if not isinstance(result, Sensitivity):
        raise TypeError(f"result must be the Sensitivity that sensitivity_scan returns, got {type(result).__name__}")
    number_arg(max_drop, "max_drop", ">= 0 accuracy points (a finite number)", low=0)
    chosen = {}
    for name, accs in result.acc.items():
        ok = [s for s, a in zip(result.sparsities, accs) if a >= result.dense_acc - max_drop]
        chosen[name] = max(ok, default=0.0)
    return chosen
