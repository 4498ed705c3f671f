"""torch.fx for channel tracing: the tracer (layers with a channel rule stay one call), and reading its nodes: the
shape of a node's output, its arguments, and the name an error gives it.

See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

from torch import fx, nn

from minprune.structured.channel_groups import DependencyError
from minprune.structured.channel_rules import has_own_rule


def where(node) -> str:
    """'module 'a.b'' or 'node 'add_3' (call_function add) in module 'a.b' (Block)'': what an error names."""
    if node.op == "call_module":
        return f"module {node.target!r}"
    text = f"node {node.name!r} ({node.op} {getattr(node.target, '__name__', node.target)})"
    stack = node.meta.get("nn_module_stack")
    if stack:
        name, cls = list(stack.values())[-1]
        text += f" in module {name!r} ({getattr(cls, '__name__', cls)})"
    return text


def flat_values(values):
    """The leaves of nested tuples / lists."""
    for v in values:
        if isinstance(v, tuple | list):
            yield from flat_values(v)
        else:
            yield v


def node_shape(node):
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def node_arg(node, i, name, default=None):
    return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)


class ChannelTracer(fx.Tracer):
    """torch.fx tracer that keeps every layer type with a channel rule as one call."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return has_own_rule(m) or super().is_leaf_module(m, qualname)


def trace_module(model: nn.Module) -> fx.GraphModule:
    try:
        graph = ChannelTracer().trace(model)
    except Exception as exc:
        raise DependencyError(f"torch.fx could not trace {type(model).__name__}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return fx.GraphModule(model, graph, type(model).__name__)


def register_hint(node) -> str:
    """Inside a layer of the user's own: say how to register it."""
    stack = node.meta.get("nn_module_stack") or {}
    cls = list(stack.values())[-1][1] if stack else None
    if not isinstance(cls, type) or cls.__module__.startswith(("torch.", "torchvision.")):
        return ""
    return f"; to prune through {cls.__name__}, describe it with mp.register_rule({cls.__name__}, mp.ChannelRule(...))"
