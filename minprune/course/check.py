"""Check a learner's function against the library's, with friendly feedback and no solution revealed.

Used by the exercise check cells of the notebooks and by the tests alike. A check prints one line when the
learner's answer matches; otherwise it raises `CheckFailed` whose message says where the first difference is,
the expected and the actual value at that one place (never the formula), and a hint. Works on numbers, tensors,
bool masks (True = keep), and dicts, lists and tuples of them. Besides the result, a check fails a function that
has side effects (changes an input in place, leaves `.grad` set or changes `requires_grad`, leaves a model in the
other train/eval mode) or returns a tensor of another dtype, and reports an exception raised inside the learner's
function with its line. The exercises' own cases and hints live in `minprune.course.exercises`.
See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import inspect
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from minprune.course.side_effects import call_effect, snapshot


class CheckFailed(AssertionError):
    """A learner's answer differs from the library's."""


def _short(value, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def _tensor_difference(expected: torch.Tensor, got, where: str, atol: float, rtol: float, dtype_strict: bool = False):
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
    if dtype_strict and g.dtype != e.dtype:
        return f"{where}: dtype {g.dtype}, expected {e.dtype}", expected.dtype, got.dtype
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


def difference(expected, got, where: str = "result", *, atol: float = 1e-6, rtol: float = 1e-5,
               dtype_strict: bool = False):
    """None when `got` matches `expected`, else (where and how they differ, expected value, actual value there).

    Numbers and tensors match within atol + rtol * |expected|; bool masks, ints and strings must be equal.
    Dicts must have the same keys, lists and tuples the same length; the first mismatch is reported.
    With `dtype_strict`, a tensor must also have the expected dtype (float32 where the library gives float32).
    """
    if isinstance(expected, torch.Tensor):
        return _tensor_difference(expected, got, where, atol, rtol, dtype_strict)
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{where}: should be a dict, got {type(got).__name__}", expected, got
        missing, extra = [k for k in expected if k not in got], [k for k in got if k not in expected]
        if missing or extra:
            return f"{where}: wrong keys, missing {missing}, unexpected {extra}", list(expected), list(got)
        for key in expected:
            found = difference(expected[key], got[key], f"{where}[{key!r}]", atol=atol, rtol=rtol,
                               dtype_strict=dtype_strict)
            if found:
                return found
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return f"{where}: should be a {type(expected).__name__}, got {type(got).__name__}", expected, got
        if len(got) != len(expected):
            return f"{where}: {len(got)} items, expected {len(expected)}", expected, got
        for i, (e, g) in enumerate(zip(expected, got)):
            found = difference(e, g, f"{where}[{i}]", atol=atol, rtol=rtol, dtype_strict=dtype_strict)
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


def _message(verdict: str, expected, got, hint: str) -> str:
    message = f"{verdict}\n  expected: {_short(expected)}\n  got:      {_short(got)}"
    return message + (f"\n  hint: {hint}" if hint else "")


Diagnosis = Callable[[tuple, object, object], "str | None"]


@dataclass(frozen=True)
class _Criterion:
    """How close counts as the same, and what to tell the learner when it is not.

    `diagnoses` are functions (case arguments, expected, got) -> a hint or None, tried in order when a case fails;
    `got` is the learner's result, or the exception it raised. The first hint found replaces `hint`.
    """

    atol: float = 1e-6
    rtol: float = 1e-5
    hint: str = ""
    diagnoses: tuple = field(default=())
    dtype_strict: bool = False

    def hint_for(self, args: tuple, expected, got) -> str:
        for diagnose in self.diagnoses:
            try:
                found = diagnose(args, expected, got)
            except Exception:  # noqa: BLE001 - a diagnosis that does not apply says nothing
                found = None
            if found:
                return found
        return self.hint


def _where_raised(mine, exc: BaseException) -> str:
    """' at line N: `code`' of the deepest frame of the learner's own function, or ''."""
    code = getattr(mine, "__code__", None)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if code is not None and f.filename == code.co_filename]
    if not frames:
        return ""
    frame = frames[-1]
    return f" at line {frame.lineno}" + (f": `{frame.line.strip()}`" if frame.line else "")


def _check_call(mine, reference, args, kwargs, criterion: _Criterion, case: str = "") -> None:
    """Raise CheckFailed unless mine(*args, **kwargs) matches reference(*args, **kwargs) without side effects."""
    own = getattr(mine, "__wrapped__", mine)  # the learner's function inside an adapter
    name = getattr(own, "__name__", "your function")
    expected = reference(*args, **kwargs)  # first: a learner's in-place change cannot alter the expected value
    before = ([snapshot(a) for a in args], {k: snapshot(v) for k, v in kwargs.items()})
    try:
        got = mine(*args, **kwargs)
    except NotImplementedError as exc:
        raise CheckFailed(f"✗ {name} is not written yet ({exc})") from None
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - the learner's mistake, reported with its line
        hint = criterion.hint_for(args, expected, exc)
        raise CheckFailed(f"✗ {name} raised {type(exc).__name__}{case}{_where_raised(own, exc)}: {exc}"
                          + (f"\n  hint: {hint}" if hint else "")) from None
    effect = call_effect(before, own, args, kwargs)
    if effect:
        raise CheckFailed(f"✗ {name}{case} {effect}")
    if got is None and expected is not None:
        raise CheckFailed(f"✗ {name} returned None{case}: is a `return` missing?")
    found = difference(expected, got, atol=criterion.atol, rtol=criterion.rtol, dtype_strict=criterion.dtype_strict)
    if found:
        text, e, g = found
        hint = criterion.hint_for(args, expected, got)
        raise CheckFailed(_message(f"✗ {name} differs from the library{case} in {text}", e, g, hint))


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
