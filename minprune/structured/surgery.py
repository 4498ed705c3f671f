"""Physical removal of neurons and channels: a genuinely smaller nn.Module, no masks left behind.

Three steps, as everywhere in minprune: score (unit scores, `unit_scores.py`), select (`select_channels`:
which channels of each coupled group stay), and surgery (`remove_channels`: rebuild every affected layer with
fewer rows / columns). `prune_channels` does all three. Dependencies come from `dependency.trace_groups`.
See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from minprune.layers import module_from_spec, module_spec, set_module
from minprune.structured.channel_groups import check_graph
from minprune.structured.dependency import DependencyGraph, Group, trace_groups
from minprune.unstructured.masks import check_sparsity, n_pruned
from minprune.validate import positive_int


def score_groups(graph: DependencyGraph, scores: dict) -> dict[int, torch.Tensor]:
    """One score per channel of each prunable group: the sum of its members' unit scores.

    scores: {'<module>.weight': 1-D tensor over output units}, e.g. from `group_scores.norm_scores`.
    See notebooks/06_structured_pruning.ipynb.
    """
    check_graph(graph)
    if not isinstance(scores, dict):
        raise TypeError(f"scores must be a dict {{'<module>.weight': 1-D tensor of unit scores}}, "
                        f"got {type(scores).__name__}")
    out = {}
    for group in graph.prunable():
        total = torch.zeros(group.size)
        found = False
        for name in group.producers + group.followers:
            s = scores.get(f"{name}.weight")
            if s is not None:
                if s.shape != (group.size,):
                    raise ValueError(f"scores['{name}.weight'] must have shape ({group.size},), got {tuple(s.shape)}")
                total += s.detach().float().cpu()
                found = True
        if not found:
            raise ValueError(f"no unit scores for the group of {group.producers}; score one of its layers")
        out[group.id] = total
    return out


def _group_sparsity(group: Group, sparsity) -> float:
    if not isinstance(sparsity, dict):
        return check_sparsity(sparsity)
    values = {check_sparsity(sparsity[n], f"sparsity[{n!r}]") for n in group.producers if n in sparsity}
    if len(values) > 1:
        raise ValueError(f"layers {group.producers} share channels (coupled) but got different sparsities {values}")
    return values.pop() if values else 0.0


def select_channels(graph: DependencyGraph, group_scores: dict, sparsity, *, scope: str = "local",
                    round_to: int | None = None) -> dict:
    """Which channels stay: {group id: sorted LongTensor of kept channel indices}; lowest scores go.

    sparsity: a fraction of channels in [0, 1), or {producer module name: fraction} per layer (local only).
    scope='global' ranks all channels together and keeps at least one per group.
    round_to: round each group's kept count down to a multiple of `round_to` (at least `round_to`), as
    Torch-Pruning does, so that widths fit the CPU's vector lanes (8 floats for AVX2, 16 for AVX-512).
    See notebooks/06_structured_pruning.ipynb.
    """
    if scope not in ("local", "global"):
        raise ValueError(f"scope must be 'local' or 'global', got {scope!r}")
    positive_int(round_to, "round_to", none_ok=True)
    groups = {g.id: g for g in graph.prunable()}
    if scope == "global":
        if isinstance(sparsity, dict):
            raise ValueError("scope='global' takes one sparsity for the whole model, not a dict")
        n_keep = _global_counts(groups, group_scores, check_sparsity(sparsity))
    else:
        n_keep = _local_counts(groups, sparsity)
    keep = {}
    for gid, group in groups.items():
        k = _rounded(n_keep[gid], group.size, round_to)
        order = torch.argsort(group_scores[gid], descending=True, stable=True)
        keep[gid] = order[:k].sort().values
    return keep


def _rounded(n_keep: int, size: int, round_to: int | None) -> int:
    """`n_keep` rounded down to a multiple of `round_to`, but at least `round_to` (and at most `size`)."""
    if not round_to or n_keep == size:
        return n_keep
    return min(size, max(round_to, n_keep - n_keep % round_to))


def _local_counts(groups: dict, sparsity) -> dict[int, int]:
    if isinstance(sparsity, dict):
        known = [name for g in groups.values() for name in g.producers]
        unknown = [name for name in sparsity if name not in known]
        if unknown:
            raise ValueError(f"sparsity names {unknown}, which are not prunable layers; choose from {known}")
    counts = {}
    for gid, group in groups.items():
        n_remove = n_pruned(group.size, _group_sparsity(group, sparsity))
        if n_remove >= group.size:
            raise ValueError(f"sparsity would remove every channel of {group.producers}; keep at least one")
        counts[gid] = group.size - n_remove
    return counts


def _global_counts(groups: dict, group_scores: dict, sparsity: float) -> dict[int, int]:
    """Kept channels per group when all channels are ranked together; never empties a group."""
    flat = torch.cat([group_scores[gid] for gid in groups])
    n_remove = n_pruned(len(flat), sparsity)
    if n_remove == 0:
        return {gid: g.size for gid, g in groups.items()}
    threshold = torch.kthvalue(flat, n_remove).values
    return {gid: max(1, int((group_scores[gid] > threshold).sum())) for gid in groups}


def _check_keep(graph: DependencyGraph, keep: dict) -> None:
    for gid, idx in keep.items():
        if gid not in graph.groups:
            raise ValueError(f"keep names group {gid}, which does not exist")
        group = graph.groups[gid]
        if not isinstance(idx, torch.Tensor) or idx.dim() != 1 or idx.is_floating_point():
            raise TypeError(f"keep[{gid}] must be a 1-D integer tensor of channel indices")
        if len(idx) == 0:
            raise ValueError(f"keep[{gid}] is empty: that would remove every channel of {group.producers}")
        if idx.min() < 0 or idx.max() >= group.size or len(torch.unique(idx)) != len(idx):
            raise ValueError(f"keep[{gid}] must hold distinct indices in [0, {group.size})")
        if group.frozen and len(idx) != group.size:
            raise ValueError(f"channels of {group.producers or 'this group'} cannot be removed: {group.frozen}")


def _input_index(graph: DependencyGraph, space, keep: dict) -> torch.Tensor:
    """Indices of the input features a consumer keeps; a channel with `rep` features keeps all of them."""
    parts, offset = [], 0
    for gid, rep in space:
        size = graph.groups[gid].size
        idx = keep.get(gid, torch.arange(size))
        parts.append((idx[:, None] * rep + torch.arange(rep)).flatten() + offset)
        offset += size * rep
    return torch.cat(parts)


@torch.no_grad()
def _rebuilt(mod: nn.Module, out_idx, in_idx) -> nn.Module:
    """A new layer holding the rows `out_idx` and the input columns `in_idx` of `mod` (None = all)."""
    kind, kwargs = module_spec(mod)
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        kwargs["num_features"] = len(out_idx)
        new = module_from_spec([kind, kwargs])
        for key in ("weight", "bias", "running_mean", "running_var"):
            if getattr(mod, key) is not None:
                getattr(new, key).copy_(getattr(mod, key)[out_idx])
        if mod.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(mod.num_batches_tracked)
        return new.to(mod.weight.device if mod.weight is not None else "cpu")
    W = mod.weight  # (out, in [/ groups], *kernel)
    depthwise = getattr(mod, "groups", 1) > 1 and in_idx is None
    out_idx = torch.arange(W.shape[0]) if out_idx is None else out_idx
    if depthwise:  # (C, 1, kh, kw): channel i in -> channel i out
        kwargs.update(in_channels=len(out_idx), out_channels=len(out_idx), groups=len(out_idx))
        W_new = W[out_idx]
    else:
        in_idx = torch.arange(W.shape[1]) if in_idx is None else in_idx
        W_new = W[out_idx][:, in_idx]
        n_in, n_out = ("in_features", "out_features") if isinstance(mod, nn.Linear) else ("in_channels",
                                                                                          "out_channels")
        kwargs.update({n_in: len(in_idx), n_out: len(out_idx)})
    new = module_from_spec([kind, kwargs]).to(device=W.device, dtype=W.dtype)
    new.weight.copy_(W_new)
    if mod.bias is not None:
        new.bias.copy_(mod.bias[out_idx])
    return new


def remove_channels(model: nn.Module, keep: dict, graph: DependencyGraph | None = None, *, example=None):
    """A compacted copy of `model` keeping only channels `keep` ({group id: indices}); `model` is untouched.

    See notebooks/06_structured_pruning.ipynb.
    """
    graph = graph if graph is not None else trace_groups(model, example)
    _check_keep(graph, keep)
    new = copy.deepcopy(model)
    modules = dict(new.named_modules())
    for name in {**graph.outputs, **graph.inputs}:
        mod = modules[name]
        if getattr(mod, "groups", 1) > 1 and name in graph.inputs:
            continue  # a general grouped conv: both sides frozen, left as is
        out_gid = graph.outputs.get(name)
        out_idx = keep.get(out_gid) if out_gid is not None else None
        in_space = graph.inputs.get(name)
        touched = in_space is not None and any(gid in keep for gid, _ in in_space)
        in_idx = _input_index(graph, in_space, keep) if touched else None
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and out_idx is None:
            continue
        if out_idx is None and in_idx is None:
            continue
        set_module(new, name, _rebuilt(mod, out_idx, in_idx))
    return new


def channel_masks(model: nn.Module, keep: dict, graph: DependencyGraph) -> dict[str, torch.Tensor]:
    """The masks that zero exactly the channels `remove_channels` would remove (for masked-equivalence checks).

    Output rows of producers and the entries of followers (BatchNorm, depthwise conv) are masked;
    a consumer then reads zeros from the removed channels.
    See notebooks/06_structured_pruning.ipynb.
    """
    _check_keep(graph, keep)
    masks = {}
    for name, gid in graph.outputs.items():
        if gid not in keep:
            continue
        mod = model.get_submodule(name)
        rows = torch.zeros(graph.groups[gid].size, dtype=torch.bool)
        rows[keep[gid]] = True
        for p_name, p in mod.named_parameters(recurse=False):
            p_name = p_name.removesuffix("_orig")
            shape = (-1,) + (1,) * (p.dim() - 1)
            masks[f"{name}.{p_name}"] = rows.reshape(shape).expand_as(p).clone().to(p.device)
    return masks


def prune_channels(model: nn.Module, sparsity, *, scores: dict | None = None, scope: str = "local",
                   example=None, round_to: int | None = None) -> nn.Module:
    """Score, select and remove channels in one call; returns the smaller copy (`model` is untouched).

    scores: unit scores {'<module>.weight': 1-D}; default: L1 norm of each unit's weights.
    round_to: kept channels per group rounded down to a multiple of it (see `select_channels`).
    See notebooks/06_structured_pruning.ipynb.
    """
    from minprune.structured.unit_scores import norm_scores

    graph = trace_groups(model, example)
    if not graph.prunable():
        frozen = "; ".join(f"{', '.join(g.producers)}: {g.frozen}" for g in graph.groups.values() if g.producers)
        raise ValueError(f"the model has no prunable channel group ({frozen or 'no Linear/Conv layer'}); "
                         f"prune_channels needs a hidden Linear/Conv layer whose outputs feed another layer")
    scores = scores if scores is not None else norm_scores(model, p=1)
    keep = select_channels(graph, score_groups(graph, scores), sparsity, scope=scope, round_to=round_to)
    return remove_channels(model, keep, graph)
