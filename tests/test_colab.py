"""The Colab header of every notebook: the badge, and a setup cell that installs the kit only on Colab and never
replaces Colab's torch. The cell's logic runs here with a pretend Colab; the commands it would run are recorded."""

import importlib.metadata
import importlib.util
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import nbformat
import pytest

from minprune.course import colab

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def run_setup_cell(monkeypatch, *, on_colab: bool, installed: bool) -> list[list[str]]:
    """Execute the setup cell; returns the commands it ran (none really runs)."""
    commands = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: commands.append(cmd))
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (real_find_spec(name, *a) if installed else None)
                        if name == "minprune" else real_find_spec(name, *a))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requires = pyproject["dependencies"] + [f'{r}; extra == "dev"' for r in pyproject["optional-dependencies"]["dev"]]
    monkeypatch.setattr(importlib.metadata, "requires", lambda name: requires if name == "minprune" else None)
    exec(compile(colab.SETUP_CELL, "setup-cell", "exec"), {})
    return commands


def test_off_colab_the_cell_does_nothing(monkeypatch):
    assert run_setup_cell(monkeypatch, on_colab=False, installed=False) == []


def test_on_colab_with_the_kit_installed_it_does_nothing(monkeypatch):
    assert run_setup_cell(monkeypatch, on_colab=True, installed=True) == []


def test_on_colab_it_installs_the_kit_and_its_dependencies_but_not_torch(monkeypatch):
    kit, deps = run_setup_cell(monkeypatch, on_colab=True, installed=False)
    assert kit == [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                   f"minprune @ git+https://{colab.REPOSITORY}@{colab.BRANCH}"]
    assert deps[:4] == [sys.executable, "-m", "pip", "install"]
    names = [r.split(">")[0].split("=")[0].split("<")[0] for r in deps[5:]]
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(names) == sorted(r.split(">")[0].split("=")[0].split("<")[0] for r in runtime
                                   if not r.startswith(("torch>", "torchvision>", "torch=", "torchvision=")))
    assert not any(n in colab.KEEP for n in names) and "onnxruntime" in names  # the dev extras stay out too
    assert not any("extra ==" in r for r in deps)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_the_badge_and_the_setup_cell(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and colab.badge(f"notebooks/{path.name}") in nb.cells[0].source
    assert nb.cells[1].cell_type == "code" and nb.cells[1].source == colab.SETUP_CELL
    assert nb.cells[1].outputs == []  # it prints nothing off Colab


def test_readme_has_the_badge():
    assert colab.badge("notebooks/00_welcome.ipynb") in (ROOT / "README.md").read_text()
