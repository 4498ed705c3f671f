"""Prune by scores: `prune(model, scores, sparsity)` makes masks (`masks.py`) and applies them (`minprune.masked`).

See notebooks/03_weight_pruning.ipynb.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from minprune.masked import apply_masks, check_against_model, get_masks, refuse_emptied
from minprune.unstructured.masks import check_scores, make_masks


def prune(model: nn.Module, scores: dict, sparsity: float | None = None, **options) -> dict:
    """`make_masks` then `apply_masks` in one call; returns the masks the pruned tensors have afterwards.
    Modifies `model` in place.

    Already pruned entries count as pruned: their scores are set to -inf first, so `sparsity` is the total
    sparsity of those tensors afterwards (prune 0.5 then 0.8 leaves exactly 80% pruned, old zeros included).
    Masks only accumulate: asking for less than a tensor already has (prune 0.8 then 0.3) keeps it where it is,
    with a UserWarning naming it, and the returned masks are the model's, so `masks_sparsity` of them is the
    true sparsity. A mask that would leave a tensor no entry (a threshold above every score, a global sparsity
    that collapses a small layer, or a sparsity that rounds to every entry of a tiny one) is refused.
    Works in any float dtype (float16 and bfloat16 too); the model keeps its dtype. Everything is checked
    before the model changes. options: threshold=, scope=, overrides=, exclude= as in `make_masks`.
    See notebooks/03_weight_pruning.ipynb.
    """
    check_scores(scores)
    check_against_model(model, scores, "scores")
    old = get_masks(model)
    ranked = {}
    for name, s in scores.items():
        s = s.detach()
        ranked[name] = s.masked_fill(~old[name].to(s.device), float("-inf")) if name in old else s
    masks = make_masks(ranked, sparsity, **options)  # checks every option; pure
    how = (f"sparsity={sparsity!r} (scope={options.get('scope', 'local')!r})" if sparsity is not None
           else f"threshold={options.get('threshold')!r}")
    refuse_emptied(masks, how)  # a global sparsity that collapses a layer, or a threshold above all its scores
    masks = _with_old_masks(masks, old)
    apply_masks(model, masks)
    return masks


def _with_old_masks(masks: dict, old: dict) -> dict:
    """`masks` with the entries `old` already prunes pruned too (what the model will have); warns when that
    differs, i.e. when a tensor already had more pruned entries than asked for."""
    combined, kept_sparser = {}, []
    for name, mask in masks.items():
        mask = mask & old[name].to(mask.device) if name in old else mask
        if not torch.equal(mask, masks[name]):
            kept_sparser.append(f"{name!r} stays at {1 - int(mask.sum()) / mask.numel():.4g}")
        combined[name] = mask
    if kept_sparser:
        warnings.warn(f"prune: masks only accumulate (pruned weights stay pruned), and the model already prunes more "
                      f"than asked for: {', '.join(kept_sparser)}; the returned masks are the model's. To prune less, "
                      f"prune a copy of the dense model", UserWarning, stacklevel=3)
    return combined
