"""Side effects of a learner's function, which a check fails: an input changed in place, `requires_grad` changed or
`.grad` left set on an input tensor or a model's parameter, a model's buffers (BatchNorm statistics) changed, or a
submodule left in the other train/eval mode.

`snapshot(value)` before the call, `call_effect(before, fn, args, kwargs)` after it: the first side effect, in
words that name the argument, or None. Used by `minprune.course.check`.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn


def _tensor_state(t: torch.Tensor) -> tuple:
    grad = t.grad.detach().clone() if t.grad is not None else None
    return t.detach().clone(), t.requires_grad, grad


def snapshot(value):
    """What a function could change as a side effect: values, requires_grad and .grad of tensors and of a
    module's parameters, a module's buffers, and the train/eval mode of every submodule."""
    if isinstance(value, torch.Tensor):
        return _tensor_state(value)
    if isinstance(value, nn.Module):
        return {"params": {k: _tensor_state(v) for k, v in value.named_parameters()},
                "buffers": {k: v.detach().clone() for k, v in value.named_buffers()},
                "modes": {k: m.training for k, m in value.named_modules()}}
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [snapshot(v) for v in value]
    return None


def _tensor_effect(before: tuple, t: torch.Tensor, what: str) -> str | None:
    data, requires_grad, grad = before
    if data.shape != t.shape or not torch.equal(data, t.detach()):
        return f"changed its input in place ({what}); compute on a copy, e.g. W.detach().abs() instead of W.abs_()"
    if t.requires_grad != requires_grad:
        return f"changed requires_grad of {what} (from {requires_grad} to {t.requires_grad})"
    if (grad is None) != (t.grad is None) or (grad is not None and not torch.equal(grad, t.grad)):
        return (f"left .grad {'set' if grad is None else 'changed'} on {what}; use torch.autograd.grad(loss, "
                "params), or work on a copy of the model, so that the caller's gradients stay as they were")
    return None


def _module_effect(before: dict, module: nn.Module) -> str | None:
    for k, p in module.named_parameters():
        if k in before["params"]:
            found = _tensor_effect(before["params"][k], p, f"the model's parameter {k!r}")
            if found:
                return found
    for k, b in module.named_buffers():
        if k in before["buffers"] and not torch.equal(before["buffers"][k], b):
            return f"changed the model's buffer {k!r} (BatchNorm statistics?): run the model in eval mode"
    for k, m in module.named_modules():
        if k in before["modes"] and m.training != before["modes"][k]:
            was = "train" if before["modes"][k] else "eval"
            return (f"left the model in {'train' if m.training else 'eval'} mode (it was in {was} mode); "
                    "remember model.training and restore it with model.train(was_training)")
    return None


def _side_effect(before, value, what: str = "an input tensor") -> str | None:
    """What `value` changed since `before` (a snapshot), in words, or None; `what` names the value."""
    if isinstance(value, torch.Tensor):
        return _tensor_effect(before, value, what)
    if isinstance(value, nn.Module):
        return _module_effect(before, value)
    inner = f"a tensor inside {what}"
    if isinstance(value, dict):
        return next((f for k, v in value.items() if k in before and (f := _side_effect(before[k], v, inner))), None)
    if isinstance(value, (list, tuple)):
        return next((f for b, v in zip(before, value) if (f := _side_effect(b, v, inner))), None)
    return None


def _argument_labels(fn, n: int) -> list[str]:
    """'argument W', ... for the first n positional parameters of fn (by position when they have no names)."""
    try:
        names = [p.name for p in inspect.signature(fn).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        names = []
    return [f"argument {names[i]!r}" if i < len(names) else f"argument {i + 1}" for i in range(n)]


def call_effect(before: tuple, fn, args: tuple, kwargs: dict) -> str | None:
    """The first side effect of a call on its positional and keyword arguments, naming the argument."""
    args_before, kwargs_before = before
    for b, value, label in zip(args_before, args, _argument_labels(fn, len(args))):
        if found := _side_effect(b, value, label):
            return found
    return next((f for k, v in kwargs.items() if (f := _side_effect(kwargs_before[k], v, f"argument {k!r}"))), None)
