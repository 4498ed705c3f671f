"""The course as an nbgrader course: every solution notebook with exercises becomes one nbgrader assignment.

`write_course(src_dir, course_dir)` writes `course_dir/nbgrader_config.py` and
`course_dir/source/<NN_name>/<NN_name>.ipynb`, with nbgrader's cell metadata (schema 3):
- each code cell holding `### BEGIN SOLUTION` is a solution cell (nbgrader blanks it in the release);
- the code cell right after it, the exercise's check, is a locked autograded test cell worth the exercise's
  minutes from its `Exercise N.M (K min)` heading (1 point a minute), split evenly if it has several solution cells;
- every other cell is read-only, except markdown cells with a `Question N.M` (the learner writes the answer there;
  questions are not scored by nbgrader: grade them by hand, as docs/instructor.md says).
Outputs are cleared. Then `nbgrader generate_assignment` and `nbgrader autograde` work as usual.
See docs/instructor.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from minprune.course.student import BEGIN, EXERCISE, course_notebooks, find_exercise, is_check_cell

QUESTION = re.compile(r"Question\s+\d+\.\d+")
CONFIG = '''\
"""nbgrader settings of the minprune course (written by `python -m minprune course nbgrader`; edit freely)."""

c = get_config()  # noqa: F821 (nbgrader defines it)
c.CourseDirectory.course_id = "minprune"
c.ClearSolutions.code_stub = {"python": '# YOUR CODE HERE\\nraise NotImplementedError("write your solution here")'}
# A cell of the full (class) setting can train for minutes on a busy laptop: nbgrader's default is 30 s.
c.Execute.timeout = 1200
'''


def _minutes(nb) -> dict[str, int]:
    """{exercise number: minutes} from every `Exercise N.M (K min)` in the notebook."""
    minutes = {}
    for cell in nb.cells:
        for match in EXERCISE.finditer(cell.source):
            if match.group(2):
                minutes[match.group(1)] = int(match.group(2))
    return minutes


def _meta(grade_id: str, *, solution=False, grade=False, locked=False, points=None) -> dict:
    meta = {"schema_version": 3, "grade_id": grade_id, "solution": solution, "grade": grade, "locked": locked}
    if points is not None:
        meta["points"] = points
    return meta


def _graded_cells(nb) -> dict[int, tuple[str, int]]:
    """{index of a solution cell: (exercise number, index of its check cell)}."""
    out, current = {}, ""
    for i, cell in enumerate(nb.cells):
        found = find_exercise(cell.source)
        current = found[0] if found else current
        if cell.cell_type != "code" or BEGIN not in cell.source:
            continue
        check = next((j for j in range(i + 1, len(nb.cells)) if nb.cells[j].cell_type == "code"), None)
        if check is None or BEGIN in nb.cells[check].source or not is_check_cell(nb.cells[check].source):
            raise ValueError(f"Exercise {current or '?'} (cell {i}) is not followed by a check cell")
        out[i] = (current, check)
    return out


def make_nbgrader_notebook(nb):
    """A copy of a solution notebook with nbgrader cell metadata and no outputs (see the module docstring)."""
    course = nbformat.from_dict(nb)  # deep copy
    course.metadata.pop("widgets", None)  # the solution run's widget state
    graded, minutes = _graded_cells(course), _minutes(course)
    per_exercise = {}
    for number, _ in graded.values():
        per_exercise[number] = per_exercise.get(number, 0) + 1
    checks, seen = {}, {}
    for i, (number, check) in graded.items():
        if number not in minutes:
            raise ValueError(f"Exercise {number} has no time estimate '(N min)': its points come from it")
        seen[number] = seen.get(number, 0) + 1
        name = "ex" + number.replace(".", "_") + (f"_{seen[number]}" if per_exercise[number] > 1 else "")
        course.cells[i].metadata["nbgrader"] = _meta(name, solution=True)
        checks[check] = _meta(f"{name}_check", grade=True, locked=True,
                              points=minutes[number] / per_exercise[number])
    for i, cell in enumerate(course.cells):
        if i in checks:
            cell.metadata["nbgrader"] = checks[i]
        elif i not in graded and not (cell.cell_type == "markdown" and QUESTION.search(cell.source)):
            cell.metadata["nbgrader"] = _meta(f"cell_{i:03d}", locked=True)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    return course


def write_course(src_dir, course_dir) -> list[Path]:
    """Write an nbgrader course (config, one assignment per notebook with exercises); returns the paths written.

    An existing `nbgrader_config.py` is kept (the instructor's edits survive a regeneration).
    """
    src_dir, course_dir = Path(src_dir), Path(course_dir)
    sources = course_notebooks(src_dir)
    course_dir.mkdir(parents=True, exist_ok=True)
    written, config = [], course_dir / "nbgrader_config.py"
    if not config.exists():
        config.write_text(CONFIG)
        written.append(config)
    for path in sources:
        nb = nbformat.read(path, as_version=4)
        if not any(cell.cell_type == "code" and BEGIN in cell.source for cell in nb.cells):
            continue  # nothing to grade: 00 welcome, 11 deploy
        target = course_dir / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(make_nbgrader_notebook(nb), target)
        written.append(target)
    return written
