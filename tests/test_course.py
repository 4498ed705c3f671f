import nbformat
import pytest

from minprune.course import student as course

SOLUTION_CELL = '''# Exercise 3.2 (10 min): score each filter by the L1 norm of its weights
def my_filter_l1(W):
    """Return one score per output channel."""
    ### BEGIN SOLUTION
    scores = W.abs()
    return scores.sum(dim=(1, 2, 3))
    ### END SOLUTION
'''


def _notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## Exercise 3.1 (5 min): pick a sparsity"),
                nbformat.v4.new_code_cell("### BEGIN SOLUTION\nSPARSITY = 0.5\n### END SOLUTION"),
                nbformat.v4.new_code_cell(SOLUTION_CELL),
                nbformat.v4.new_code_cell("print(1)")]
    for i, cell in enumerate(nb.cells[1:], 1):
        cell.execution_count = i
        cell.outputs = [nbformat.v4.new_output("stream", text="x")]
        cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z"}
    return nb


def test_strip_keeps_signature_and_docstring():
    out = course.strip_solutions(SOLUTION_CELL, "3.2")
    assert out.splitlines() == [
        "# Exercise 3.2 (10 min): score each filter by the L1 norm of its weights",
        "def my_filter_l1(W):",
        '    """Return one score per output channel."""',
        '    raise NotImplementedError("Exercise 3.2: write your solution here")',
    ]
    namespace = {}
    exec(out, namespace)  # the student version is valid Python that fails only when called
    with pytest.raises(NotImplementedError, match="Exercise 3.2"):
        namespace["my_filter_l1"](None)


def test_student_notebook_hides_solutions_and_clears_outputs():
    nb = _notebook()
    student = course.make_student_notebook(nb)
    text = "\n".join(c.source for c in student.cells)
    assert "SPARSITY = 0.5" not in text and "abs()" not in text
    assert 'raise NotImplementedError("Exercise 3.1' in student.cells[1].source
    assert all(c.outputs == [] and c.execution_count is None for c in student.cells if c.cell_type == "code")
    assert all("execution" not in c.metadata for c in student.cells)
    assert nb.cells[1].outputs  # the solution notebook itself is untouched
    assert course.list_exercises(nb) == ["3.1", "3.2"]


@pytest.mark.parametrize("bad", ["### BEGIN SOLUTION\nx = 1", "x = 1\n### END SOLUTION",
                                 "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION"])
def test_unbalanced_markers_are_refused(bad):
    with pytest.raises(ValueError, match="SOLUTION"):
        course.strip_solutions(bad, "1.1")


def test_generate_writes_student_versions(tmp_path):
    src, out = tmp_path / "src", tmp_path / "student"
    src.mkdir()
    nbformat.write(_notebook(), src / "03_demo.ipynb")
    (src / "notes.ipynb").write_text("not a course notebook")
    written = course.generate_student_notebooks(src, out)
    assert [p.name for p in written] == ["03_demo.ipynb"]
    assert "NotImplementedError" in nbformat.read(written[0], 4).cells[2].source
    with pytest.raises(ValueError, match="differ"):
        course.generate_student_notebooks(src, src)
    with pytest.raises(FileNotFoundError):
        course.generate_student_notebooks(tmp_path / "empty", out)


def test_course_command_writes_student_notebooks(tmp_path, capsys):
    from minprune.__main__ import main

    src = tmp_path / "src"
    src.mkdir()
    nbformat.write(_notebook(), src / "03_demo.ipynb")
    assert main(["course", "student", str(tmp_path / "out"), "--src", str(src)]) == 0
    assert "03_demo.ipynb" in capsys.readouterr().out
    assert main(["course", "student", str(src), "--src", str(src)]) == 2  # user error, no traceback


def test_generate_on_the_course_notebooks(tmp_path):
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "notebooks"
    written = course.generate_student_notebooks(src, tmp_path)
    assert [p.name for p in written] == sorted(p.name for p in src.glob("[0-9][0-9]_*.ipynb"))
    for path in written:
        student = nbformat.read(path, as_version=4)
        nbformat.validate(student)
        assert course.BEGIN not in "\n".join(c.source for c in student.cells)
