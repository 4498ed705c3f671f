"""Check a learner's function against the library's, with friendly feedback and no solution revealed.

Used by the exercise check cells of the notebooks and by the tests alike. A check prints one line when the
learner's answer matches; otherwise it raises `CheckFailed` whose message says where the first difference is,
the expected and the actual value there, and an optional hint. Works on numbers, tensors, bool masks
(True = keep), and dicts, lists and tuples of them. See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import nn


class CheckFailed(AssertionError):
    """A learner's answer differs from the library's."""


def _short(value, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def _tensor_difference(expected: torch.Tensor, got, where: str, atol: float, rtol: float):
    """None when the tensors match, else (what differs and where, expected tensor, got)."""
    if isinstance(got, (int, float)) and not isinstance(got, bool) and expected.dim() == 0:
        got = torch.tensor(got)  # a plain number is accepted where the library returns a 0-dim tensor
    if not isinstance(got, torch.Tensor):
        return f"{where}: should be a tensor, got {type(got).__name__}", expected, got
    if got.shape != expected.shape:
        return f"{where}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}", expected, got
    e, g = expected.detach().cpu(), got.detach().cpu()
    if e.dtype == torch.bool and g.dtype != torch.bool:
        return f"{where}: should be a bool mask (True = keep), got dtype {g.dtype}", expected, got
    if e.dtype == torch.bool:
        wrong = g != e
    else:
        wrong = ~torch.isclose(g.double(), e.double(), rtol=rtol, atol=atol, equal_nan=True)
    n_wrong = int(wrong.sum())
    if n_wrong == 0:
        return None
    first = tuple(int(i) for i in torch.nonzero(wrong)[0]) if e.dim() else ()
    text = (f"{where}: {n_wrong:,} of {e.numel():,} entries differ, the first at index {first}: "
            f"expected {e[first].item()!r}, got {g[first].item()!r}")
    return text, expected, got


def difference(expected, got, where: str = "result", *, atol: float = 1e-6, rtol: float = 1e-5):
    """None when `got` matches `expected`, else (where and how they differ, expected value, actual value there).

    Numbers and tensors match within atol + rtol * |expected|; bool masks, ints and strings must be equal.
    Dicts must have the same keys, lists and tuples the same length; the first mismatch is reported.
    """
    if isinstance(expected, torch.Tensor):
        return _tensor_difference(expected, got, where, atol, rtol)
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{where}: should be a dict, got {type(got).__name__}", expected, got
        missing, extra = [k for k in expected if k not in got], [k for k in got if k not in expected]
        if missing or extra:
            return f"{where}: wrong keys, missing {missing}, unexpected {extra}", list(expected), list(got)
        for key in expected:
            found = difference(expected[key], got[key], f"{where}[{key!r}]", atol=atol, rtol=rtol)
            if found:
                return found
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return f"{where}: should be a {type(expected).__name__}, got {type(got).__name__}", expected, got
        if len(got) != len(expected):
            return f"{where}: {len(got)} items, expected {len(expected)}", expected, got
        for i, (e, g) in enumerate(zip(expected, got)):
            found = difference(e, g, f"{where}[{i}]", atol=atol, rtol=rtol)
            if found:
                return found
        return None
    if isinstance(got, torch.Tensor) and got.numel() == 1 and not isinstance(expected, (str, bytes)):
        got = got.item()  # a one-element tensor is accepted where a number is expected
    is_number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if isinstance(expected, float) and is_number(got):
        both_nan = math.isnan(expected) and math.isnan(got)
        if both_nan or math.isclose(got, expected, rel_tol=rtol, abs_tol=atol):
            return None
        return where, expected, got
    try:
        if bool(got == expected):
            return None
    except (TypeError, ValueError, RuntimeError):  # e.g. a tensor compared with a string
        pass
    return where, expected, got


def _snapshot(value):
    """A copy of what a function could change in place: tensors and the weights of modules."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, nn.Module):
        return {k: v.detach().clone() for k, v in value.state_dict().items()}
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_snapshot(v) for v in value]
    return None


def _changed(before, value) -> bool:
    if isinstance(value, torch.Tensor):
        return not torch.equal(before, value.detach())
    if isinstance(value, nn.Module):
        return any(not torch.equal(before[k], v) for k, v in value.state_dict().items() if k in before)
    if isinstance(value, dict):
        return any(_changed(before[k], v) for k, v in value.items() if k in before)
    if isinstance(value, (list, tuple)):
        return any(_changed(b, v) for b, v in zip(before, value))
    return False


def _message(verdict: str, expected, got, hint: str) -> str:
    message = f"{verdict}\n  expected: {_short(expected)}\n  got:      {_short(got)}"
    return message + (f"\n  hint: {hint}" if hint else "")


@dataclass(frozen=True)
class _Criterion:
    """How close counts as the same, and what to tell the learner when it is not."""

    atol: float = 1e-6
    rtol: float = 1e-5
    hint: str = ""


def _check_call(mine, reference, args, kwargs, criterion: _Criterion, case: str = "") -> None:
    """Raise CheckFailed unless mine(*args, **kwargs) matches reference(*args, **kwargs)."""
    name = getattr(mine, "__name__", "your function")
    expected = reference(*args, **kwargs)  # first: a learner's in-place change cannot alter the expected value
    before = _snapshot((args, kwargs))
    try:
        got = mine(*args, **kwargs)
    except NotImplementedError as exc:
        raise CheckFailed(f"✗ {name} is not written yet ({exc})") from None
    if _changed(before, (args, kwargs)):
        raise CheckFailed(f"✗ {name} changed its input (a tensor or a model's weights) in place{case}; compute on"
                          " a copy, e.g. W.detach().abs() instead of W.abs_()")
    if got is None and expected is not None:
        raise CheckFailed(f"✗ {name} returned None{case}: is a `return` missing?")
    found = difference(expected, got, atol=criterion.atol, rtol=criterion.rtol)
    if found:
        text, e, g = found
        raise CheckFailed(_message(f"✗ {name} differs from the library{case} in {text}", e, g, criterion.hint))


def same_as(mine, reference, *args, atol: float = 1e-6, rtol: float = 1e-5, hint: str = "", quiet: bool = False,
            **kwargs) -> bool:
    """Call both functions on the same inputs; print a one-line verdict, raise CheckFailed on a mismatch.

    The library's `reference` runs first, so a learner's function that changes its inputs in place cannot
    change the expected value; changing an input tensor or a model's weights fails the check.
    """
    _check_call(mine, reference, args, kwargs, _Criterion(atol, rtol, hint))
    if not quiet:
        print(f"✓ {getattr(mine, '__name__', 'your function')} matches "
              f"{getattr(reference, '__qualname__', 'the library')}")
    return True


def same_on(mine, reference, cases, *, atol: float = 1e-6, rtol: float = 1e-5, hint: str = "") -> bool:
    """Compare on several cases (each a tuple of positional arguments): hand-checkable ones first, then random.

    Prints one verdict line for all cases; on the first mismatch raises CheckFailed naming the case.
    """
    cases, criterion = list(cases), _Criterion(atol, rtol, hint)
    for i, args in enumerate(cases):
        _check_call(mine, reference, tuple(args), {}, criterion, case=f" (case {i + 1} of {len(cases)})")
    print(f"✓ {getattr(mine, '__name__', 'your function')} matches "
          f"{getattr(reference, '__qualname__', 'the library')} on {len(cases)} cases")
    return True


def same_value(got, expected, *, name: str = "your answer", atol: float = 1e-6, rtol: float = 1e-5,
               hint: str = "") -> bool:
    """Check a value the learner computed (not a function) against the expected one; one-line verdict."""
    if got is None or got is Ellipsis:
        raise CheckFailed(f"✗ {name} is not computed yet")
    found = difference(expected, got, name, atol=atol, rtol=rtol)
    if found:
        text, e, g = found
        verdict = f"✗ {name} is not right" + ("" if text == name else f" in {text}")
        raise CheckFailed(_message(verdict, e, g, hint))
    print(f"✓ {name} is right")
    return True


def show_source(obj) -> None:
    """Print the source code of a library object (read it instead of copying it into a notebook)."""
    print(inspect.getsource(obj))
