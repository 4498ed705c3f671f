"""Student notebooks, generated from every committed solution notebook with `minprune.course.student`.

For every `notebooks/NN_*.ipynb` with exercises: the student version parses, shows no solution and no output,
every cell before its first exercise runs cleanly, and that exercise's check cell fails on the placeholder
(`CheckFailed` or `NotImplementedError`). The committed solution notebook passed the same checks (its check cells
printed a verdict and no error). Each notebook runs in its own kernel, only up to its first check cell, from
`notebooks/`, in FAST mode, with the shared cache of trained baselines that the notebooks (and nbval) use.
See minprune/course/student.py and ../shared/STYLE.md section 7.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import pytest

from minprune.course import student as course

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
NO_EXERCISES = {"00_welcome.ipynb"}  # the welcome tour: no numbered exercises
# Read at import, before conftest.py points MINPRUNE_CACHE at an empty private folder: an empty cache would
# retrain every baseline the notebooks load. Unset means the library's default cache, as for nbval.
SHARED_CACHE = os.environ.get("MINPRUNE_CACHE")
CHECK_FAILURES = ("CheckFailed", "NotImplementedError")


def _solution(path: Path):
    return nbformat.read(path, as_version=4)


def solution_lines(source: str) -> list[str]:
    """The stripped, non-empty lines between the BEGIN/END SOLUTION markers of one cell that do not also appear
    outside them (what a released notebook must not show); tests/test_nbgrader.py uses it too."""
    inside, solution, rest = False, [], set()
    for line in source.splitlines():
        stripped = line.strip()
        if stripped in (course.BEGIN, course.END):
            inside = stripped == course.BEGIN
        elif inside:
            solution.append(stripped)
        else:
            rest.add(stripped)
    return [line for line in solution if line and line not in rest]


def _exercise_cells(nb) -> list[tuple[str, int]]:
    """(exercise number, index of its solution cell) for every code cell holding a solution."""
    out, current = [], ""
    for i, cell in enumerate(nb.cells):
        found = course.find_exercise(cell.source)
        current = found[0] if found else current
        if cell.cell_type == "code" and course.BEGIN in cell.source:
            out.append((current, i))
    return out


def _check_cell(nb, solution_index: int) -> int:
    """Index of the first code cell after an exercise's solution cell: its check cell."""
    for i in range(solution_index + 1, len(nb.cells)):
        if nb.cells[i].cell_type == "code":
            return i
    raise AssertionError(f"the exercise in cell {solution_index} is the last code cell: it has no check cell")


def _with_exercises(path: Path):
    """The solution notebook; skips those without exercises (test_every_lesson_has_exercises lists them)."""
    nb = _solution(path)
    if path.name in NO_EXERCISES:
        pytest.skip(f"{path.name} has no exercises by design")
    if not course.list_exercises(nb):
        pytest.skip(f"{path.name} has no exercises yet")
    return nb


def test_every_lesson_has_exercises():
    names = {p.name for p in NOTEBOOKS}
    assert len(names) >= 12 and NO_EXERCISES <= names, sorted(names)
    with_exercises = {p.name for p in NOTEBOOKS if course.list_exercises(_solution(p))}
    assert not with_exercises & NO_EXERCISES, "these have exercises now: remove them from NO_EXERCISES"
    missing = sorted(names - NO_EXERCISES - with_exercises)
    assert not missing, f"notebooks without exercises (issue 8 wants 2-4 in each of 01-10): {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_follow_the_pattern(path):
    nb = _with_exercises(path)
    chapter = str(int(path.name[:2]))
    minutes = {m.group(1) for cell in nb.cells for m in course.EXERCISE.finditer(cell.source) if m.group(2)}
    for number, index in _exercise_cells(nb):
        assert number.split(".")[0] == chapter, f"Exercise {number} in notebook {path.name}: number it {chapter}.k"
        assert number in minutes, f"Exercise {number} in {path.name} has no time estimate '(N min)'"
        check = nb.cells[_check_cell(nb, index)]
        where = f"the cell after Exercise {number} in {path.name}"
        assert course.is_check_cell(check.source), f"{where} is not a check cell"
        texts = [o.get("text", "") for o in check.outputs if o.output_type == "stream"]
        assert any("✓" in t for t in texts), f"Exercise {number}: committed check cell shows no passing verdict"
        assert not [o for o in check.outputs if o.output_type == "error"], f"Exercise {number}: check cell errored"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_notebook_hides_solutions_and_outputs(path):
    nb = _with_exercises(path)
    student = nbformat.reads(nbformat.writes(course.make_student_notebook(nb)), as_version=4)
    nbformat.validate(student)
    assert len(student.cells) == len(nb.cells)
    assert "widgets" not in student.metadata, "the solution run's widget state is left in the student notebook"
    text = "\n".join(cell.source for cell in student.cells)
    assert course.BEGIN not in text and course.END not in text
    for number, index in _exercise_cells(nb):
        hidden = solution_lines(nb.cells[index].source)
        shown = {line.strip() for line in student.cells[index].source.splitlines()}
        assert not [line for line in hidden if line in shown], f"Exercise {number} shows its solution"
        assert f'NotImplementedError("Exercise {number}' in student.cells[index].source
    for i, cell in enumerate(student.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            python = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            ast.parse(python, filename=f"{path.name} cell {i}")  # valid Python (IPython magics left out)


def _kernel_env() -> dict:
    env = {**os.environ, "MINPRUNE_FAST": "1", "MPLBACKEND": "Agg"}
    env.pop("MINPRUNE_CACHE", None)
    if SHARED_CACHE:
        env["MINPRUNE_CACHE"] = SHARED_CACHE
    return env


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_notebook_runs_until_its_first_check_fails(path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = _with_exercises(path)
    number, solution_index = _exercise_cells(nb)[0]
    check_index = _check_cell(nb, solution_index)
    student = course.make_student_notebook(nb)
    client = NotebookClient(student, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    with client.setup_kernel(env=_kernel_env()):
        for index in range(check_index):
            try:
                client.execute_cell(student.cells[index], index)
            except CellExecutionError as err:
                pytest.fail(f"{path.name} cell {index}, before Exercise {number}, failed: {err.ename}: {err.evalue}")
        with pytest.raises(CellExecutionError) as info:
            client.execute_cell(student.cells[check_index], check_index)
    assert info.value.ename in CHECK_FAILURES, f"{info.value.ename}: {info.value.evalue}"
    assert f"Exercise {number}" in info.value.evalue  # it failed on the placeholder, not on something else
