"""The course's exercises: for each one its library reference, cases designed against the mistakes learners
make, and hints chosen by what went wrong.

A notebook's check cell calls `check_exercise("4.2", my_accuracy, extra_cases=cases)`: the notebook's own
hand-checkable cases first, then the exercise's designed cases (an uneven last batch, ties at a threshold, values
at the ends of a range, a model with BatchNorm and Dropout in train mode, ...). Besides the result, the check fails
a function with side effects (an input changed in place, `.grad` left set, `requires_grad` or train/eval mode
changed) or a tensor of another dtype. tests/test_exercise_checks.py feeds every exercise plausible wrong
solutions (tests/exercise_answers/) and asserts each fails, and correct ones written differently from the library
and asserts they pass.

One module per chapter (ch01 ... ch13) registers its exercises with `exercise(...)`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from minprune.course.check import CheckFailed, _check_call, _Criterion

CHAPTERS = ("ch01", "ch02", "ch03", "ch04", "ch05", "ch06", "ch07", "ch08", "ch09", "ch10", "ch11", "ch12", "ch13")


@dataclass(frozen=True)
class Exercise:
    """One checked exercise.

    reference: the library's answer, called like the learner's function.
    cases: builds the designed cases (each a tuple of positional arguments); called at check time, so it may
        build small models and tensors (seeded: the same cases on every machine).
    call: how to call a function on one case, when it is not `fn(*case)` (e.g. an exercise whose answer is a rule
        object that the check applies): call(fn, *case) -> value to compare.
    diagnoses: functions (case, expected, got) -> a hint or None, tried in order when a case fails; `got` is the
        learner's result or the exception it raised. The first hint found is shown, else `hint`.
    """

    number: str
    title: str
    reference: Callable
    cases: Callable[[], list]
    hint: str = ""
    diagnoses: tuple = field(default=())
    atol: float = 1e-6
    rtol: float = 1e-5
    dtype_strict: bool = True
    call: Callable | None = None

    def criterion(self) -> _Criterion:
        return _Criterion(self.atol, self.rtol, self.hint, tuple(self.diagnoses), self.dtype_strict)


_REGISTRY: dict[str, Exercise] = {}


def exercise(number: str, title: str, reference: Callable, cases: Callable[[], list], **options) -> Exercise:
    """Register an exercise (called by the chapter modules at import); returns it."""
    if number in _REGISTRY:
        raise ValueError(f"exercise {number} is registered twice")
    found = Exercise(number, title, reference, cases, **options)
    _REGISTRY[number] = found
    return found


def exercises() -> dict[str, Exercise]:
    """Every registered exercise by number ('4.2'), in course order."""
    for chapter in CHAPTERS:
        importlib.import_module(f"{__name__}.{chapter}")
    return dict(sorted(_REGISTRY.items(), key=lambda item: tuple(int(p) for p in item[0].split("."))))


def get(number: str) -> Exercise:
    """The exercise with this number; a clear error naming the known ones otherwise."""
    known = exercises()
    if number not in known:
        raise KeyError(f"no exercise {number!r} has a check; the checked exercises are {', '.join(known)}")
    return known[number]


def _bound(ex: Exercise, fn: Callable) -> Callable:
    if ex.call is None:
        return fn

    def called(*case):
        return ex.call(fn, *case)

    called.__wrapped__ = fn  # the check names the learner's function and reports exceptions at its lines
    return called


def check_exercise(number: str, mine: Callable, *, extra_cases=(), quiet: bool = False) -> bool:
    """Check a learner's function on the notebook's cases (`extra_cases`, first) and the exercise's designed ones.

    Prints one verdict line; raises CheckFailed on the first failing case, naming it.
    """
    ex = get(number)
    cases = [tuple(c) for c in extra_cases] + [tuple(c) for c in ex.cases()]
    criterion, learner, reference = ex.criterion(), _bound(ex, mine), _bound(ex, ex.reference)
    for i, args in enumerate(cases):
        _check_call(learner, reference, args, {}, criterion, case=f" (case {i + 1} of {len(cases)})")
    if not quiet:
        print(f"✓ {getattr(mine, '__name__', 'your function')} passes exercise {number} ({len(cases)} cases)")
    return True


__all__ = ["CheckFailed", "Exercise", "check_exercise", "exercise", "exercises", "get"]
