"""From scores to masks: which weights go, by target sparsity or by threshold, per layer or globally.

A mask is a bool tensor shaped like its weight, **True means keep**. A model-wide set of masks is a
`dict[name -> mask]` keyed by parameter name, like `named_parameters()`. How many weights a sparsity
removes is decided in one place, `n_pruned`, so every function (and every test) agrees on the count.
See notebooks/03_weight_pruning.ipynb.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from minprune.layers import prunable_layers
from minprune.masked import check_mask_values
from minprune.train import check_model
from minprune.validate import finite_number, non_negative_int, positive_int


def prunable_names(model: nn.Module) -> list[str]:
    """Names of the weights of every prunable layer (`layers.is_prunable`), in module order ('layers.1.weight').

    See notebooks/02_importance_scores.ipynb.
    """
    check_model(model)
    return [f"{name}.weight" if name else "weight" for name in prunable_layers(model)]


def check_sparsity(sparsity, what: str = "sparsity") -> float:
    """Return `sparsity` as a float, or raise ValueError unless it is a number in [0, 1).

    1.0 is refused on purpose: a layer with every weight removed cuts the network in two.
    See notebooks/03_weight_pruning.ipynb.
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or math.isnan(sparsity):
        raise ValueError(f"{what} must be a number in [0, 1), got {sparsity!r}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {sparsity}")
    return float(sparsity)


def number_arg(value, name: str, accepts: str, **bounds) -> float:
    """`validate.finite_number(value, name, **bounds)` (NaN, inf, bools, strings and values out of bounds are
    refused), raising ValueError "<name> must be <accepts>, got <value>" in the words the docs use."""
    try:
        return finite_number(value, name, **bounds)
    except ValueError:
        raise ValueError(f"{name} must be {accepts}, got {value!r}") from None


def n_pruned(numel: int, sparsity: float) -> int:
    """How many of `numel` weights a `sparsity` removes: round(sparsity * numel), the one rounding rule.

    Python's round() (ties to even) is the rule `torch.nn.utils.prune` uses too, so counts agree with it.
    See notebooks/03_weight_pruning.ipynb.
    """
    if isinstance(numel, numbers.Integral) and not isinstance(numel, bool):
        numel = int(numel)  # a NumPy count is a count too
    non_negative_int(numel, "numel")
    return int(round(check_sparsity(sparsity) * numel))


def check_score_tensor(s, what: str = "scores") -> None:
    """Refuse a score that is not a float tensor with values (not on the meta device) and without NaN."""
    if not isinstance(s, torch.Tensor) or not s.is_floating_point():
        got = s.dtype if isinstance(s, torch.Tensor) else type(s).__name__
        raise TypeError(f"{what} must be a float tensor, got {got}")
    if s.is_meta:
        raise ValueError(f"{what} is on the meta device and holds no values; compute scores from real weights")
    if torch.isnan(s).any():
        raise ValueError(f"{what} contains NaN; fix the score function before pruning")


def check_scores(scores: dict) -> None:
    """Refuse scores that are not a non-empty dict of float tensors without NaN."""
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores must be a non-empty dict {parameter name: tensor}")
    for name, s in scores.items():
        check_score_tensor(s, f"scores[{name!r}]")


def _lowest(flat: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the n lowest entries of a 1-D tensor; among equal scores the lower index goes first."""
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=flat.device)
    kth = flat.kthvalue(n).values  # the n-th smallest score: O(numel), no full sort
    below = torch.nonzero(flat < kth).flatten()
    ties = torch.nonzero(flat == kth).flatten()[: n - below.numel()]
    return torch.cat([below, ties])


def topk_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask removing exactly `n_pruned(scores.numel(), sparsity)` lowest-scoring entries (ties: lower index goes).

    See notebooks/03_weight_pruning.ipynb.
    """
    check_score_tensor(scores)
    n = n_pruned(scores.numel(), sparsity)
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    keep[_lowest(scores.detach().flatten(), n)] = False
    return keep.view(scores.shape)


def threshold_mask(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Keep the entries whose score is strictly above `threshold` (a score equal to it is pruned).

    See notebooks/03_weight_pruning.ipynb.
    """
    check_score_tensor(scores)
    return scores.detach() > check_threshold(threshold)


def check_threshold(threshold) -> float:
    """`threshold` as a float; ValueError unless it is a finite number (NaN and inf are refused)."""
    return number_arg(threshold, "threshold", "a number (finite: NaN and inf are refused)")


def _global_masks(scores: dict, sparsity: float) -> dict:
    """One ranking over all tensors together (concatenated in dict order); exact total count."""
    flat = torch.cat([s.detach().flatten() for s in scores.values()])
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[_lowest(flat, n_pruned(flat.numel(), sparsity))] = False
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = keep[start:start + s.numel()].view(s.shape)
        start += s.numel()
    return masks


def _check_names(names, scores: dict, what: str) -> None:
    unknown = [n for n in names if n not in scores]
    if unknown:
        raise ValueError(f"unknown parameter name(s) in {what}: {unknown}; known: {list(scores)}")


def make_masks(scores: dict, sparsity: float | None = None, *, threshold: float | None = None,
               scope: str = "local", overrides: dict | None = None, exclude=()) -> dict:
    """Masks from scores, by target `sparsity` or by `threshold` (give exactly one). Pure function.

    A sparsity of 1.0 is refused. A threshold above every score of a tensor, or a global sparsity that collapses a
    small tensor, can still empty it: the masks show it (a pure function), and `prune` refuses to apply it.

    scope='local': every tensor loses the same fraction; 'global': one ranking across all tensors.
    overrides {name: sparsity} prune those tensors locally at their own sparsity (outside the global pool);
    exclude names are left out of the result (not pruned at all).
    See notebooks/03_weight_pruning.ipynb.
    """
    check_scores(scores)
    if (sparsity is None) == (threshold is None):
        raise ValueError("give exactly one of sparsity= or threshold=")
    check_scope(scope)
    overrides = _check_overrides(overrides, scores)
    exclude = name_list(exclude, "exclude", scores)
    if sparsity is not None:
        check_sparsity(sparsity)
    else:
        check_threshold(threshold)
    rest = {n: s for n, s in scores.items() if n not in exclude and n not in overrides}
    masks = {n: topk_mask(scores[n], s) for n, s in overrides.items() if n not in exclude}
    if threshold is not None:
        masks.update({n: threshold_mask(s, threshold) for n, s in rest.items()})
    elif scope == "global" and rest:
        masks.update(_global_masks(rest, sparsity))
    else:
        masks.update({n: topk_mask(s, sparsity) for n, s in rest.items()})
    return {n: masks[n] for n in scores if n in masks}  # keep the scores' order


def check_scope(scope) -> str:
    """`scope` when it is 'local' or 'global'; else ValueError."""
    if scope not in ("local", "global"):
        raise ValueError(f"scope must be 'local' or 'global', got {scope!r}")
    return scope


def _check_overrides(overrides, scores: dict) -> dict:
    """overrides as a dict {known name: sparsity in [0, 1)}; None means none."""
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise TypeError(f"overrides must be a dict {{parameter name: sparsity}}, got {type(overrides).__name__}")
    _check_names(overrides, scores, "overrides")
    for name, s in overrides.items():
        check_sparsity(s, f"overrides[{name!r}]")
    return dict(overrides)


def name_list(names, what: str, scores: dict | None = None) -> list[str]:
    """`names` as a list of parameter names (one name may be given as a str), else TypeError naming `what`;
    with `scores`, ValueError for a name it does not have."""
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, (list, tuple, set, frozenset)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{what} must be a parameter name or a list of them, got {names!r:.60}")
    if scores is not None:
        _check_names(names, scores, what)
    return list(names)


def _check_masks(masks) -> None:
    """Refuse anything but a dict {name: mask tensor} of bool or exactly 0/1 values, with values to read."""
    if not isinstance(masks, dict) or not all(isinstance(m, torch.Tensor) for m in masks.values()):
        raise TypeError(f"masks must be a dict {{parameter name: bool tensor}}, got {type(masks).__name__}")
    for name, m in masks.items():
        check_mask_values(m, f"masks[{name!r}]")


def masks_sparsity(masks: dict) -> float:
    """Fraction of entries that the masks remove, over all tensors together.

    See notebooks/03_weight_pruning.ipynb.
    """
    _check_masks(masks)
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return 1.0 - kept / total if total else 0.0


def shuffle_masks(masks: dict, seed: int = 0) -> dict:
    """The control for any mask: same number kept per tensor, positions drawn at random. Pure function.

    If a method's masks beat their shuffled copies, it is the positions that matter, not just the layer sparsities.
    See notebooks/03_weight_pruning.ipynb.
    """
    _check_masks(masks)
    generator = torch.Generator().manual_seed(non_negative_int(seed, "seed"))
    out = {}
    for name, mask in masks.items():
        flat = mask.flatten().cpu()
        perm = torch.randperm(flat.numel(), generator=generator)
        out[name] = flat[perm].view(mask.shape).to(mask.device)
    return out


def check_sparsities(sparsities, *, increasing: bool = False) -> list[float]:
    """A sparsity or an iterable of them as a non-empty list of floats in [0, 1) (non-decreasing if `increasing`)."""
    if isinstance(sparsities, numbers.Real):
        sparsities = [sparsities]
    if isinstance(sparsities, (str, bytes, dict)) or not hasattr(sparsities, "__iter__"):
        raise TypeError(f"sparsities must be a sparsity in [0, 1) or a list of them, got {sparsities!r:.60}")
    sparsities = [check_sparsity(s, f"sparsities[{i}]: sparsity") for i, s in enumerate(sparsities)]
    if not sparsities:
        raise ValueError("sparsities must list at least one value")
    if increasing and sparsities != sorted(sparsities):
        raise ValueError(f"sparsities must not decrease, got {sparsities}")
    return sparsities


def iterative_sparsities(final_sparsity: float, rounds: int) -> list[float]:
    """Targets for `rounds` rounds that each remove the same fraction of the surviving weights.

    Round k keeps (1 - final) ** (k / rounds), e.g. 0.99 in 3 rounds -> [0.785, 0.954, 0.99].
    See notebooks/04_fine_tuning.ipynb.
    """
    check_sparsity(final_sparsity, "final_sparsity")
    positive_int(rounds, "rounds")
    return [1 - (1 - final_sparsity) ** (k / rounds) for k in range(1, rounds + 1)]
