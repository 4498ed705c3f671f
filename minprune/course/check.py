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
from torch import nn


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


def _tensor_state(t: torch.Tensor) -> tuple:
    grad = t.grad.detach().clone() if t.grad is not None else None
    return t.detach().clone(), t.requires_grad, grad


def _snapshot(value):
    """What a function could change as a side effect: values, requires_grad and .grad of tensors and of a
    module's parameters, a module's buffers, and the train/eval mode of every submodule."""
    if isinstance(value, torch.Tensor):
        return _tensor_state(value)
    if isinstance(value, nn.Module):
        return {"params": {k: _tensor_state(v) for k, v in value.named_parameters()},
                "buffers": {k: v.detach().clone() for k, v in value.named_buffers()},
                "modes": {k: m.training for k, m in value.named_modules()}}
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_snapshot(v) for v in value]
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
    """What `value` changed since `before` (a _snapshot), in words, or None; `what` names the value."""
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


def _call_effect(before: tuple, fn, args: tuple, kwargs: dict) -> str | None:
    """The first side effect of a call on its positional and keyword arguments, naming the argument."""
    args_before, kwargs_before = before
    for b, value, label in zip(args_before, args, _argument_labels(fn, len(args))):
        if found := _side_effect(b, value, label):
            return found
    return next((f for k, v in kwargs.items() if (f := _side_effect(kwargs_before[k], v, f"argument {k!r}"))), None)


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
    before = ([_snapshot(a) for a in args], {k: _snapshot(v) for k, v in kwargs.items()})
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
    effect = _call_effect(before, own, args, kwargs)
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
