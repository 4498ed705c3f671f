"""Wanda: pruning by weights and activations, Sun, Liu, Bair and Kolter 2023 (arXiv:2306.11695).

The score of weight W_ij is |W_ij| * ||X_j||_2, its magnitude times the 2-norm of input feature j over the
calibration rows (`calibration.input_norms`): a small weight on a loud input can matter more than a large
weight on a quiet one. Weights are compared within each output row (the paper's per-output comparison group), so
every row loses the same count, or within every group of m consecutive inputs of a row (N:M, `nm_mask`).
No weight is updated and no gradient is taken: one forward pass, then masks.
Note: torchao 0.18's `WandaSparsifier` ranks |W_ij| * ||X_j||_2^2 (the squared norm its observer stores) over the
whole layer when unstructured; the N:M and per-row rankings of the paper's code are the ones here.
See notebooks/13_one_shot_pruning.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn

from minprune.masked import effective_parameters, get_masks
from minprune.one_shot.calibration import input_norms
from minprune.structured.nm_sparsity import nm_mask
from minprune.unstructured.masks import check_sparsity, n_pruned


def check_nm(nm, sparsity) -> tuple[int, int] | None:
    """`nm` as (n, m): keep n of every m consecutive weights of a row, 0 < n <= m (None: unstructured).

    With nm the sparsity is 1 - n/m: a `sparsity` other than its default 0.5 or 1 - n/m is refused.
    See notebooks/13_one_shot_pruning.ipynb.
    """
    check_sparsity(sparsity)
    if nm is None:
        return None
    if not isinstance(nm, (tuple, list)) or len(nm) != 2:
        raise TypeError(f"nm must be a pair (n, m) such as (2, 4), keeping n of every m weights, got {nm!r:.60}")
    n, m = nm
    if isinstance(n, bool) or isinstance(m, bool) or not (isinstance(n, int) and isinstance(m, int) and 0 < n <= m):
        raise ValueError(f"nm must be a pair of ints 0 < n <= m such as (2, 4), got {nm!r}")
    if sparsity not in (0.5, 1 - n / m):
        raise ValueError(f"give sparsity or nm, not both: nm={nm!r} prunes {1 - n / m:g} of the weights, but "
                         f"sparsity={sparsity!r} was given too")
    return n, m


def check_rows_fit(name: str, weight: torch.Tensor, m: int) -> None:
    """ValueError naming the layer when its rows (in * kh * kw weights) do not split into groups of m."""
    row = weight[0].numel()
    if row % m:
        raise ValueError(f"{name}: rows of {row} weights cannot hold an N:M pattern with m={m}; leave the layer "
                         f"out of names= or choose an m that divides {row}")


def lowest_per_row(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask (rows, d), True at the `k` lowest scores of each row (ties: the lower index goes first)."""
    pruned = torch.zeros_like(scores, dtype=torch.bool)
    if k:
        pruned.scatter_(1, scores.argsort(dim=1, stable=True)[:, :k], True)
    return pruned


def row_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask shaped like `scores` removing `n_pruned(row length, sparsity)` lowest scores from every row
    (dim 0 = output rows; a conv weight's row is in * kh * kw). See notebooks/13_one_shot_pruning.ipynb."""
    rows = scores.reshape(scores.shape[0], -1)  # (out, d)
    return ~lowest_per_row(rows, n_pruned(rows.shape[1], sparsity)).reshape(scores.shape)


def wanda_scores(model: nn.Module, batches, names=None, *, max_batches: int | None = None) -> dict:
    """{weight name: |W| * ||X_j||_2} shaped like each weight, usable by `make_masks` (float32, or float64 for
    float64 weights). A masked weight is scored by its effective value (its pruned entries score 0).

    names: default every prunable Linear/Conv weight except the output layer (`calibration.target_layers`).
    The model is unchanged. See notebooks/13_one_shot_pruning.ipynb.
    """
    norms = input_norms(model, batches, names, max_batches=max_batches)  # {name: (d,)}
    params = effective_parameters(model)
    scores = {}
    for name, norm in norms.items():
        W = params[name].detach()  # (out, in) or (out, in, kh, kw)
        W = W.to(torch.promote_types(W.dtype, torch.float32))
        rows = W.reshape(W.shape[0], -1).abs() * norm.to(W.device, W.dtype)  # (out, d) times (d,)
        scores[name] = rows.reshape(W.shape)
    return scores


def wanda(model: nn.Module, batches, sparsity: float = 0.5, *, nm=None, names=None,
          max_batches: int | None = None) -> dict:
    """Wanda's masks {weight name: bool, True keeps}: per output row the `sparsity` lowest |W| * ||X_j||_2 go
    (every row exactly n_pruned(row, sparsity)), or with nm=(n, m) the m - n lowest of every m consecutive
    inputs. Pure: apply them with `mp.apply_masks` (or `mp.prune`-style on a copy).

    A model that already has masks: their pruned weights stay pruned, and the masks returned are the ones the
    model will have (old and new together). See notebooks/13_one_shot_pruning.ipynb.
    """
    nm = check_nm(nm, sparsity)
    scores = wanda_scores(model, batches, names, max_batches=max_batches)
    if nm is not None:
        for name, s in scores.items():
            check_rows_fit(name, s, nm[1])
    old = get_masks(model)
    masks = {}
    for name, s in scores.items():
        if name in old:
            s = s.masked_fill(~old[name].to(s.device), float("-inf"))  # pruned stays pruned, and counts
        keep = row_mask(s, sparsity) if nm is None else nm_mask(s, *nm)
        masks[name] = keep & old[name].to(keep.device) if name in old else keep
    return masks
