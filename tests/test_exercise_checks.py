"""Every checked exercise fails plausible wrong solutions and passes correct ones written differently.

The solutions live in tests/exercise_answers/chNN.py (WRONG and RIGHT: exercise number -> functions); the checks
and their designed cases in minprune/course/exercises/. See minprune/course/exercises/__init__.py.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import exercise_answers
import pytest

from minprune.course.check import CheckFailed
from minprune.course.exercises import check_exercise, exercises

ANSWERS = [
    importlib.import_module(f"exercise_answers.{m.name}") for m in pkgutil.iter_modules(exercise_answers.__path__)
]
WRONG = [(number, fn) for module in ANSWERS for number, fns in module.WRONG.items() for fn in fns]
RIGHT = [(number, fn) for module in ANSWERS for number, fns in module.RIGHT.items() for fn in fns]


def _id(item) -> str:
    return f"{item[0]}-{item[1].__name__}"


@pytest.mark.parametrize("number_fn", WRONG, ids=_id)
def test_a_wrong_solution_fails_its_check(number_fn):
    number, fn = number_fn
    with pytest.raises(CheckFailed) as failed:
        check_exercise(number, fn, quiet=True)
    assert f"✗ {fn.__name__}" in str(failed.value)


@pytest.mark.parametrize("number_fn", RIGHT, ids=_id)
def test_a_correct_solution_written_differently_passes(number_fn, capsys):
    number, fn = number_fn
    assert check_exercise(number, fn)
    assert capsys.readouterr().out.startswith(f"✓ {fn.__name__} passes exercise {number}")


def test_every_checked_exercise_has_three_wrong_and_one_right_solution():
    for number in exercises():
        wrong = [fn for n, fn in WRONG if n == number]
        right = [fn for n, fn in RIGHT if n == number]
        assert len(wrong) >= 3 and right, f"exercise {number}: {len(wrong)} wrong and {len(right)} right solutions"


def test_the_library_passes_its_own_checks():
    for number, ex in exercises().items():
        check_exercise(number, ex.reference, quiet=True)


def test_every_notebook_exercise_with_a_check_is_registered_and_every_registered_one_is_used():
    sources = sorted((Path(__file__).parents[1] / "notebooks" / "src").glob("[0-9]*.py"))
    called = {n for src in sources for n in re.findall(r'check_exercise\(\s*"([0-9]+\.[0-9]+)"', src.read_text())}
    assert called, "no notebook calls check_exercise"
    assert called == set(exercises()), (
        f"called in notebooks but not registered: {sorted(called - set(exercises()))}; "
        f"registered but never called: {sorted(set(exercises()) - called)}"
    )
