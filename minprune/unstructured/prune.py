"""Prune by scores: `prune(model, scores, sparsity)` makes masks (`masks.py`) and applies them (`minprune.masked`).

See notebooks/03_weight_pruning.ipynb.
"""

from __future__ import annotations

from torch import nn

from minprune.masked import apply_masks, check_against_model, get_masks
from minprune.unstructured.masks import check_scores, make_masks


def prune(model: nn.Module, scores: dict, sparsity: float | None = None, **options) -> dict:
    """`make_masks` then `apply_masks` in one call; returns the masks applied. Modifies `model` in place.

    Already pruned entries count as pruned: their scores are set to -inf first, so `sparsity` is the total
    sparsity of those tensors afterwards (prune 0.5 then 0.8 leaves exactly 80% pruned, old zeros included).
    options: threshold=, scope=, overrides=, exclude= as in `make_masks`.
    See notebooks/03_weight_pruning.ipynb.
    """
    check_scores(scores)
    check_against_model(model, scores, "scores")
    old = get_masks(model)
    ranked = {}
    for name, s in scores.items():
        s = s.detach()
        ranked[name] = s.masked_fill(~old[name].to(s.device), float("-inf")) if name in old else s
    masks = make_masks(ranked, sparsity, **options)
    apply_masks(model, masks)
    return masks
