"""The masked equivalent of a channel removal, and the check that the compacted model computes it.

Removing channels deletes rows of producers, entries of followers, columns of consumers and entries of the
parameters read in forward. The masked equivalent keeps the full-size model and sets exactly those entries to
zero; a layer that normalises over its channels (LayerNorm) normalises over the kept ones only. The compacted model
must give the same outputs: `check_compacted` runs both on a random batch and refuses a mismatch, so a graph the
tracer misread can never pass as a pruned model. See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from minprune.masked import copy_model, make_permanent
from minprune.structured.channel_groups import DependencyError, DependencyGraph, check_graph
from minprune.structured.channel_rules import rule_for
from minprune.structured.fx_nodes import trace_module
from minprune.validate import finite_number, model_arg

# relative difference allowed between the compacted model and its masked equivalent, per dtype: the two sum the
# same products in another order, so the rounding error of the dtype (eps: 1e-16, 1e-7, 1e-3, 8e-3) sets the limit
TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def input_index(graph: DependencyGraph, space, keep: dict) -> torch.Tensor:
    """Indices of the features a layout keeps; a channel with `rep` features keeps all of them."""
    parts, offset = [], 0
    for gid, rep in space:
        size = graph.groups[gid].size
        idx = keep.get(gid, torch.arange(size))
        parts.append((idx[:, None] * rep + torch.arange(rep)).flatten() + offset)
        offset += size * rep
    return torch.cat(parts)


def _zero_except(tensor: torch.Tensor, dim: int, idx: torch.Tensor) -> None:
    mask = torch.zeros(tensor.shape[dim], dtype=torch.bool, device=tensor.device)
    mask[idx.to(tensor.device)] = True
    shape = [1] * tensor.dim()
    shape[dim] = -1
    tensor.mul_(mask.reshape(shape).to(tensor.dtype))


def _kept(graph: DependencyGraph, space, keep: dict):
    """Indices of the features of layout `space` that stay, or None when none of its groups loses a channel."""
    return input_index(graph, space, keep) if space and any(g in keep for g, _ in space) else None


def kept_indices(graph: DependencyGraph, name: str, keep: dict) -> tuple:
    """(kept output channels, kept input features) of module `name`, each None when all of them stay: what
    `remove_channels` keeps and `masked_equivalent` does not zero."""
    out_space = graph.follows.get(name) or ([(graph.outputs[name], 1)] if name in graph.outputs else [])
    return _kept(graph, out_space, keep), _kept(graph, graph.inputs.get(name), keep)


def kept_params(graph: DependencyGraph, keep: dict):
    """(owner module name, attribute, dim, kept indices) of every parameter read in forward that loses entries."""
    for name, (dim, space) in graph.params.items():
        idx = _kept(graph, space, keep)
        if idx is not None:
            owner, _, attr = name.rpartition(".")
            yield owner, attr, dim, idx


@torch.no_grad()
def _zero_removed(model: nn.Module, graph: DependencyGraph, keep: dict) -> None:
    modules = dict(model.named_modules())
    for name in dict.fromkeys([*graph.outputs, *graph.inputs, *graph.follows]):
        mod, rule = modules[name], rule_for(modules[name])
        out_idx, in_idx = kept_indices(graph, name, keep)
        if out_idx is not None and rule.mask is not None:
            rule.mask(mod, out_idx)
            continue
        for tensors, idx in ((rule.channel_tensors, out_idx), (rule.input_tensors, in_idx)):
            for key, dim in tensors.items() if idx is not None else ():
                if getattr(mod, key, None) is not None:
                    _zero_except(getattr(mod, key), dim, idx)
    for owner, attr, dim, idx in kept_params(graph, keep):
        _zero_except(getattr(model.get_submodule(owner), attr), dim, idx)


class KeptChannelNorm(nn.Module):
    """LayerNorm over the last axis computed on the kept channels only; the removed channels read zero."""

    def __init__(self, kept: torch.Tensor, weight, bias, eps: float):
        super().__init__()
        self.kept, self.weight, self.bias, self.eps = kept, weight, bias, eps

    def forward(self, x):
        k = self.kept.to(x.device)
        y = torch.zeros_like(x)
        w = None if self.weight is None else self.weight[k]
        b = None if self.bias is None else self.bias[k]
        y[..., k] = F.layer_norm(x[..., k], (len(k),), w, b, self.eps)
        return y


def _with_kept_norms(model: nn.Module, graph: DependencyGraph, keep: dict) -> nn.Module:
    """`model` as an fx GraphModule whose channel-normalising layers see only the kept channels."""
    gm = trace_module(model)
    for i, node in enumerate(list(gm.graph.nodes)):
        key = node.target if node.op == "call_module" else node.name
        gid = graph.statistics.get(key)
        if gid not in keep:
            continue
        if node.op == "call_module":
            ln = gm.get_submodule(node.target)
            if not isinstance(ln, nn.LayerNorm):
                raise DependencyError(f"module {node.target!r} ({type(ln).__name__}): a rule with statistics=True "
                                      f"is supported for LayerNorm layers only")
            weight, bias, eps = ln.weight, ln.bias, ln.eps
        else:  # F.layer_norm(x, shape, weight, bias, eps) with weight and bias read from parameters
            args = list(node.args) + [None] * (5 - len(node.args))
            get = lambda a: gm.get_parameter(a.target) if isinstance(a, fx.Node) else a  # noqa: E731
            weight, bias = get(node.kwargs.get("weight", args[2])), get(node.kwargs.get("bias", args[3]))
            eps = node.kwargs.get("eps", args[4] if args[4] is not None else 1e-5)
        gm.add_submodule(f"_kept_norm_{i}", KeptChannelNorm(keep[gid], weight, bias, eps))
        node.op, node.target, node.args, node.kwargs = "call_module", f"_kept_norm_{i}", (node.args[0],), {}
    gm.recompile()
    return gm


def masked_equivalent(model: nn.Module, keep: dict, graph: DependencyGraph) -> nn.Module:
    """A full-size copy of `model` in which every entry that `remove_channels(model, keep, graph)` deletes is zero.

    `graph` must be traced from `model` and `keep` must be one `remove_channels` accepts (known groups, distinct
    indices in range, at least one channel per group); else ValueError/TypeError before anything is copied.
    """
    model_arg(model)
    check_graph(graph)
    check_graph_fits(model, graph)
    check_keep(graph, keep)
    masked = make_permanent(copy_model(model))
    _zero_removed(masked, graph, keep)
    if any(gid in keep for gid in graph.statistics.values()):
        masked = _with_kept_norms(masked, graph, keep)
    return masked.eval()


def _space_width(graph: DependencyGraph, space) -> int:
    """How many features a channel layout holds: each group's channels times the features per channel."""
    return sum(graph.groups[gid].size * rep for gid, rep in space)


def _not_from(model: nn.Module, what: str) -> ValueError:
    return ValueError(f"graph was not traced from this {type(model).__name__}: {what}; trace it from the model "
                      f"you pass: graph = trace_groups(model)")


def check_graph_fits(model: nn.Module, graph: DependencyGraph) -> None:
    """Raise ValueError unless `graph` describes `model`: every module it names exists and has a channel rule,
    its output tensors have as many channels as the graph's groups, and every parameter it names exists.

    A graph traced from another model (another architecture, or the same one at another width) would otherwise
    zero or slice the wrong entries, or fail deep inside the surgery. Reads shapes only.
    """
    modules = dict(model.named_modules())
    for name in dict.fromkeys([*graph.outputs, *graph.inputs, *graph.follows]):
        module = modules.get(name)
        rule = rule_for(module) if module is not None else None
        if rule is None:
            kind = "has no such module" if module is None else f"has a {type(module).__name__} there"
            raise _not_from(model, f"it names module {name!r}, and the model {kind}")
        out_space = graph.follows.get(name) or ([(graph.outputs[name], 1)] if name in graph.outputs else [])
        if not out_space or rule.mask is not None or rule.rebuild is not None:
            continue
        width = _space_width(graph, out_space)
        for key, dim in rule.channel_tensors.items():
            t = getattr(module, key, None)
            if isinstance(t, torch.Tensor) and t.dim() > dim and t.shape[dim] != width:
                raise _not_from(model, f"{name}.{key} has {t.shape[dim]} channels along dim {dim}, the graph "
                                       f"{width}")
    for key, (dim, space) in graph.params.items():
        owner, _, attr = key.rpartition(".")
        t = getattr(modules.get(owner), attr, None)
        if not isinstance(t, torch.Tensor) or t.dim() <= dim or t.shape[dim] != _space_width(graph, space):
            raise _not_from(model, f"it names parameter {key!r} with {_space_width(graph, space)} entries along "
                                   f"dim {dim}, which the model does not have")


def _check_indices(gid, idx) -> None:
    """TypeError unless `idx` (keep[gid]) is a 1-D integer tensor."""
    if (not isinstance(idx, torch.Tensor) or idx.dim() != 1 or idx.is_floating_point() or idx.is_complex()
            or idx.dtype == torch.bool):
        got = f"a {idx.dim()}-D {idx.dtype} tensor" if isinstance(idx, torch.Tensor) else type(idx).__name__
        hint = " (for a bool mask m, pass m.nonzero().flatten())" if getattr(idx, "dtype", None) == torch.bool \
            else ""
        raise TypeError(f"keep[{gid}] must be a 1-D integer tensor of channel indices, got {got}{hint}")


def _balanced(idx, size: int, blocks: int) -> bool:
    counts = torch.bincount(idx // (size // blocks), minlength=blocks)
    return bool((counts == counts[0]).all()) and bool((idx.sort().values == idx).all())


def check_keep(graph: DependencyGraph, keep) -> None:
    """Raise TypeError/ValueError unless `keep` ({group id: kept channel indices}) fits `graph`: known group ids,
    1-D integer tensors of distinct indices in range, at least one channel kept per group, frozen groups whole,
    the same number kept in every head of an attention layer. What `remove_channels` and `masked_equivalent` accept.
    """
    if not isinstance(keep, dict):
        raise TypeError(f"keep must be a dict {{group id: kept channel indices}}, got {type(keep).__name__}")
    for gid, idx in keep.items():
        if gid not in graph.groups:
            raise ValueError(f"keep names group {gid!r}, which does not exist; groups: {list(graph.groups)}")
        group = graph.groups[gid]
        _check_indices(gid, idx)
        if len(idx) == 0:
            raise ValueError(f"keep[{gid}] is empty: that would remove every channel of {group.producers}")
        if idx.min() < 0 or idx.max() >= group.size or len(torch.unique(idx)) != len(idx):
            raise ValueError(f"keep[{gid}] must hold distinct indices in [0, {group.size})")
        if group.frozen and len(idx) != group.size:
            raise ValueError(f"channels of {group.producers or 'this group'} cannot be removed: {group.frozen}")
        blocks = graph.blocks.get(gid, 1)
        if blocks > 1 and len(idx) != group.size and not _balanced(idx, group.size, blocks):
            raise ValueError(f"keep[{gid}] must be sorted and keep the same number of channels in each of the "
                             f"{blocks} heads of {group.followers}")


def _probe(example: torch.Tensor) -> torch.Tensor:
    """A random batch shaped like `example` (its own generator: the global random state is untouched)."""
    if not example.is_floating_point():
        return example
    g = torch.Generator().manual_seed(0)
    return torch.randn(example.shape, generator=g, dtype=example.dtype).to(example.device)


def _leaves(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for o in out for t in _leaves(o)] if isinstance(out, list | tuple) else []


@torch.no_grad()
def check_compacted(model: nn.Module, compacted: nn.Module, keep: dict, graph: DependencyGraph,
                    tolerance: float | None = None) -> float:
    """Relative difference of `compacted` and the masked equivalent on a random batch; DependencyError above
    `tolerance` (default by dtype, `TOLERANCES`: 1e-4 in float32, 1e-10 in float64, 1e-2 in float16, 5e-2 in
    bfloat16). Both run in eval mode; `model` is untouched."""
    model_arg(model)
    model_arg(compacted, "compacted")
    check_graph(graph)
    check_graph_fits(model, graph)
    check_keep(graph, keep)
    finite_number(tolerance, "tolerance", low=0, none_ok=True)
    x = _probe(graph.example)
    masked = masked_equivalent(model, keep, graph)
    was = compacted.training
    compacted.eval()
    try:
        expected = _leaves(masked(x))
        got = _leaves(compacted(x))
    except RuntimeError as exc:
        raise DependencyError(f"the compacted model does not run ({str(exc).splitlines()[0][:200]}): an operation "
                              f"in forward was not followed; the model is left untouched") from exc
    finally:
        compacted.train(was)
    error = 0.0
    for e, g in zip(expected, got):
        if e.shape != g.shape:
            raise DependencyError(f"the compacted model's output has shape {tuple(g.shape)}, its masked equivalent "
                                  f"{tuple(e.shape)}: an operation was not followed")
        if e.is_floating_point():
            scale = e.abs().max().clamp_min(torch.finfo(e.dtype).tiny)
            error = max(error, float((e - g).abs().max() / scale))
    limit = tolerance if tolerance is not None else TOLERANCES.get(x.dtype, 1e-4)
    if not error <= limit:
        raise DependencyError(f"the compacted model differs from its masked equivalent by {error:.2g} (relative, "
                              f"limit {limit:g}): an operation in forward was not followed correctly; the model is "
                              f"left untouched")
    return error
