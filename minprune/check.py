"""Check a learner's function against the library's, with friendly feedback and no solution revealed.

Used by the build-it-yourself cells of the notebooks and by the tests alike.
See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import inspect

import torch


class CheckFailed(AssertionError):
    """A learner's answer differs from the library's."""


def _close(a, b, atol: float) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        if a.shape != b.shape:
            return False
        if a.dtype == torch.bool or b.dtype == torch.bool:
            return bool(torch.equal(a.bool(), b.bool()))
        return bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=0))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], atol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, atol) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= atol
    return a == b


def _short(value, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def same_as(mine, reference, *args, atol: float = 1e-6, hint: str = "", quiet: bool = False, **kwargs) -> bool:
    """Call both functions on the same inputs; print a one-line verdict, raise CheckFailed on a mismatch."""
    name = getattr(mine, "__name__", "your function")
    try:
        got = mine(*args, **kwargs)
    except NotImplementedError as exc:
        raise CheckFailed(f"✗ {name} is not written yet ({exc})") from None
    expected = reference(*args, **kwargs)
    if not _close(got, expected, atol):
        message = f"✗ {name} differs from the library.\n  expected: {_short(expected)}\n  got:      {_short(got)}"
        raise CheckFailed(message + (f"\n  hint: {hint}" if hint else ""))
    if not quiet:
        print(f"✓ {name} matches {getattr(reference, '__qualname__', 'the library')}")
    return True


def same_on(mine, reference, cases, *, atol: float = 1e-6, hint: str = "") -> bool:
    """Compare on several cases (each a tuple of positional arguments): hand-checkable ones first, then random.

    Prints one verdict line for all cases; on the first mismatch raises CheckFailed naming the case.
    """
    name = getattr(mine, "__name__", "your function")
    for i, args in enumerate(cases):
        try:
            same_as(mine, reference, *args, atol=atol, hint=hint, quiet=True)
        except CheckFailed as exc:
            raise CheckFailed(f"{exc}\n  (case {i + 1} of {len(cases)})") from None
    print(f"✓ {name} matches {getattr(reference, '__qualname__', 'the library')} on {len(cases)} cases")
    return True


def show_source(obj) -> None:
    """Print the source code of a library object (read it instead of copying it into a notebook)."""
    print(inspect.getsource(obj))
