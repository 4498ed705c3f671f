"""A scored challenge: per-layer sparsities that meet a weight budget and an accuracy budget at once.

The learner picks one sparsity per layer (from a sensitivity scan, by hand); `score_sparsities` prunes a copy of
the model by magnitude with them, measures the fraction of the weights kept and the accuracy drop, and gives
points. Each target gives full credit when it is met and none at twice its value (linear in between); the points
are `max_points` times the product of both credits, so a model that is not pruned, or one pruned until it breaks,
gets nothing. Deterministic: magnitude masks, and accuracy on the loader given (the notebook's fixed validation
split). See notebooks/03_weight_pruning.ipynb.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from torch import nn

from minprune.masked import apply_masks, copy_model, get_masks
from minprune.train import accuracy
from minprune.unstructured.masks import make_masks, prunable_names
from minprune.unstructured.scores import magnitude_scores, peek_scoring_batch
from minprune.validate import finite_number, float_model

TOLERANCE = 1e-9  # a kept fraction equal to the target (15 of 100) meets it despite rounding


@dataclass(frozen=True)
class ChallengeResult:
    """What `score_sparsities` measured: `kept` is the fraction of the prunable weights left (0-1), the
    accuracies are in percent, `drop` = dense_acc - acc in points, `points` out of `max_points`."""

    sparsities: dict
    kept: float
    dense_acc: float
    acc: float
    max_kept: float
    max_drop: float
    points: float
    max_points: float

    @property
    def drop(self) -> float:
        return self.dense_acc - self.acc

    @property
    def passed(self) -> bool:
        """Both targets met (full points)."""
        return self.points == self.max_points

    def verdict(self) -> str:
        """One line: ✓ or ✗, the kept fraction and the accuracy drop against their targets, the points."""
        mark = "✓" if self.passed else "✗"
        change = f"a drop of {self.drop:.1f}" if self.drop >= 0 else f"a gain of {-self.drop:.1f}"
        return (f"{mark} {100 * self.kept:.1f}% of the weights kept (target ≤ {100 * self.max_kept:.1f}%), "
                f"accuracy {self.acc:.1f}% (dense {self.dense_acc:.1f}%): {change} points "
                f"(target: a drop ≤ {self.max_drop:.1f}): {self.points:g}/{self.max_points:g} points")


def credit(value: float, target: float) -> float:
    """1 when `value` <= `target`, 0 from twice the target on, linear in between (0 or 1 for a target of 0)."""
    if value <= target + TOLERANCE:
        return 1.0
    if target <= 0:
        return 0.0
    return max(0.0, 1.0 - (value - target) / target)


def check_layer_sparsities(model: nn.Module, sparsities) -> dict[str, float]:
    """`sparsities` as {weight name: float in [0, 1)} for the model's prunable weights; a clear error otherwise.

    Names are those of `mp.prunable_names(model)` ('layers.1.weight'); a layer left out is not pruned (0).
    """
    if not isinstance(sparsities, dict):
        raise TypeError(f"score_sparsities: sparsities must be a dict {{weight name: sparsity}}, "
                        f"got {type(sparsities).__name__}")
    names = prunable_names(model)
    for name, value in sparsities.items():
        if name not in names:
            also = f" (did you mean {name}.weight?)" if f"{name}.weight" in names else ""
            raise ValueError(f"score_sparsities: unknown layer {name!r}{also}; the prunable weights are {names}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 <= value < 1):
            raise ValueError(f"score_sparsities: sparsities[{name!r}] must be a number in [0, 1) (the fraction of "
                             f"the weights removed; 1 would cut the network), got {value!r}")
        if math.isnan(value):
            raise ValueError(f"score_sparsities: sparsities[{name!r}] is NaN")
    return {name: float(sparsities.get(name, 0.0)) for name in names}


def score_sparsities(model: nn.Module, sparsities: dict, loader, *, max_kept: float, max_drop: float,
                     max_points: float = 10.0, quiet: bool = False) -> ChallengeResult:
    """Prune a copy of `model` by magnitude with per-layer `sparsities` and score it against two targets.

    sparsities: {weight name ('layers.1.weight'): fraction removed in [0, 1)}; a prunable layer left out is not
        pruned. max_kept: the largest fraction of the prunable weights (Linear and Conv weights; biases are not
        counted) that may stay, in (0, 1]. max_drop: the most accuracy points (percent) that may be lost against
        the dense model on `loader`. Prints the verdict line (quiet=True does not); `model` is not changed.
    See notebooks/03_weight_pruning.ipynb.
    """
    float_model(model, "score_sparsities")
    if get_masks(model):
        raise ValueError(f"score_sparsities prunes a dense model; this one is already masked "
                         f"({', '.join(get_masks(model))}): pass the model before pruning")
    max_kept = finite_number(max_kept, "score_sparsities: max_kept", low=0, high=1, low_open=True)
    max_drop = finite_number(max_drop, "score_sparsities: max_drop", low=0)
    max_points = finite_number(max_points, "score_sparsities: max_points", low=0, low_open=True)
    chosen = check_layer_sparsities(model, sparsities)
    peek_scoring_batch(model, loader, "loader")
    masks = make_masks(magnitude_scores(model), 0.0, overrides=chosen)
    pruned = apply_masks(copy_model(model), masks)
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    dense_acc, acc = accuracy(model, loader), accuracy(pruned, loader)
    points = round(max_points * credit(kept, max_kept) * credit(dense_acc - acc, max_drop), 2)
    result = ChallengeResult(chosen, kept, dense_acc, acc, max_kept, max_drop, points, max_points)
    if not quiet:
        print(result.verdict())
    return result
