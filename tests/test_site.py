"""The course as static HTML pages: each live widget becomes a visible note, and the pages load no widget scripts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from minprune.course.site import WIDGET_MIME, WIDGET_NOTE, notebook_html, without_live_widgets, write_site

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
WIDGET_NOTEBOOK = NOTEBOOKS / "03_weight_pruning.ipynb"  # the sparsity explorer


def _notebook_with_a_widget():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("explorer = mp.sparsity_explorer(model, loader)")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={WIDGET_MIME: {"model_id": "abc", "version_major": 2},
                                                     "text/plain": "VBox(...)"}),
        nbformat.v4.new_output("display_data", data={"text/plain": "<Figure>", "image/png": "iVBORw0KGgo="}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# A page"), cell]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    return nb


def test_a_widget_view_becomes_the_note_and_the_figure_stays():
    nb = _notebook_with_a_widget()
    page = without_live_widgets(nb)
    first, second = page.cells[1].outputs
    assert first["data"]["text/html"] == WIDGET_NOTE and WIDGET_MIME not in first["data"]
    assert second["data"]["image/png"] == "iVBORw0KGgo="
    assert "widgets" not in page.metadata
    assert WIDGET_MIME in nb.cells[1].outputs[0]["data"] and "widgets" in nb.metadata  # the input is untouched


def test_the_page_of_a_widget_notebook_says_so_and_loads_no_widget_renderer():
    html = notebook_html(nbformat.read(WIDGET_NOTEBOOK, as_version=4))
    assert "minprune-widget-note" in html and "static snapshot" in html
    for script in ("html-manager", "embed-amd.js", "jupyter-js-widgets", WIDGET_MIME):
        assert script not in html, f"the page still refers to {script}"
    assert "data:image/png;base64," in html  # the committed figures, the explorer's snapshot among them


def test_write_site_writes_a_page_per_notebook_and_refuses_bad_folders(tmp_path):
    src = tmp_path / "notebooks"
    src.mkdir()
    nbformat.write(_notebook_with_a_widget(), src / "03_demo.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), src / "04_empty.ipynb")
    (src / "scratch.ipynb").write_text("{}")  # not a course notebook: not exported
    written = write_site(src, tmp_path / "site")
    assert [p.name for p in written] == ["03_demo.html", "04_empty.html"]
    assert "minprune-widget-note" in written[0].read_text()
    assert not list((tmp_path / "site").glob(".*.tmp"))
    with pytest.raises(ValueError, match="another folder"):
        write_site(src, src)
    with pytest.raises(FileNotFoundError, match="NN_"):
        write_site(tmp_path / "site", tmp_path / "elsewhere")


def test_the_command_line_writes_the_site(tmp_path):
    src = tmp_path / "notebooks"
    src.mkdir()
    shutil.copy(WIDGET_NOTEBOOK, src / WIDGET_NOTEBOOK.name)
    command = [sys.executable, "-m", "minprune", "course", "html", str(tmp_path / "site"), "--src", str(src)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "03_weight_pruning.html").exists() and "wrote" in done.stdout
