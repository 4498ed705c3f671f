"""Which channels must be removed together: coupled groups found by tracing the model with torch.fx.

Removing output channel i of a convolution also removes entry i of the BatchNorm after it and input channel i
of every layer that reads it. Residual additions tie the channels of both operands into one group, a flatten
makes each channel own H*W consecutive features of the next Linear layer, and a concatenation places its inputs
at channel offsets. A group is "frozen" when it touches the model input or output or a grouped convolution.
The group data structures and their views live in `channel_groups.py`.
See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from minprune.devices import example_input
from minprune.structured.channel_groups import (
    ChannelSpaces,
    DependencyError,
    DependencyGraph,
    Group,
    groups_table,
    plot_groups,
)

__all__ = ["DependencyError", "DependencyGraph", "Group", "groups_table", "plot_groups", "trace_groups"]

# Leaf modules and functions that keep every channel where it is (elementwise or per-channel spatial ops).
PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.ELU,
                nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
PASS_FUNCTIONS = {torch.relu, F.relu, torch.sigmoid, torch.tanh, F.gelu, F.silu, F.leaky_relu, F.dropout,
                  F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, torch.nn.functional.relu6}
PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone", "detach"}
ELEMENTWISE = {operator.add, operator.iadd, operator.sub, operator.mul, torch.add, torch.sub, torch.mul}
FLATTENS = {torch.flatten}
REDUCTIONS = {"mean", "sum", "amax", "amin"}  # over spatial dims only: channels survive
FLATTEN_METHODS = {"flatten", "view", "reshape"}


def _shape(node) -> tuple | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _flatten(space, node, src) -> list:
    """Channel space after flattening (N, C, H, W) to (N, C*H*W): each channel owns H*W features."""
    before, after = _shape(src), _shape(node)
    if before is None or after is None or len(before) <= 2:
        return space
    if len(after) != 2 or before[0] != after[0]:
        raise DependencyError(f"node {node.name!r}: only flattening to (batch, features) is supported, "
                              f"got {before} -> {after}")
    spatial = 1
    for d in before[2:]:
        spatial *= d
    return [(gid, rep * spatial) for gid, rep in space]


def _keeps_channels(node, src) -> bool:
    """True when a reduction keeps the (batch, channel) dims, i.e. it only pools over positions."""
    before, after = _shape(src), _shape(node)
    return before is not None and after is not None and len(after) >= 2 and after[:2] == before[:2]


class _Tracer:
    """Walks the fx graph once and assigns a channel space to every tensor node."""

    def __init__(self, model: nn.Module, example: torch.Tensor):
        try:
            self.gm = fx.symbolic_trace(model)
        except Exception as exc:
            raise DependencyError(f"torch.fx could not trace {type(model).__name__}: {exc}") from exc
        ShapeProp(self.gm).propagate(example)
        self.modules = dict(self.gm.named_modules())
        self.s = ChannelSpaces()
        self.space: dict[fx.Node, list] = {}
        self.inputs, self.outputs, self.after = {}, {}, {}

    def run(self) -> DependencyGraph:
        for node in self.gm.graph.nodes:
            self.space[node] = self._visit(node)
        groups = {}
        for gid in self.s.parent:
            root = self.s.find(gid)
            groups[root] = self.s.groups[root]
        resolve = lambda sp: [(self.s.find(g), r) for g, r in sp]  # noqa: E731
        inputs = {k: resolve(v) for k, v in self.inputs.items()}
        outputs = {k: self.s.find(v) for k, v in self.outputs.items()}
        return DependencyGraph(groups, inputs, outputs, self.after)

    def _tensor_args(self, node) -> list:
        return [a for a in node.args if isinstance(a, fx.Node) and self.space.get(a) is not None]

    def _visit(self, node):
        if node.op == "placeholder":
            shape = _shape(node)
            return [(self.s.new(shape[1], frozen="model input"), 1)] if shape and len(shape) > 1 else None
        if node.op == "output":
            for a in node.all_input_nodes:
                if self.space.get(a):
                    self.s.freeze(self.space[a], "model output")
            return None
        if node.op == "get_attr" or _shape(node) is None:
            return None
        if node.op == "call_module":
            return self._module(node, self.modules[node.target])
        return self._function(node)

    def _module(self, node, mod):
        name = node.target
        (src,) = self._tensor_args(node)[:1] or (None,)
        space = self.space.get(src) if src is not None else None
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)) and space is not None:
            return self._layer(node, name, mod, space)
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            return self._follower(name, space, node)
        if isinstance(mod, PASS_MODULES):
            return space
        if isinstance(mod, nn.Flatten):
            return _flatten(space, node, src) if mod.start_dim == 1 else self._unsupported(node, mod)
        return self._unsupported(node, mod)

    def _layer(self, node, name, mod, space):
        if isinstance(mod, nn.Linear) and len(_shape(node)) != 2:
            raise DependencyError(f"module {name!r}: Linear on a tensor of shape {_shape(node)} is not supported")
        groups = getattr(mod, "groups", 1)
        n_in = mod.in_features if isinstance(mod, nn.Linear) else mod.in_channels
        n_out = mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels
        if groups > 1 and groups == n_in == n_out:  # depthwise: channel i in -> channel i out
            return self._follower(name, space, node)
        self.inputs[name] = space
        for gid, _ in space:
            self.s.groups[self.s.find(gid)].consumers.append(name)
        if groups > 1:  # general grouped convolution: channels stay, so neither side is prunable
            self.s.freeze(space, f"grouped convolution {name!r}")
        out = self.s.new(n_out, frozen=f"grouped convolution {name!r}" if groups > 1 else None)
        self.s.groups[out].producers.append(name)
        self.outputs[name] = out
        return [(out, 1)]

    def _follower(self, name, space, node):
        if space is None or len(space) != 1 or space[0][1] != 1:
            raise DependencyError(f"module {name!r}: expects an unflattened channel input, got segments {space}")
        gid = space[0][0]
        self.s.groups[self.s.find(gid)].followers.append(name)
        self.outputs[name] = gid
        src = node.args[0]
        if src.op == "call_module" and src.target in self.outputs and src.target not in self.after:
            self.after[src.target] = name
        return space

    def _function(self, node):
        target, args = node.target, self._tensor_args(node)
        if node.op == "call_method" and target in ("size", "dim"):
            return None
        if target is torch.cat:
            return self._concat(node)
        if not args:
            return None
        space = self.space[args[0]]
        if target in PASS_FUNCTIONS or (node.op == "call_method" and target in PASS_METHODS):
            return space
        if target in ELEMENTWISE or (node.op == "call_method" and target in ("add", "add_", "mul", "sub")):
            return self._tie(node, args)
        if target in FLATTENS or (node.op == "call_method" and target in FLATTEN_METHODS):
            return _flatten(space, node, args[0])
        if getattr(target, "__name__", target) in REDUCTIONS and _keeps_channels(node, args[0]):
            return space
        return self._unsupported(node, getattr(target, "__name__", target))

    def _tie(self, node, args):
        spaces = [self.space[a] for a in args]
        for other in spaces[1:]:
            if len(other) != len(spaces[0]) or any(r1 != r2 for (_, r1), (_, r2) in zip(spaces[0], other)):
                raise DependencyError(f"node {node.name!r}: cannot tie channels of differently laid out tensors")
            for (g1, _), (g2, _) in zip(spaces[0], other):
                self.s.union(g1, g2, f"node {node.name!r}")
        return spaces[0]

    def _concat(self, node):
        tensors = node.args[0]
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if dim not in (1, -len(_shape(node)) + 1) or len(_shape(node)) < 2:
            raise DependencyError(f"node {node.name!r}: only concatenation along channels (dim=1) is supported")
        out = []
        for t in tensors:
            if not isinstance(t, fx.Node) or self.space.get(t) is None:
                raise DependencyError(f"node {node.name!r}: cannot follow channels of concatenated input {t!r}")
            out += self.space[t]
        return out

    def _unsupported(self, node, what):
        raise DependencyError(f"cannot follow channels through {node.op} {node.target!r} ({what}); "
                              f"minprune supports Conv/Linear/BatchNorm, elementwise ops, pooling, flatten, "
                              f"add and concatenation")


def trace_groups(model: nn.Module, example: torch.Tensor | None = None) -> DependencyGraph:
    """Trace `model` and return its coupled channel groups (the model is not changed).

    example: one input batch; defaults to zeros shaped (1, *model.input_shape).
    See notebooks/06_structured_pruning.ipynb.
    """
    if example is None:
        if not hasattr(model, "input_shape"):
            raise ValueError("pass example=torch.zeros(1, C, H, W); the model does not record input_shape")
        example = example_input(model)  # on the model's device
    was_training = model.training
    model.eval()
    try:
        return _Tracer(model, example).run()
    finally:
        model.train(was_training)

