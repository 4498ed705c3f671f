"""Build a notebook from a py-percent script (cells start with `# %%`, markdown with `# %% [markdown]`).

Usage: python tools/py2nb.py SCRIPT.py notebooks/NN_name.ipynb
A cell whose first line is `# %% tags=["parameters"]` gets the papermill `parameters` tag.
Then execute it in place (outputs committed):  make notebook NB=notebooks/NN_name.ipynb
"""

import re
import sys

import nbformat


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


def main():
    script, target = sys.argv[1], sys.argv[2]
    nb = nbformat.v4.new_notebook()
    nb.cells = cells_from_script(open(script, encoding="utf-8").read())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, target)


if __name__ == "__main__":
    main()
