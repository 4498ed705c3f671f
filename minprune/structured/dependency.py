"""Which channels must be removed together: coupled groups found by tracing the model with torch.fx.

Removing output channel i of a convolution also removes entry i of the BatchNorm after it and input channel i
of every layer that reads it. Residual additions and channel-wise products tie the channels of their operands
into one group, a flatten makes each channel own H*W consecutive features of the next Linear layer, a
concatenation places its inputs at channel offsets, and a parameter read in `forward` (a per-channel scale, a
position embedding) loses the same entries. How each layer type is pruned comes from `channel_rules.py`, how
shape operations move the channel axis from `channel_axes.py`. A module called twice, or two modules sharing a
parameter, get one group. Anything else is refused with a `DependencyError` naming the module and the operation.
See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from minprune.devices import example_input
from minprune.structured import channel_ops
from minprune.structured.channel_axes import Attr, Space, positive_axis
from minprune.structured.channel_groups import (
    ChannelSpaces,
    DependencyError,
    DependencyGraph,
    Group,
    groups_table,
    plot_groups,
)
from minprune.structured.channel_rules import rule_for
from minprune.structured.fx_nodes import flat_values, node_shape, trace_module, where
from minprune.structured.shared import tie_shared_parameters
from minprune.train import check_model
from minprune.validate import float_dtype

__all__ = ["DependencyError", "DependencyGraph", "Group", "groups_table", "plot_groups", "trace_groups"]


class _Tracer:
    """Walks the fx graph once and assigns a channel `Space` (or an `Attr`) to every tensor node."""

    def __init__(self, model: nn.Module, example: torch.Tensor):
        self.model = model
        self.gm = trace_module(model)
        batch = torch.cat([example, example]) if example.dim() > 1 and example.shape[0] == 1 else example
        try:  # a batch of two, so that no reshape of the batch dim passes for a reshape of the channels
            ShapeProp(self.gm).propagate(batch)
        except Exception as exc:
            cause = exc.__cause__ or exc  # ShapeProp wraps the real error in a dump of the node
            first = str(cause).splitlines()[0][:300] if str(cause) else ""
            raise DependencyError(f"{type(model).__name__} does not run on the example input of shape "
                                  f"{tuple(example.shape)} (run as a batch of two): {type(cause).__name__}: "
                                  f"{first}") from exc
        self.modules = dict(self.gm.named_modules())
        self.s = ChannelSpaces()
        self.value: dict[fx.Node, object] = {}
        self.inputs, self.outputs, self.after, self.params, self.statistics = {}, {}, {}, {}, {}
        self.follows, self.blocks, self.widths = {}, {}, {}

    def run(self) -> DependencyGraph:
        for node in self.gm.graph.nodes:
            self.value[node] = self._visit(node)
            if self.value[node] is None and node.op != "output" and node_shape(node) is not None and any(
                    isinstance(self.value.get(a), Space | Attr) for a in node.all_input_nodes):
                raise DependencyError(f"{where(node)}: its output's channels are not followed")
        tie_shared_parameters(self)
        resolve = lambda segs: tuple((self.s.find(g), r) for g, r in segs)  # noqa: E731
        groups = {root: self.s.groups[root] for root in dict.fromkeys(self.s.find(g) for g in self.s.parent)}
        return DependencyGraph(
            groups, {k: list(resolve(v)) for k, v in self.inputs.items()},
            {k: self.s.find(v) for k, v in self.outputs.items()}, self.after,
            params={k: (d, list(resolve(v))) for k, (d, v) in self.params.items()},
            statistics={k: self.s.find(v) for k, v in self.statistics.items()},
            blocks=self._resolved_blocks(), follows={k: list(resolve(v)) for k, v in self.follows.items()},
            widths={k: list(resolve(v)) for k, v in self.widths.items()})

    def _resolved_blocks(self) -> dict:
        """{group id: blocks}; a group read in blocks of different counts is frozen."""
        counts = {}
        for gid, ns in self.blocks.items():
            counts.setdefault(self.s.find(gid), set()).update(ns)
        for root, ns in counts.items():
            if len(ns) > 1:
                self.s.freeze([(root, 1)], f"read by layers with {sorted(ns)} blocks (heads or groups)")
        return {root: ns.pop() for root, ns in counts.items() if len(ns) == 1}

    # -- node kinds -------------------------------------------------------------------------------------------
    def _visit(self, node):
        if node.op == "placeholder":
            meta = node.meta.get("tensor_meta")
            if meta is None or not hasattr(meta, "shape") or len(meta.shape) < 2 or not meta.dtype.is_floating_point:
                return None
            return Space(((self.s.new(meta.shape[1], frozen="model input"), 1),), 1)
        if node.op == "output":
            for value in flat_values([self.value.get(a) for a in node.all_input_nodes]):
                if isinstance(value, Space):
                    self.s.freeze(value.segments, "model output")
            return None
        if node.op == "get_attr":
            dims = node_shape(node)
            return Attr(node.target, tuple(range(len(dims)))) if dims is not None else None
        if node.op == "call_module":
            return self._module(node, self.modules[node.target])
        return channel_ops.visit(self, node)

    def _module(self, node, mod):
        if isinstance(mod, nn.Flatten):
            return channel_ops.flatten(self, node, node.args[0], mod.start_dim, mod.end_dim)
        src = self.tensor_input(node)
        rule = rule_for(mod)
        if rule is None:
            if src is None:
                return None
            raise DependencyError(f"module {node.target!r} ({type(mod).__name__}): no channel rule for this layer "
                                  f"type; register one with mp.register_rule (see notebook 06)")
        if rule.kind == "pass":
            return src
        if src is None:
            if rule.kind == "layer" and not rule.input_tensors:  # an embedding: reads indices, writes channels
                out = self._output_group(node.target, rule, mod)
                return Space(((out, 1),), len(node_shape(node)) - 1)
            return None
        axis, src = self._check_axis(node, rule.axis, src)
        reason = rule.refuse(mod) if rule.refuse else None
        if rule.kind == "follower":
            return self._follower(node, mod, rule, src, reason)
        return self._layer(node, node.target, rule, mod, src, axis, reason)

    def _follower(self, node, mod, rule, src, reason):
        others = [a for a in node.all_input_nodes if isinstance(self.value.get(a), Space) and a is not node.args[0]]
        if others:
            raise DependencyError(f"module {node.target!r} ({type(mod).__name__}): reads channels from several "
                                  f"tensors ({node.args[0].name!r} and {others[0].name!r}), which is not followed")
        if reason:
            self.s.freeze(src.segments, f"{type(mod).__name__} {node.target!r}: {reason}")
        _check_tensors(node.target, mod, rule.channel_tensors, self._size(src.segments), "channels")
        out = self.follow(node, node.target, src, statistics=rule.statistics)
        if rule.blocks is not None:
            self._blocks(node, src, rule.blocks(mod))
        meta = node.meta.get("tensor_meta")
        if hasattr(meta, "shape") or not isinstance(meta, tuple | list):
            return out
        return (out,) + (None,) * (len(meta) - 1)  # attention returns (output, weights)

    def _blocks(self, node, src, n: int) -> None:
        """The channels of `src` come in `n` equal blocks (heads, groups), each keeping as many channels."""
        for gid, _ in src.segments:
            self.blocks.setdefault(gid, set()).add(n)

    def _size(self, segments) -> int:
        return sum(self.s.groups[self.s.find(g)].size * rep for g, rep in segments)

    def _layer(self, node, name, rule, mod, src, axis, reason):
        if not reason:  # a grouped convolution reads in_channels / groups per filter (and is frozen)
            _check_tensors(name, mod, rule.input_tensors, self._size(src.segments), "input features")
        if name in self.inputs:  # called again: the same columns read the same channels
            self.tie(node, [self.inputs[name], src.segments])
        else:
            self.inputs[name] = src.segments
            for gid, _ in src.segments:
                self.s.groups[self.s.find(gid)].consumers.append(name)
        if reason:
            self.s.freeze(src.segments, f"{reason} {name!r}")
        out = self._output_group(name, rule, mod, frozen=f"{reason} {name!r}" if reason else None)
        return Space(((out, 1),), axis)

    def _output_group(self, name, rule, mod, frozen=None) -> int:
        if name in self.outputs:
            return self.outputs[name]
        found = [(t, d) for t, d in ((getattr(mod, k, None), d) for k, d in rule.channel_tensors.items())
                 if isinstance(t, torch.Tensor)]
        if not found:
            raise DependencyError(f"module {name!r} ({type(mod).__name__}): its rule names channel tensors "
                                  f"{list(rule.channel_tensors)}, which the module does not have")
        tensor, dim = found[0]
        _check_tensors(name, mod, rule.channel_tensors, tensor.shape[dim], "output channels")
        out = self.s.new(tensor.shape[dim], frozen=frozen)
        self.s.groups[out].producers.append(name)
        self.outputs[name] = out
        return out

    def is_frozen(self, space: Space) -> bool:
        return all(self.s.groups[self.s.find(g)].frozen for g, _ in space.segments)

    def realign(self, space: Space, at: int, axis: int, size: int) -> Space | None:
        """`space` (whose channels sit at output axis `at`) seen on `axis`: itself, or, when none of its channels
        can be removed anyway (the model input), a frozen group of `size` channels there; None otherwise."""
        if at == axis:
            return space
        if not self.is_frozen(space):
            return None
        reason = self.s.groups[self.s.find(space.segments[0][0])].frozen
        return Space(((self.s.new(size, frozen=reason), 1),), axis)

    def _check_axis(self, node, rule_axis, src: Space) -> int:
        ndim = len(node_shape(node.args[0]) or node_shape(node))
        axis = positive_axis(rule_axis, ndim, f"module {node.target!r}")
        if src.axis != axis and self.is_frozen(src):  # e.g. the model input: no channel of it is ever removed
            return axis, self.realign(src, src.axis, axis, node_shape(node.args[0])[axis])
        if src.axis != axis:
            raise DependencyError(f"module {node.target!r}: reads channels on axis {axis}, but its input holds "
                                  f"them on axis {src.axis} (after a permute or reshape)")
        return axis, src

    # -- helpers the operations in channel_ops use -------------------------------------------------------------
    def tensor_input(self, node):
        for a in node.args:
            if isinstance(a, fx.Node):
                value = self.value.get(a)
                if isinstance(value, Attr):
                    raise DependencyError(f"{where(node)}: reads parameter {value.name!r} directly; minprune "
                                          f"cannot follow its channels here")
                return value if isinstance(value, Space) else None
        return None

    def follow(self, node, name, src: Space, *, statistics=False, module=True) -> Space:
        """`name` is indexed by the channels of `src` (a BatchNorm, a depthwise conv, a layer_norm call)."""
        if any(rep != 1 for _, rep in src.segments):
            raise DependencyError(f"{where(node)}: expects an unflattened channel input, got segments "
                                  f"{list(src.segments)}")
        if len(src.segments) > 1:  # after a concatenation: indexed by several groups side by side
            if statistics or not module:
                raise DependencyError(f"{where(node)}: normalises over concatenated channels, which is not followed")
            if name in self.follows:
                self.tie(node, [self.follows[name], src.segments])
            self.follows.setdefault(name, src.segments)
            return src
        gid = src.segments[0][0]
        if statistics:
            self.statistics[name] = gid
        if not module:
            return src
        if name in self.outputs:
            self.s.union(self.outputs[name], gid, where(node))
        else:
            self.s.groups[self.s.find(gid)].followers.append(name)
            self.outputs[name] = gid
        parent = node.args[0]
        if parent.op == "call_module" and parent.target in self.outputs and parent.target not in self.after:
            self.after[parent.target] = name
        return src

    def follow_param(self, node, attr: Attr, tensor_dim: int, segments) -> None:
        """Parameter `attr.name` loses the entries of `segments` along the dim it holds at `tensor_dim`."""
        dim = attr.dims[tensor_dim]
        if dim is None:
            raise DependencyError(f"{where(node)}: cannot follow the channels of parameter {attr.name!r}")
        if attr.name in self.params:
            old_dim, old = self.params[attr.name]
            if old_dim != dim:
                raise DependencyError(f"{where(node)}: parameter {attr.name!r} meets channels on two dims")
            self.tie(node, [old, segments])
        else:
            self.params[attr.name] = (dim, tuple(segments))
            for gid, _ in segments:
                self.s.groups[self.s.find(gid)].params.append(attr.name)

    def tie(self, node, layouts) -> None:
        """The channels of every layout in `layouts` are the same channels (node: an fx node or a description)."""
        here = node if isinstance(node, str) else where(node)
        first = layouts[0]
        for other in layouts[1:]:
            if len(other) != len(first) or any(r1 != r2 for (_, r1), (_, r2) in zip(first, other)):
                raise DependencyError(f"{here}: cannot tie channels of differently laid out tensors")
            for (g1, _), (g2, _) in zip(first, other):
                self.s.union(g1, g2, here)


def _check_tensors(name: str, mod, tensors: dict, size: int, what: str) -> None:
    """Each tensor a rule names must hold `size` entries along its dim (else the rule does not fit the layer)."""
    for key, dim in tensors.items():
        t = getattr(mod, key, None)
        if isinstance(t, torch.Tensor) and not (-t.dim() <= dim < t.dim() and t.shape[dim] == size):
            raise DependencyError(f"module {name!r} ({type(mod).__name__}): its rule says dim {dim} of {key!r} holds "
                                  f"the {size} {what}, but {key!r} has shape {tuple(t.shape)}")


def trace_groups(model: nn.Module, example: torch.Tensor | None = None) -> DependencyGraph:
    """Trace `model` and return its coupled channel groups (the model is not changed).

    example: one input batch; defaults to zeros shaped (1, *model.input_shape), in the model's float dtype (a
    float16 or bfloat16 model is traced on an example of its dtype). Only shapes are read, so a model on the meta
    device can be traced. See notebooks/06_structured_pruning.ipynb.
    """
    check_model(model)
    if example is None:
        if not hasattr(model, "input_shape"):
            raise ValueError("pass example=torch.zeros(1, C, H, W); the model does not record input_shape")
        example = example_input(model).to(float_dtype(model))  # on the model's device, in its dtype
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"example must be a tensor (one input batch), got {type(example).__name__}")
    was_training = model.training
    model.eval()
    try:
        graph = _Tracer(model, example).run()
    finally:
        model.train(was_training)
    graph.example = example
    return graph
