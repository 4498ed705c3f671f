"""The course as an nbgrader course (minprune.course.nbgrader), checked with nbgrader itself.

For every solution notebook with exercises: the course notebook passes nbgrader's metadata validation, one solution
cell and one locked autograded check cell per exercise, worth the exercise's minutes; `nbgrader generate_assignment`
releases every assignment with no line of a solution left and the check cells unchanged. Then `nbgrader autograde`
on notebook 03 (the quickest with exercises, FAST mode): the solution notebook as a submission gets full marks,
the released blank notebook zero. Skipped without nbgrader (`pip install -e ".[dev]"` installs it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_student_notebooks import solution_lines  # the lines a released notebook must not show

from minprune.course import nbgrader as course
from minprune.course import student

nbgrader = pytest.importorskip("nbgrader", reason="nbgrader is not installed: pip install -e '.[dev]'")
from nbgrader.api import Gradebook  # noqa: E402
from nbgrader.nbgraderformat import MetadataValidator  # noqa: E402

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
WITH_EXERCISES = [p for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
                  if student.list_exercises(nbformat.read(p, as_version=4))]
AUTOGRADED = "03_weight_pruning"  # ~10 s in FAST mode, four exercises and no questions
SHARED_CACHE = os.environ.get("MINPRUNE_CACHE")  # read before conftest.py points it at an empty folder


def _nbgrader(course_dir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the nbgrader command in the course folder (its bin folder on PATH: nbgrader calls `alembic`)."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course_dir, capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def course_dir(tmp_path_factory) -> Path:
    """The course written from notebooks/ and every assignment released (no gradebook: nothing is graded)."""
    root = tmp_path_factory.mktemp("nbgrader-course")
    course.write_course(NOTEBOOK_DIR, root)
    _nbgrader(root, "generate_assignment", "*", "--no-db", "--force")
    return root


def _nbgrader_meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def test_one_assignment_per_notebook_with_exercises(course_dir):
    assert len(WITH_EXERCISES) >= 10
    assert sorted(p.name for p in (course_dir / "source").iterdir()) == [p.stem for p in WITH_EXERCISES]
    assert sorted(p.name for p in (course_dir / "release").iterdir()) == [p.stem for p in WITH_EXERCISES]
    assert "course_id" in (course_dir / "nbgrader_config.py").read_text()


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_course_notebook_has_valid_nbgrader_metadata(course_dir, path):
    nb = nbformat.read(course_dir / "source" / path.stem / path.name, as_version=4)
    MetadataValidator().validate_nb(nb)  # nbgrader's own check: schema, unique grade ids, points
    solutions = [c for c in nb.cells if _nbgrader_meta(c).get("solution")]
    checks = [c for c in nb.cells if _nbgrader_meta(c).get("grade")]
    exercises = student.list_exercises(nb)
    assert len(solutions) == len(checks) >= len(exercises), "one check cell per solution cell"
    assert all(student.BEGIN in c.source and c.cell_type == "code" for c in solutions)
    assert all(_nbgrader_meta(c)["locked"] and student.is_check_cell(c.source) and c.cell_type == "code"
               for c in checks)
    minutes = {m.group(1): int(m.group(2)) for c in nb.cells for m in student.EXERCISE.finditer(c.source)
               if m.group(2)}  # the '(K min)' of each exercise heading: its points
    assert sum(_nbgrader_meta(c)["points"] for c in checks) == pytest.approx(sum(minutes[e] for e in exercises))
    for cell in nb.cells:
        meta = _nbgrader_meta(cell)
        if cell.cell_type == "code":
            assert cell.outputs == [] and meta.get("locked") != meta.get("solution"), "code: locked xor solution"
        elif course.QUESTION.search(cell.source):
            assert not meta.get("locked"), "the learner answers a question in its cell"


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_release_has_no_solution_and_the_checks_intact(course_dir, path):
    source = nbformat.read(course_dir / "source" / path.stem / path.name, as_version=4)
    release = nbformat.read(course_dir / "release" / path.stem / path.name, as_version=4)
    assert len(release.cells) == len(source.cells)
    text = "\n".join(cell.source for cell in release.cells)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    for before, after in zip(source.cells, release.cells, strict=True):
        meta = _nbgrader_meta(before)
        if meta.get("solution"):
            shown = {line.strip() for line in after.source.splitlines()}
            assert not [line for line in solution_lines(before.source) if line in shown], meta["grade_id"]
            assert "raise NotImplementedError" in after.source
        else:
            assert after.source == before.source, f"{meta.get('grade_id')} changed in the release"
        if meta.get("grade"):
            assert _nbgrader_meta(after)["points"] == meta["points"] and after.metadata["editable"] is False


def test_course_notebook_refuses_an_exercise_without_check_or_minutes():
    solution = "# Exercise 1.1 (6 min): add\ndef f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION"
    check = "mp.course.check_exercise('1.1', f)"

    def notebook(*sources):
        return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])

    nb = course.make_nbgrader_notebook(notebook(solution, check, solution, check))  # 1.1 in two parts: 3 + 3
    assert [c.metadata.nbgrader.get("points") for c in nb.cells] == [None, 3, None, 3]
    assert [c.metadata.nbgrader["grade_id"] for c in nb.cells] == ["ex1_1_1", "ex1_1_1_check", "ex1_1_2",
                                                                   "ex1_1_2_check"]
    with pytest.raises(ValueError, match=r"Exercise 1\.1 .* not followed by a check cell"):
        course.make_nbgrader_notebook(notebook(solution, "print(f(1))"))
    with pytest.raises(ValueError, match="no time estimate"):
        course.make_nbgrader_notebook(notebook(solution.replace(" (6 min)", ""), check))


def _scores(course_dir: Path, assignment: str, student_id: str) -> tuple[float, float, dict]:
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}", "minprune") as gb:
        submission = gb.find_submission(assignment, student_id)
        grades = {g.name: g.score for nb in submission.notebooks for g in nb.grades}
        return submission.score, submission.max_score, grades


def test_autograde_gives_the_solution_full_marks_and_the_blank_zero(course_dir):
    name = f"{AUTOGRADED}.ipynb"
    _nbgrader(course_dir, "generate_assignment", AUTOGRADED, "--force")  # this time into the gradebook
    for student_id, folder in (("solution", "source"), ("blank", "release")):
        target = course_dir / "submitted" / student_id / AUTOGRADED / name
        target.parent.mkdir(parents=True)
        target.write_bytes((course_dir / folder / AUTOGRADED / name).read_bytes())
    env = {**os.environ, "MINPRUNE_FAST": "1", "MINPRUNE_DEVICE": "cpu", "MPLBACKEND": "Agg"}
    env.pop("MINPRUNE_CACHE", None)  # conftest.py's empty private cache: unset means the library's default
    if SHARED_CACHE:
        env["MINPRUNE_CACHE"] = SHARED_CACHE  # the cache the notebooks (and nbval) share
    _nbgrader(course_dir, "autograde", AUTOGRADED, "--force", env=env)
    score, max_score, grades = _scores(course_dir, AUTOGRADED, "solution")
    assert max_score == 50 and score == max_score, grades  # 3.1 (10 min) + 3.2 (5) + 3.3 (15) + 3.4 (20)
    score, max_score, grades = _scores(course_dir, AUTOGRADED, "blank")
    assert score == 0 and max_score == 50, grades
