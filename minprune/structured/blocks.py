"""Depth pruning: drop whole residual blocks, or whole layers where the shapes allow it.

A residual block with an identity shortcut computes relu(F(x) + x); since x is already non-negative, removing
the block leaves x, so the network still runs (Veit et al. 2016: residual networks behave like ensembles of
shallow paths and survive losing a block). A plain layer unit whose output shape equals its input shape
(e.g. the second conv-BN-ReLU of a VGG stage) can also be replaced by the identity. Fine-tune afterwards.
See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from minprune.attention_blocks import Block
from minprune.devices import example_input
from minprune.layers import set_module
from minprune.validate import float_dtype, model_arg, non_negative_int

UNIT_PARTS = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.Dropout)


def _check_input(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor (an input batch), got {type(x).__name__}")


def _names_arg(names) -> list[str]:
    """`names` as a list of module names: one name or a list/tuple of names; else TypeError."""
    listed = [names] if isinstance(names, str) else list(names) if isinstance(names, (list, tuple)) else None
    if listed is None or not all(isinstance(n, str) for n in listed):
        raise TypeError(f"names must be a block name or a list of names such as ['layers.0'], got {names!r:.60}")
    return listed


def _check_labels(y, x: torch.Tensor) -> None:
    """y: None, or one class index (int64) per example of x."""
    if y is None:
        return
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        kind = f"a {y.dtype} tensor" if isinstance(y, torch.Tensor) else type(y).__name__
        raise TypeError(f"y must be None or an integer tensor of class indices, got {kind}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must hold one class index per example of x: shape ({x.shape[0]},), got {tuple(y.shape)}")


def _is_block(mod: nn.Module) -> bool:
    """A residual block: minprune's BasicBlock or torchvision's BasicBlock / Bottleneck."""
    return hasattr(mod, "conv1") and (hasattr(mod, "shortcut") or hasattr(mod, "downsample"))


def _is_unit(mod: nn.Module) -> bool:
    return isinstance(mod, nn.Sequential) and len(mod) > 0 and all(isinstance(c, UNIT_PARTS) for c in mod)


@torch.no_grad()
def droppable(model: nn.Module, example: torch.Tensor | None = None) -> list[str]:
    """Names of the residual blocks and layer units whose output has the same shape as their input.

    example defaults to zeros shaped (1, *model.input_shape) in the model's dtype (float16 and bfloat16 work).
    See notebooks/06_structured_pruning.ipynb.
    """
    model_arg(model)
    if example is None:
        example = example_input(model)
        if example is None:
            raise ValueError("pass example=torch.zeros(1, C, H, W); the model does not record input_shape")
        example = example.to(float_dtype(model))
    _check_input(example, "example")
    shapes, handles = {}, []
    for name, mod in model.named_modules():
        if name and (_is_block(mod) or _is_unit(mod)):
            hook = lambda m, i, o, name=name: shapes.__setitem__(name, (tuple(i[0].shape), tuple(o.shape)))  # noqa: E731
            handles.append(mod.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [name for name, (shape_in, shape_out) in shapes.items() if shape_in == shape_out]


def _refuse_transformer(model) -> None:
    """ValueError for TinyViT / CharGPT: their blocks go by index through the transformer chapter's drop_blocks."""
    blocks = getattr(model, "blocks", None)
    if isinstance(model, nn.Module) and isinstance(blocks, nn.Sequential) and any(isinstance(b, Block) for b in blocks):
        raise ValueError(f"{type(model).__name__} is a transformer: drop its blocks by index with "
                         f"mp.transformers.depth.drop_blocks(model, [1]) (notebooks/12_transformers.ipynb)")


def drop_blocks(model: nn.Module, names, *, example: torch.Tensor | None = None) -> nn.Module:
    """A copy of `model` with the named blocks / layer units replaced by nn.Identity (`model` is untouched).

    See notebooks/06_structured_pruning.ipynb.
    """
    names = _names_arg(names)
    _refuse_transformer(model)
    allowed = droppable(model, example)
    for name in names:
        if name not in allowed:
            raise ValueError(f"cannot drop {name!r}: it is not a residual block or layer unit that keeps its input "
                             f"shape; droppable: {allowed}")
    new = copy.deepcopy(model)
    for name in names:
        set_module(new, name, nn.Identity())
    return new


@torch.no_grad()
def block_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, float]:
    """Importance of each droppable block: the loss increase on (x, y) when it is removed.

    Without labels y: the relative change of the logits, ||f(x) - f_without(x)|| / ||f(x)||.
    Float16 and bfloat16 models work (x of their dtype). See notebooks/06_structured_pruning.ipynb.
    """
    model_arg(model)
    _check_input(x, "x")
    _check_labels(y, x)
    was_training = model.training
    model.eval()
    try:
        reference = model(x)
        if y is not None and reference.dim() == 2 and not bool(((y >= 0) & (y < reference.shape[1])).all()):
            raise ValueError(f"y must hold class indices in [0, {reference.shape[1]}) (the model's outputs), got "
                             f"values from {int(y.min())} to {int(y.max())}")
        base = F.cross_entropy(reference, y).item() if y is not None else 0.0
        scores = {}
        for name in droppable(model, x[:1]):
            out = drop_blocks(model, name, example=x[:1]).eval()(x)
            if y is not None:
                scores[name] = F.cross_entropy(out, y).item() - base
            else:
                scores[name] = ((out - reference).norm() / reference.norm().clamp_min(1e-12)).item()
    finally:
        model.train(was_training)
    return scores


def prune_blocks(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, n: int = 1) -> nn.Module:
    """Drop the `n` least important droppable blocks (by `block_scores`); returns the shallower copy.

    See notebooks/06_structured_pruning.ipynb.
    """
    non_negative_int(n, "n")  # before the scores are computed
    scores = block_scores(model, x, y)
    if not 0 <= n <= len(scores):
        raise ValueError(f"n must be an int in [0, {len(scores)}] (the droppable blocks), got {n!r}")
    lowest = sorted(scores, key=scores.get)[:n]
    return drop_blocks(model, lowest, example=x[:1])
