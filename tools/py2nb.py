"""Build a notebook from a py-percent script (cells start with `# %%`, markdown with `# %% [markdown]`).

Usage: python tools/py2nb.py SCRIPT.py notebooks/NN_name.ipynb
A cell whose first line is `# %% tags=["parameters"]` gets the papermill `parameters` tag.
Every notebook also gets the Colab header (minprune/course/colab.py): the badge at the end of its first markdown cell,
and the Colab setup cell right after it.
Then execute it in place (outputs committed):  make notebook NB=notebooks/NN_name.ipynb
"""

import re
import sys

import nbformat

from minprune.course import colab


def cells_from_script(text: str):
    cells = []
    for chunk in re.split(r"^(?=# %%)", text, flags=re.M):
        if not chunk.strip():
            continue
        header, _, body = chunk.partition("\n")
        body = body.strip("\n")
        tags = re.findall(r'"([^"]+)"', header.split("tags=", 1)[1]) if "tags=" in header else []
        if "[markdown]" in header:
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines()]
            cell = nbformat.v4.new_markdown_cell("\n".join(lines))
        else:
            cell = nbformat.v4.new_code_cell(body)
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)
    return cells


def with_colab_header(cells, target: str):
    """The badge appended to the first (title) markdown cell, then the Colab setup cell."""
    if not cells or cells[0].cell_type != "markdown":
        raise SystemExit("a notebook starts with its title and learning objectives (a markdown cell)")
    path = f"notebooks/{target.replace(chr(92), '/').rsplit('/', 1)[-1]}"
    cells[0].source += "\n\n" + colab.badge(path)
    return [cells[0], nbformat.v4.new_code_cell(colab.SETUP_CELL), *cells[1:]]


def main():
    script, target = sys.argv[1], sys.argv[2]
    nb = nbformat.v4.new_notebook()
    nb.cells = with_colab_header(cells_from_script(open(script, encoding="utf-8").read()), target)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, target)


if __name__ == "__main__":
    main()
