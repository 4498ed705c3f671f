"""Reading torch.fx nodes: the shape of a node's output, its arguments, and the name an error gives it.

See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

from torch import fx


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
