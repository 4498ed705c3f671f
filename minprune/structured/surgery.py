"""Physical removal of neurons and channels: a genuinely smaller nn.Module, no masks left behind.

Three steps, as everywhere in minprune: score (unit scores, `unit_scores.py`), select (`selection.py`: which
channels of each coupled group stay), and surgery (`remove_channels`: rebuild every affected layer with fewer rows /
columns). `prune_channels` does all three. Dependencies come from `dependency.trace_groups`, how each layer type is
sliced from `channel_rules.py`. Each rebuilt layer is a copy of the original with sliced tensors, so every option,
the dtype and the device survive; the result is checked against its masked equivalent (`equivalence.py`).
See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from minprune.layers import set_module
from minprune.masked import copy_model, make_permanent
from minprune.structured.channel_groups import DependencyGraph, check_graph
from minprune.structured.channel_rules import ChannelRule, rule_for
from minprune.structured.dependency import trace_groups
from minprune.structured.equivalence import (
    check_compacted,
    check_graph_fits,
    check_keep,
    input_index,
    kept_indices,
    kept_params,
)
from minprune.structured.selection import score_groups, select_channels
from minprune.structured.shared import reshare, shared_parameters
from minprune.train import check_finite_weights
from minprune.validate import check_flag, model_arg


def slice_tensor(module: nn.Module, name: str, dim: int, idx: torch.Tensor) -> None:
    """Keep entries `idx` of `module.<name>` along `dim` (a parameter stays a parameter, a buffer a buffer)."""
    t = getattr(module, name, None)
    if t is None:
        return
    sliced = t.detach().index_select(dim, idx.to(t.device)).clone()
    if isinstance(t, nn.Parameter):
        setattr(module, name, nn.Parameter(sliced, requires_grad=t.requires_grad))
    else:
        module._buffers[name] = sliced


def resize(module: nn.Module, rule: ChannelRule, n_out: int | None, n_in: int | None) -> None:
    """Set the size attributes the rule names (`out_features`, `num_features`, `normalized_shape`, ...)."""
    for attr, side in rule.sizes.items():
        n = n_in if side == "in" else n_out
        if n is not None and hasattr(module, attr):
            setattr(module, attr, (n,) if isinstance(getattr(module, attr), tuple) else n)


@torch.no_grad()
def rebuild(mod: nn.Module, out_idx, in_idx, *, in_place: bool = False) -> nn.Module:
    """A copy of `mod` (or `mod` itself, in_place=True) holding only output channels `out_idx` and input features
    `in_idx` (None = all)."""
    rule = rule_for(mod)
    new = make_permanent(mod if in_place else copy.deepcopy(mod))  # masks folded: the pruned weights stay zero
    if rule.rebuild is not None:
        return rule.rebuild(new, out_idx)
    if out_idx is not None:
        for name, dim in rule.channel_tensors.items():
            slice_tensor(new, name, dim, out_idx)
    if in_idx is not None:
        for name, dim in rule.input_tensors.items():
            slice_tensor(new, name, dim, in_idx)
    resize(new, rule, None if out_idx is None else len(out_idx), None if in_idx is None else len(in_idx))
    return new


def _aliases(model: nn.Module) -> dict[str, list[str]]:
    """{module name: every name it is registered under} (a module assigned to two attributes has two)."""
    first, names = {}, {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(first.setdefault(id(module), name), []).append(name)
    return names


@torch.no_grad()
def _slice_params(model: nn.Module, graph: DependencyGraph, keep: dict) -> None:
    """Parameters read in forward (a per-channel scale, a position embedding) lose the removed entries."""
    for owner_name, attr, dim, idx in kept_params(graph, keep):
        owner = model.get_submodule(owner_name)
        slice_tensor(owner, attr, dim, idx)
        rule = rule_for(owner)
        if rule is not None and rule.kind == "follower":  # e.g. a LayerNorm subclass that permutes first
            resize(owner, rule, len(idx), None)


def remove_channels(model: nn.Module, keep: dict, graph: DependencyGraph | None = None, *, example=None,
                    check: bool = True) -> nn.Module:
    """A compacted copy of `model` keeping only channels `keep` ({group id: indices}); `model` is untouched.

    check: run the copy and its masked equivalent on a random batch shaped like the traced example and raise
    `DependencyError` unless their outputs agree (see `equivalence.check_compacted`).
    A model with NaN or Inf weights is refused (its compacted copy could not be checked).
    See notebooks/06_structured_pruning.ipynb.
    """
    model_arg(model)
    check_flag(check, "check")
    check_finite_weights(model)
    graph = graph if graph is not None else trace_groups(model, example)
    check_graph(graph)
    check_graph_fits(model, graph)
    check_keep(graph, keep)
    keep = {gid: idx for gid, idx in keep.items() if len(idx) < graph.groups[gid].size}
    new = make_permanent(copy_model(model))  # a masked model: its masks folded into the copy (zeros stay zero)
    shared, aliases, modules = shared_parameters(new), _aliases(new), dict(new.named_modules())
    for name in dict.fromkeys([*graph.outputs, *graph.inputs, *graph.follows]):
        out_idx, in_idx = kept_indices(graph, name, keep)
        if out_idx is None and in_idx is None:
            continue
        rebuilt = rebuild(modules[name], out_idx, in_idx, in_place=True)  # `new` is already a copy
        for alias in aliases[name]:
            set_module(new, alias, rebuilt)
    _slice_params(new, graph, keep)
    for key, space in graph.widths.items():  # a width the module reads in forward, e.g. ViT's hidden_dim
        owner, _, attr = key.rpartition(".")
        setattr(new.get_submodule(owner), attr, len(input_index(graph, space, keep)))
    reshare(new, shared)
    if check and keep:
        check_compacted(model, new, keep, graph)
    return new


def channel_masks(model: nn.Module, keep: dict, graph: DependencyGraph) -> dict[str, torch.Tensor]:
    """The masks that zero exactly the channels `remove_channels` would remove (for masked-equivalence checks).

    Output rows of producers and the entries of followers (BatchNorm, depthwise conv) are masked;
    a consumer then reads zeros from the removed channels. (`equivalence.masked_equivalent` also zeroes the
    consumers' columns and the parameters read in forward: the full masked equivalent.)
    See notebooks/06_structured_pruning.ipynb.
    """
    model_arg(model)
    check_graph(graph)
    check_graph_fits(model, graph)
    check_keep(graph, keep)
    masks = {}
    for name, gid in graph.outputs.items():
        if gid not in keep:
            continue
        mod = model.get_submodule(name)
        rows = torch.zeros(graph.groups[gid].size, dtype=torch.bool)
        rows[keep[gid]] = True
        for p_name, dim in rule_for(mod).channel_tensors.items():
            p = getattr(mod, p_name, None)
            if isinstance(p, nn.Parameter) or f"{p_name}_orig" in mod._parameters:
                shape = [1] * p.dim()
                shape[dim] = -1
                masks[f"{name}.{p_name}"] = rows.reshape(shape).expand_as(p).clone().to(p.device)
    return masks


def prune_channels(model: nn.Module, sparsity, *, scores: dict | None = None, scope: str = "local",
                   example=None, round_to: int | None = None, check: bool = True) -> nn.Module:
    """Score, select and remove channels in one call; returns the smaller copy (`model` is untouched).

    scores: unit scores {'<module>.weight': 1-D}; default: L1 norm of each unit's weights.
    round_to: kept channels per group rounded down to a multiple of it (see `select_channels`).
    check: compare the copy with its masked equivalent on a random batch (see `remove_channels`); False skips it.
    Float16 and bfloat16 models are pruned in their dtype (the check's tolerance follows the dtype); a model with
    NaN or Inf weights is refused, naming the tensor. See notebooks/06_structured_pruning.ipynb.
    """
    from minprune.structured.unit_scores import norm_scores

    model_arg(model)
    check_flag(check, "check")
    check_finite_weights(model)
    graph = trace_groups(model, example)
    if not graph.prunable():
        frozen = "; ".join(f"{', '.join(g.producers)}: {g.frozen}" for g in graph.groups.values() if g.producers)
        raise ValueError(f"the model has no prunable channel group ({frozen or 'no Linear/Conv layer'}); "
                         f"prune_channels needs a hidden Linear/Conv layer whose outputs feed another layer")
    scores = scores if scores is not None else norm_scores(model, p=1)
    keep = select_channels(graph, score_groups(graph, scores), sparsity, scope=scope, round_to=round_to)
    return remove_channels(model, keep, graph, check=check)
