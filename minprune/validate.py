"""The argument checks every chapter repeats, written once: each raises a ValueError that names the argument.

`positive_int(batch_size, "batch_size")` returns the value or raises "batch_size must be a positive int, got 0";
`non_negative_int(epochs, "epochs")` allows 0 too. A bool is not a count (`True` is an int in Python), so it is
refused.
"""

from __future__ import annotations


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
