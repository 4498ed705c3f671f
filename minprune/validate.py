"""The argument checks every chapter repeats, written once: each raises an error that names the argument.

`positive_int(batch_size, "batch_size")` returns the value or raises "batch_size must be a positive int, got 0";
`non_negative_int(epochs, "epochs")` allows 0 too. A bool is not a count (`True` is an int in Python), so it is
refused. `finite_number(lr, "lr", low=0, low_open=True)` refuses NaN, inf, bools, strings and values out of
range; `callable_arg`, `model_arg` and `float_model` check what a function is handed before it changes anything.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

FLOAT_DTYPES = (torch.float32, torch.float64)


def positive_int(value, name: str, *, none_ok: bool = False):
    """`value` when it is an int >= 1 (or None, with none_ok=True); else ValueError naming `name`."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "a positive int or None" if none_ok else "a positive int"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def non_negative_int(value, name: str):
    """`value` when it is an int >= 0; else ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


def _interval(low, high, low_open: bool, high_open: bool) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    return f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"


def finite_number(value, name: str, *, low=None, high=None, low_open: bool = False, high_open: bool = False,
                  none_ok: bool = False) -> float | None:
    """`value` as a float when it is a finite real number in the interval; else ValueError naming `name`.

    NaN and inf are refused (every comparison with NaN is False, so a plain range check lets it through), and so
    are bools (`True` is not a learning rate) and strings. low/high bound the interval, closed unless *_open.
    """
    if value is None and none_ok:
        return None
    interval = _interval(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r} (NaN and inf are refused)")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return value


def callable_arg(value, name: str, *, none_ok: bool = False):
    """`value` when it is callable (or None, with none_ok=True); else TypeError naming `name`."""
    if (value is None and none_ok) or callable(value):
        return value
    raise TypeError(f"{name} must be a function (callable), got {type(value).__name__} {value!r:.60}")


def model_arg(model, name: str = "model") -> nn.Module:
    """`model` when it is an nn.Module whose tensors are real (not on the meta device); else TypeError/ValueError."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    for key, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_meta:
            raise ValueError(f"{name} has tensors on the meta device ({key!r}): they hold no values; "
                             f"load real weights first (e.g. model.to_empty(device='cpu') and a state_dict)")
    return model


def float_model(model, what: str, name: str = "model") -> nn.Module:
    """`model_arg(model)` whose floating-point tensors are all float32 or float64; else ValueError naming one.

    For the functions that train, score or quantize: float16 and bfloat16 lose the precision they depend on
    (gradients, sums of squares, scales), so they are refused with what to do instead of failing inside torch.
    """
    model_arg(model, name)
    for key, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and t.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{what} works on float32 or float64 models; {name} has a {t.dtype} tensor "
                             f"({key!r}): call model.float() first (and .to(dtype) afterwards)")
    return model


def check_flag(value, name: str) -> bool:
    """`value` when it is True or False; else TypeError naming `name` (a string 'no' is not False)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r:.60}")
    return value


def input_shape_arg(input_shape, name: str = "input_shape") -> tuple[int, ...]:
    """`input_shape` as a tuple of positive ints (one example's shape, e.g. (1, 28, 28)); else ValueError."""
    ok = isinstance(input_shape, (tuple, list, torch.Size)) and len(input_shape) > 0 and all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in input_shape)
    if not ok:
        raise ValueError(f"{name} must be a tuple of positive ints, one example's shape such as (1, 28, 28), "
                         f"got {input_shape!r:.60}")
    return tuple(input_shape)


def float_dtype(model) -> torch.dtype:
    """The dtype of `model`'s first floating-point parameter or buffer (float32 if it has none): what its inputs
    must be, so that a float16 or bfloat16 model is timed and measured on inputs of its own dtype."""
    if isinstance(model, nn.Module):
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                return t.dtype
    return torch.float32
