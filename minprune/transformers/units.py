"""What head pruning and MLP-neuron pruning share: the norm and fraction arguments, the `keep` dict of unit indices
per layer, lowest-score selection that keeps a unit in every layer, and the slicing of a Linear layer.

A unit is a block of `size` consecutive rows of a Linear layer's output (a head: head_dim rows of q, k and v; an
MLP neuron: one row of fc1) and the same columns of the layer that reads them (proj, fc2).
See notebooks/12_transformers.ipynb.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from minprune.masked import get_masks
from minprune.structured.selection import check_scores
from minprune.unstructured.masks import check_sparsity, n_pruned
from minprune.validate import model_arg

NORMS = {"l1": 1, "l2": 2}


def check_norm(norm) -> int:
    """The p of norm='l1' or 'l2'; else ValueError naming `norm`."""
    if not isinstance(norm, str) or norm not in NORMS:
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r:.60}")
    return NORMS[norm]


def unit_rows(idx: torch.Tensor, size: int) -> torch.Tensor:
    """Row indices of units `idx` when each unit owns `size` consecutive rows: unit h -> h*size .. h*size+size-1."""
    return (idx[:, None] * size + torch.arange(size)).flatten()


def check_keep(keep, counts: dict[str, int], unit: str) -> dict[str, torch.Tensor]:
    """`keep` ({layer name: indices of the units that stay}) as {name: sorted LongTensor}; layers it does not name
    keep every unit. TypeError for a keep that is not a dict of int sequences; ValueError for an unknown layer name,
    an index out of [0, units) or repeated, or a layer that keeps no unit. `counts` is {layer name: units}."""
    if not isinstance(keep, dict):
        raise TypeError(f"keep must be a dict {{layer name: indices of the {unit}s that stay}}, got "
                        f"{type(keep).__name__}")
    out = {}
    for name, idx in keep.items():
        if name not in counts:
            raise ValueError(f"keep names {name!r}, which is not a layer with {unit}s; choose from {list(counts)}")
        out[name] = unit_indices(idx, f"keep[{name!r}]", counts[name], unit)
    return out


def unit_indices(idx, what: str, n: int, unit: str) -> torch.Tensor:
    if isinstance(idx, torch.Tensor):
        if idx.dtype == torch.bool or idx.is_floating_point() or idx.is_complex() or idx.dim() != 1:
            raise TypeError(f"{what} must be a 1-D tensor or list of int {unit} indices, got a {idx.dtype} tensor "
                            f"of shape {tuple(idx.shape)}")
        values = idx.tolist()
    elif isinstance(idx, (list, tuple, range)):
        values = list(idx)
        if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in values):
            raise TypeError(f"{what} must list int {unit} indices, got {values!r:.80}")
        values = [int(v) for v in values]  # a NumPy int is an index too
    else:
        raise TypeError(f"{what} must be a list or 1-D tensor of int {unit} indices, got {type(idx).__name__}")
    if not values:
        raise ValueError(f"{what} keeps no {unit}: a layer needs at least one (of {n})")
    bad = [v for v in values if not 0 <= v < n]
    if bad:
        raise ValueError(f"{what} holds {unit} index {bad[0]}, outside [0, {n})")
    if len(set(values)) != len(values):
        twice = next(v for v in values if values.count(v) > 1)
        raise ValueError(f"{what} names {unit} {twice} more than once")
    return torch.tensor(sorted(values), dtype=torch.long)


def select_units(scores, fraction, scope: str, unit: str) -> dict[str, torch.Tensor]:
    """{layer name: sorted kept indices}: the lowest-scored `fraction` of units go (round(fraction * units), the
    kit's rounding rule), per layer (scope='local') or ranked over all layers together ('global'); every layer
    keeps at least one unit, so a count that would empty a layer is capped there. Among equal scores the later
    unit goes first (structured.selection's rule)."""
    if scope not in ("local", "global"):
        raise ValueError(f"scope must be 'local' or 'global', got {scope!r:.60}")
    fraction = check_sparsity(fraction, "fraction")
    if not isinstance(scores, dict) or not scores:
        raise TypeError(f"scores must be a non-empty dict {{layer name: 1-D tensor of {unit} scores}}, got "
                        f"{scores!r:.60}")
    for name, s in scores.items():
        if isinstance(s, torch.Tensor) and (s.dim() != 1 or len(s) == 0):
            raise ValueError(f"scores[{name!r}] must be a 1-D tensor with one score per {unit}, got shape "
                             f"{tuple(s.shape)}")
        check_scores(s, f"scores[{name!r}]", len(s) if isinstance(s, torch.Tensor) else 0)
    names = list(scores)
    flat = torch.cat([scores[n].detach().double().cpu() for n in names])
    owner = torch.cat([torch.full((len(scores[n]),), i) for i, n in enumerate(names)])
    left = [len(scores[n]) for n in names]
    drop = torch.zeros(len(flat), dtype=torch.bool)
    budget = [n_pruned(size, fraction) for size in left] if scope == "local" else [n_pruned(len(flat), fraction)]
    for j in torch.argsort(flat, descending=True, stable=True).flip(0).tolist():
        i = int(owner[j])
        b = i if scope == "local" else 0
        if budget[b] > 0 and left[i] > 1:
            drop[j], left[i], budget[b] = True, left[i] - 1, budget[b] - 1
    return {n: torch.nonzero(~drop[owner == i]).flatten() for i, n in enumerate(names)}


def refuse_masked(model: nn.Module, layers: list[str], how: str) -> None:
    """ValueError naming a layer to be sliced whose weight or bias carries a pruning mask (slicing a weight and not
    its mask would break the reparametrisation)."""
    masked = set(get_masks(model))
    for name in layers:
        hit = next((m for m in masked if m.rpartition(".")[0] == name), None)
        if hit is not None:
            raise ValueError(f"{how} slices {name!r}, but {hit!r} carries a pruning mask; fold the masks in first: "
                             f"mp.make_permanent(mp.copy_model(model)) (pruned weights become zeros)")


@torch.no_grad()
def slice_linear(layer: nn.Linear, *, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear holding the rows (outputs, bias too) and columns (inputs) of `layer` that `rows` / `cols` keep."""
    w = layer.weight
    rows = torch.arange(w.shape[0]) if rows is None else rows
    cols = torch.arange(w.shape[1]) if cols is None else cols
    new = nn.Linear(len(cols), len(rows), bias=layer.bias is not None, device=w.device, dtype=w.dtype)
    new.weight.copy_(w[rows.to(w.device)][:, cols.to(w.device)])
    if layer.bias is not None:
        new.bias.copy_(layer.bias[rows.to(w.device)])
    new.weight.requires_grad_(w.requires_grad)
    if new.bias is not None:
        new.bias.requires_grad_(layer.bias.requires_grad)
    return new.train(layer.training)


@torch.no_grad()
def zero_columns(layer: nn.Linear, cols: torch.Tensor) -> None:
    """Set input columns `cols` of `layer`'s weight to zero (its stored original too, when the weight is masked)."""
    for attr in ("weight", "weight_orig"):
        t = getattr(layer, attr, None)
        if isinstance(t, torch.Tensor):
            t[:, cols.to(t.device)] = 0


def layers_of(model: nn.Module, kind: type, what: str) -> dict:
    """{module name: module} of every `kind` module of `model`, in module order; ValueError when there is none
    (`what` names the units the caller would prune)."""
    model_arg(model)
    found = {name: mod for name, mod in model.named_modules() if isinstance(mod, kind)}
    if not found:
        raise ValueError(f"model ({type(model).__name__}) has no {kind.__name__} layers (minprune.attention_blocks, "
                         f"as in TinyViT and CharGPT), so it has no {what} to prune")
    return found
