"""How the functions and tensor methods met in `forward` move channels: one small handler per operation.

Element-wise operations keep the channels (binary ones tie their operands' channels and let a broadcast parameter
lose the same entries); shape operations move the channel axis (`channel_axes.py`); a concatenation along the
channels places its inputs side by side, along another axis it ties them; `layer_norm` follows the channels and
normalises over them. Anything else is refused, naming the node and the operation.
See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx
from torchvision.ops import stochastic_depth

from minprune.structured.channel_axes import (
    Attr,
    Space,
    attr_indexed,
    attr_reshaped,
    flatten_space,
    indexed_axis,
    permuted_axis,
    positive_axis,
    reduced_axis,
    reshape_space,
    swapped_axis,
)
from minprune.structured.channel_groups import DependencyError
from minprune.structured.fx_nodes import flat_values, node_arg, node_shape, register_hint, where

UNARY = {torch.relu, F.relu, F.relu6, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.gelu, F.silu, F.mish,
         F.hardsigmoid, F.hardswish, F.hardtanh, F.leaky_relu, F.elu, F.selu, F.softplus, F.dropout, F.dropout1d,
         F.dropout2d, F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d,
         F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.interpolate, torch.abs, torch.exp,
         torch.sqrt, torch.clamp, torch.neg, operator.neg,
         stochastic_depth}  # torchvision's StochasticDepth: the identity in eval, per-sample noise in training
UNARY_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous", "clone", "detach", "float",
                 "double", "half", "to", "type_as", "clamp", "clamp_", "clamp_min", "clamp_max", "abs", "exp", "sqrt",
                 "neg", "pow", "square", "hardtanh_", "requires_grad_"}
BINARY = {operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul, operator.truediv,
          operator.itruediv, torch.add, torch.sub, torch.mul, torch.div}
BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
REDUCTIONS = {"mean", "sum", "amax", "amin", "std", "var"}
NON_TENSOR_METHODS = {"size", "dim", "numel", "nelement", "element_size", "is_contiguous", "get_device"}


def visit(t, node):
    """The channel value of a call_function / call_method node (t: the tracer)."""
    target = node.target
    method = target if node.op == "call_method" else None
    if method in NON_TENSOR_METHODS or target is getattr:
        return None
    if target is operator.getitem:
        return _getitem(t, node)
    values = [t.value.get(a) for a in node.all_input_nodes]
    if not any(isinstance(v, Space | Attr) for v in flat_values(values)):
        return None  # shapes, constants and tensors that carry no channel group
    handler = _handler(target, method)
    if handler is None:
        raise DependencyError(f"cannot follow channels through {where(node)}; minprune follows the layers of "
                              f"mp.registered_rules(), element-wise operations, pooling, flatten/reshape/permute, "
                              f"indexing, add/mul and concatenation{register_hint(node)}")
    return handler(t, node)


def _handler(target, method):
    if method is not None:
        if method in _METHODS:
            return _METHODS[method]
        return _unary if method in UNARY_METHODS else _broadcast if method in BINARY_METHODS else \
            _reduction if method in REDUCTIONS else None
    if target in _FUNCTIONS:
        return _FUNCTIONS[target]
    return _unary if target in UNARY else _broadcast if target in BINARY else \
        _reduction if getattr(target, "__name__", None) in REDUCTIONS else None


def _src(t, node):
    value = t.value.get(node.args[0]) if isinstance(node.args[0], fx.Node) else None
    if isinstance(value, Space | Attr):
        return value
    raise DependencyError(f"{where(node)}: cannot follow channels of an operand computed in forward from a tensor "
                          f"minprune does not follow")


def _unary(t, node):
    """An element-wise operation of one tensor: every channel stays where it is."""
    value = _src(t, node)
    others = [a for a in node.all_input_nodes[1:] if isinstance(t.value.get(a), Space | Attr)]
    if others:
        raise DependencyError(f"{where(node)}: takes a second tensor with channels ({others[0].name!r})")
    return value


def _broadcast(t, node):
    """Element-wise op with broadcasting: tie the operands' channels; broadcast parameters lose the same entries."""
    out = node_shape(node)
    operands = [a for a in node.args if isinstance(a, fx.Node)]
    spaces = [(a, t.value[a]) for a in operands if isinstance(t.value.get(a), Space)]
    if not spaces:
        attrs = [t.value[a] for a in operands if isinstance(t.value.get(a), Attr)]
        if len(attrs) == 1 and len(operands) == 1:
            return attrs[0]  # a parameter times a constant: still that parameter's layout
        raise DependencyError(f"{where(node)}: combines parameters in forward in a way minprune does not follow")
    at = {a: space.axis + len(out) - len(node_shape(a)) for a, space in spaces}
    wide = [(a, sp) for a, sp in spaces if node_shape(a)[sp.axis] != 1 or out[at[a]] == 1]
    spaces = wide or spaces  # an operand with one channel broadcast over the others (a spatial map) ties nothing
    axes = {at[a] for a, sp in spaces if not t.is_frozen(sp)} or {at[spaces[0][0]]}
    if len(axes) != 1:
        raise DependencyError(f"{where(node)}: its operands hold channels on different axes")
    axis = axes.pop()
    layouts = [t.realign(sp, at[a], axis, out[axis]) for a, sp in spaces]
    if any(layout is None for layout in layouts):
        raise DependencyError(f"{where(node)}: its operands hold channels on different axes")
    segments = layouts[0].segments
    t.tie(node, [layout.segments for layout in layouts])
    for a in operands:
        value, dims = t.value.get(a), node_shape(a)
        if isinstance(value, Space) or dims is None:
            continue
        k = axis - (len(out) - len(dims))
        if k < 0 or dims[k] == 1:
            continue  # broadcast along the channels: nothing to prune
        if not isinstance(value, Attr):
            raise DependencyError(f"{where(node)}: operand {a.name!r} has one entry per channel but minprune cannot "
                                  f"follow where it comes from")
        t.follow_param(node, value, k, segments)
    return Space(segments, axis)


def _reduction(t, node):
    src = _src(t, node)
    if isinstance(src, Attr):
        raise DependencyError(f"{where(node)}: reduces parameter {src.name!r}, which minprune does not follow")
    dims, keepdim = node_arg(node, 1, "dim"), bool(node_arg(node, 2, "keepdim", False))
    return Space(src.segments, reduced_axis(src.axis, len(node_shape(node.args[0])), dims, keepdim, where(node)))


def _reshape(t, node):
    src, before, after = _src(t, node), node_shape(node.args[0]), node_shape(node)
    if isinstance(src, Attr):
        return attr_reshaped(src, before, after, where(node))
    space = reshape_space(src, before, after, where(node))
    sizes = node.args[1:] if node.op == "call_method" else node.args[1:2]
    sizes = sizes[0] if len(sizes) == 1 and isinstance(sizes[0], list | tuple) else sizes
    if node.target in ("view", "reshape", torch.reshape) and space.axis < len(sizes):
        fixed = sizes[space.axis]
        if isinstance(fixed, int) and fixed != -1:  # a width read from the module (self.hidden_dim)
            _width_attribute(t, node, fixed, space)
    return space


def _width_attribute(t, node, width: int, space: Space) -> None:
    """A reshape to a width the module stores as an int attribute: that attribute is updated with the channels;
    a width the tracer cannot trace to exactly one attribute freezes the channels."""
    stack = node.meta.get("nn_module_stack") or {}
    owner_name = list(stack.values())[-1][0] if stack else ""
    owner = t.model.get_submodule(owner_name)
    names = [k for k, v in vars(owner).items() if type(v) is int and v == width and not k.startswith("_")]
    if len(names) != 1:
        t.s.freeze(space.segments, f"{where(node)} reshapes to a fixed width {width}")
        return
    key = f"{owner_name}.{names[0]}" if owner_name else names[0]
    if key in t.widths:
        t.tie(node, [t.widths[key], space.segments])
    t.widths.setdefault(key, space.segments)


def _expand(t, node):
    src, before, after = _src(t, node), node_shape(node.args[0]), node_shape(node)
    new = len(after) - len(before)
    if isinstance(src, Attr):
        return Attr(src.name, (None,) * new + src.dims)
    return Space(src.segments, src.axis + new)


def flatten(t, node, arg, start=0, end=-1):
    src = t.value.get(arg)
    if src is None:
        return None
    if isinstance(src, Attr):
        return attr_reshaped(src, node_shape(arg), node_shape(node), where(node))
    return flatten_space(src, node_shape(arg), start, end, where(node))


def _flatten(t, node):
    return flatten(t, node, node.args[0], node_arg(node, 1, "start_dim", 0), node_arg(node, 2, "end_dim", -1))


def _permute(t, node):
    src = _src(t, node)
    dims = node.args[1:] if node.op == "call_method" else (node_arg(node, 1, "dims"),)
    dims = dims[0] if len(dims) == 1 and isinstance(dims[0], list | tuple) else dims
    if isinstance(src, Attr):
        return Attr(src.name, tuple(src.dims[d] for d in dims))
    return Space(src.segments, permuted_axis(src.axis, dims, where(node)))


def _transpose(t, node):
    src = _src(t, node)
    i, j = node_arg(node, 1, "dim0"), node_arg(node, 2, "dim1")
    ndim = len(node_shape(node))
    if isinstance(src, Attr):
        dims = list(src.dims)
        i, j = positive_axis(i, ndim, where(node)), positive_axis(j, ndim, where(node))
        dims[i], dims[j] = dims[j], dims[i]
        return Attr(src.name, tuple(dims))
    return Space(src.segments, swapped_axis(src.axis, ndim, i, j, where(node)))


def _getitem(t, node):
    src, index = t.value.get(node.args[0]), node.args[1]
    if isinstance(src, tuple | list):
        return src[index] if isinstance(index, int) and index < len(src) else None
    if src is None:
        return None
    if isinstance(src, Attr):
        return attr_indexed(src, index, where(node))
    return Space(src.segments, indexed_axis(src.axis, len(node_shape(node.args[0])), index, where(node)))


def _concat(t, node):
    tensors, out = node_arg(node, 0, "tensors"), node_shape(node)
    dim = positive_axis(node_arg(node, 1, "dim", 0), len(out), where(node))
    values = [t.value.get(a) if isinstance(a, fx.Node) else None for a in tensors]
    spaces = [v for v in values if isinstance(v, Space)]
    if not spaces or any(v is None for v in values):
        raise DependencyError(f"{where(node)}: cannot follow the channels of every concatenated input")
    if any(s.axis != spaces[0].axis for s in spaces):
        raise DependencyError(f"{where(node)}: concatenates tensors that hold channels on different axes")
    axis = spaces[0].axis
    if dim == axis:
        if len(spaces) != len(values):
            raise DependencyError(f"{where(node)}: concatenates a parameter along the channels")
        return Space(tuple(seg for s in spaces for seg in s.segments), axis)
    t.tie(node, [s.segments for s in spaces])
    for value in values:
        if isinstance(value, Attr):
            t.follow_param(node, value, axis, spaces[0].segments)
    return Space(spaces[0].segments, axis)


def _softmax(t, node):
    src = _src(t, node)
    dim = node_arg(node, 1, "dim")
    if isinstance(src, Space) and positive_axis(dim, len(node_shape(node)), where(node)) == src.axis:
        raise DependencyError(f"{where(node)}: softmax over the channel axis mixes the channels")
    return src


def _layer_norm(t, node):
    """F.layer_norm over the channel axis (the last): a follower that normalises over its channels."""
    src = _src(t, node)
    normalized = node_arg(node, 1, "normalized_shape")
    ndim = len(node_shape(node))
    if isinstance(src, Attr) or len(normalized) != 1 or src.axis != ndim - 1:
        raise DependencyError(f"{where(node)}: layer_norm over {tuple(normalized)} is followed only over the "
                              f"channel axis, as the last dim")
    t.follow(node, node.name, src, statistics=True, module=False)
    _follow_args(t, node, src, ((2, "weight"), (3, "bias")))
    return src


def _follow_args(t, node, src: Space, args) -> None:
    """The per-channel parameters passed as arguments `args` ((position, keyword), ...) lose the pruned entries."""
    for i, key in args:
        w = node_arg(node, i, key)
        if isinstance(w, fx.Node) and isinstance(t.value.get(w), Attr):
            t.follow_param(node, t.value[w], 0, src.segments)


def _batch_norm(t, node):
    """F.batch_norm (channels on axis 1): its statistics and affine tensors lose the pruned entries."""
    src = _src(t, node)
    if isinstance(src, Attr) or src.axis != 1:
        raise DependencyError(f"{where(node)}: batch_norm is followed only with the channels on axis 1")
    _follow_args(t, node, src, ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias")))
    return src


def _pad(t, node):
    src = _src(t, node)
    n_padded = len(node_arg(node, 1, "pad")) // 2
    if isinstance(src, Space) and src.axis >= len(node_shape(node)) - n_padded:
        raise DependencyError(f"{where(node)}: pads the channel axis")
    return src


_FUNCTIONS = {torch.flatten: _flatten, torch.reshape: _reshape, torch.permute: _permute, torch.transpose: _transpose,
              torch.swapaxes: _transpose, torch.cat: _concat, torch.concat: _concat, torch.concatenate: _concat,
              torch.unsqueeze: _reshape, torch.squeeze: _reshape, F.softmax: _softmax, torch.softmax: _softmax,
              F.log_softmax: _softmax, F.layer_norm: _layer_norm, F.batch_norm: _batch_norm, F.pad: _pad}
_METHODS = {"flatten": _flatten, "view": _reshape, "reshape": _reshape, "unsqueeze": _reshape, "squeeze": _reshape,
            "expand": _expand, "expand_as": _expand, "permute": _permute, "transpose": _transpose,
            "swapaxes": _transpose, "softmax": _softmax, "log_softmax": _softmax}

