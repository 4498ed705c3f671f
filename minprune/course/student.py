"""Student notebooks from solution notebooks (nbgrader's `### BEGIN SOLUTION` / `### END SOLUTION` markers).

In a solution notebook an exercise cell looks like

    # Exercise 3.2 (10 min): score each filter by the L1 norm of its weights
    def my_filter_l1(W):
        '''Return one score per output channel.'''
        ### BEGIN SOLUTION
        return W.abs().sum(dim=(1, 2, 3))
        ### END SOLUTION

The student version keeps the signature and docstring and replaces the solution by
`raise NotImplementedError("Exercise 3.2: ...")`, and all outputs are cleared.
See notebooks/01_train_baseline.ipynb and docs/instructor.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
EXERCISE = re.compile(r"Exercise\s+(\d+\.\d+)(?:\s*\((\d+)\s*min\))?\s*[:.-]?\s*(.*)")
CHECK_CALLS = ("check.", "check_exercise(", "score_sparsities(")  # what a check cell calls (score: a challenge)


def is_check_cell(source: str) -> bool:
    """Whether a code cell checks an exercise: it calls a check, or scores a challenge."""
    return any(call in source for call in CHECK_CALLS)


def find_exercise(source: str) -> tuple[str, str] | None:
    """(number, title) of the first `Exercise N.M` mentioned in a cell's source, or None."""
    match = EXERCISE.search(source)
    return (match.group(1), match.group(3).strip()) if match else None


def strip_solutions(source: str, exercise: str = "") -> str:
    """Replace every BEGIN/END SOLUTION block by an indented `raise NotImplementedError(...)`."""
    out, inside, indent = [], False, ""
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"nested {BEGIN!r} in exercise {exercise or '?'}")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            label = f"Exercise {exercise}: write your solution here" if exercise else "write your solution here"
            out.append(f'{indent}raise NotImplementedError("{label}")')
        elif stripped == END:
            if not inside:
                raise ValueError(f"{END!r} without {BEGIN!r} in exercise {exercise or '?'}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} is never closed in exercise {exercise or '?'}")
    return "\n".join(out)


def make_student_notebook(nb):
    """A copy of a solution notebook with solutions replaced, every output cleared and no widget state left."""
    student = nbformat.from_dict(nb)  # deep copy
    student.metadata.pop("widgets", None)  # the solution run's widget state: stale views in a fresh notebook
    current = ""
    for cell in student.cells:
        found = find_exercise(cell.source)
        current = found[0] if found else current
        if cell.cell_type == "code":
            if BEGIN in cell.source:
                cell.source = strip_solutions(cell.source, current)
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)  # the solution run's timestamps
    return student


def list_exercises(nb) -> list[str]:
    """Numbers of the exercises whose solutions a notebook marks, in order."""
    numbers, current = [], ""
    for cell in nb.cells:
        found = find_exercise(cell.source)
        current = found[0] if found else current
        if cell.cell_type == "code" and BEGIN in cell.source and current not in numbers:
            numbers.append(current)
    return numbers


def course_notebooks(src_dir) -> list[Path]:
    """The course's notebooks in `src_dir` (`NN_name.ipynb`, in order); FileNotFoundError when there are none."""
    sources = sorted(Path(src_dir).glob("[0-9][0-9]_*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no notebooks named NN_*.ipynb in {src_dir}")
    return sources


def generate_student_notebooks(src_dir, out_dir) -> list[Path]:
    """Write the student version of every `NN_*.ipynb` in src_dir into out_dir; returns the paths written."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    sources = course_notebooks(src_dir)
    if out_dir.resolve() == src_dir.resolve():
        raise ValueError("out_dir must differ from src_dir: the solutions would be overwritten")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sources:
        student = make_student_notebook(nbformat.read(path, as_version=4))
        target = out_dir / path.name
        nbformat.write(student, target)
        written.append(target)
    return written
