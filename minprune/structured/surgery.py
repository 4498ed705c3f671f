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


def _pair_keep(keep, width: int) -> torch.Tensor:
    """`keep` as a sorted 1-D LongTensor of distinct channel indices in [0, width); else a clear error."""
    if not isinstance(keep, torch.Tensor) or keep.dim() != 1 or keep.is_floating_point() or keep.dtype == torch.bool:
        raise TypeError(f"remove_conv_bn_channels: keep must be a 1-D LongTensor of channel indices, got "
                        f"{type(keep).__name__} {getattr(keep, 'dtype', '')} {tuple(getattr(keep, 'shape', ()))}")
    if len(keep) == 0:
        raise ValueError("remove_conv_bn_channels: keep is empty; a layer needs at least one channel")
    if int(keep.min()) < 0 or int(keep.max()) >= width:
        raise ValueError(f"remove_conv_bn_channels: keep holds indices outside [0, {width}): "
                         f"{keep[(keep < 0) | (keep >= width)].tolist()[:5]}")
    if bool((keep[1:] <= keep[:-1]).any()):
        raise ValueError("remove_conv_bn_channels: keep must be sorted and hold each channel once "
                         "(e.g. keep.unique(), which sorts); the kept channels keep their order")
    return keep.long()


def _check_pair(conv, bn, next_conv) -> None:
    """A conv (groups=1) -> BatchNorm2d -> conv (groups=1) whose widths fit; else TypeError/ValueError."""
    expected = (("conv", conv, nn.Conv2d), ("bn", bn, nn.BatchNorm2d), ("next_conv", next_conv, nn.Conv2d))
    for name, value, kind in expected:
        if not isinstance(value, kind):
            extra = " (a Linear after a flatten: use mp.remove_channels on the model)" if name == "next_conv" else ""
            raise TypeError(f"remove_conv_bn_channels: {name} must be a torch.nn.{kind.__name__}, got "
                            f"{type(value).__name__}{extra}")
    for name, value in (("conv", conv), ("next_conv", next_conv)):
        if value.groups != 1:
            raise ValueError(f"remove_conv_bn_channels: {name} has groups={value.groups}; only groups=1 convolutions "
                             "are sliced here (use mp.prune_channels for grouped and depthwise ones)")
    if bn.num_features != conv.out_channels or next_conv.in_channels != conv.out_channels:
        raise ValueError(f"remove_conv_bn_channels: the widths do not fit: conv writes {conv.out_channels} channels, "
                         f"bn normalises {bn.num_features}, next_conv reads {next_conv.in_channels}")


def remove_conv_bn_channels(conv: nn.Conv2d, bn: nn.BatchNorm2d, next_conv: nn.Conv2d,
                            keep: torch.Tensor) -> tuple[nn.Conv2d, nn.BatchNorm2d, nn.Conv2d]:
    """New (conv, bn, next_conv) keeping only the output channels `keep` of `conv`: the surgery of one pair.

    conv loses the other rows of its weight (and bias), bn the other entries of weight, bias, running_mean and
    running_var, next_conv the other input channels (dim 1 of its weight); out_channels, num_features and
    in_channels follow. Everything else (eps, momentum, train/eval mode, stride, padding, dtype, device) is kept.
    keep: sorted distinct channel indices (a LongTensor). The inputs are not changed. The result computes what the
    original triple computes when the removed channels are zeroed after BN and its activation (the input of
    next_conv); zeroing conv's output channels is not the same when bn has a shift. Only groups=1 convolutions
    and a BatchNorm2d in between; a Linear after a flatten is left to `remove_channels`.
    See notebooks/06_structured_pruning.ipynb.
    """
    _check_pair(conv, bn, next_conv)
    keep = _pair_keep(keep, conv.out_channels)
    return rebuild(conv, keep, None), rebuild(bn, keep, None), rebuild(next_conv, None, keep)
