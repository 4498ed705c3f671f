"""The same seed gives the same results: run a training notebook twice from scratch and compare its outputs."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "01_train_baseline.ipynb"


def _checked_outputs(path: Path, cache: Path) -> list[str]:
    """Execute the notebook (FAST mode, an empty model cache) and return what each cell printed to stdout."""
    nb = nbformat.read(path, as_version=4)
    env = {"MINPRUNE_FAST": "1", "MINPRUNE_CACHE": str(cache), "MPLBACKEND": "Agg"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    texts = []
    for cell in nb.cells:
        if cell.cell_type == "code":  # this notebook prints no timings to stdout; accuracies included
            texts.append("".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout"))
    return texts


@pytest.mark.skipif(not NOTEBOOK.exists(), reason="notebook missing")
def test_notebook_runs_identically_twice(tmp_path):
    first = _checked_outputs(NOTEBOOK, tmp_path / "cache-a")
    second = _checked_outputs(NOTEBOOK, tmp_path / "cache-b")
    assert sum(t.count("validation accuracy per epoch") for t in first) == 2  # training results are compared
    assert first == second
