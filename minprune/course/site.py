"""The course as static HTML pages (`make html`): every notebook with its committed outputs, readable offline.

A saved page has no kernel, so a live widget (the explorers of notebooks 03 and 06) cannot run there; nbconvert
would load a widget renderer from a CDN and, offline, leave an empty slot. `write_site` instead puts a visible
note where each widget was: the static snapshot figure that the explorer always draws below it is what the page
shows. The widget state is dropped, so the pages load no widget scripts.

Formulas are typeset by MathJax, which nbconvert's pages load from a CDN: offline, a formula shows as its TeX.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat

from minprune.course.student import course_notebooks
from minprune.files import atomic_write

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = (
    '<div class="minprune-widget-note" style="border: 1px dashed #888; padding: 0.5em 0.8em; color: #333;">'
    "<b>Interactive explorer.</b> In a running notebook (JupyterLab, Jupyter Notebook or Colab) its slider and "
    "dropdowns appear here and redraw the figure. This saved page has no kernel to run it: the static snapshot "
    "below shows the explorer at one setting.</div>"
)
WIDGET_NOTE_TEXT = "[interactive explorer: runs only in a live notebook; the static snapshot below shows one setting]"


def without_live_widgets(nb):
    """A copy of `nb` with every widget view output replaced by WIDGET_NOTE and the widget state removed."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if WIDGET_MIME in output.get("data", {}):
                output["data"] = {"text/html": WIDGET_NOTE, "text/plain": WIDGET_NOTE_TEXT}
    return nb


def notebook_html(nb) -> str:
    """The page nbconvert's HTML exporter writes for `nb`, live widgets replaced by the note."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(without_live_widgets(nb))
    return body


def write_site(src_dir, out_dir) -> list[Path]:
    """Write out_dir/NN_name.html for every notebooks/NN_name.ipynb in `src_dir` (atomically); returns the paths."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    sources = course_notebooks(src_dir)
    if out_dir.resolve() == src_dir.resolve():
        raise ValueError(f"write the pages to another folder than the notebooks ({src_dir})")
    written = []
    for path in sources:
        page = notebook_html(nbformat.read(path, as_version=4)).encode()
        written.append(atomic_write(out_dir / f"{path.stem}.html", lambda f, page=page: f.write(page)))
    return written
