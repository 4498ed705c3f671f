"""The flat API: every exported name resolves, no module is exported, and importing the kit loads nothing heavy."""

import ast
import re
import subprocess
import sys
import types
from pathlib import Path

import minprune as mp

HEAVY = ("onnx", "onnxruntime", "matplotlib.pyplot", "torchvision", "ipywidgets")


def test_every_exported_name_resolves_to_a_function_or_class():
    for name in mp.__all__:
        value = getattr(mp, name)
        assert not isinstance(value, types.ModuleType), f"mp.{name} is a module; __all__ holds functions and classes"
        assert callable(value) or isinstance(value, type), name


def test_the_package_tree_is_the_map_of_the_course():
    root = Path(mp.__file__).parent
    core = {p.stem for p in root.glob("*.py") if not p.stem.startswith("_")}
    assert set(mp.CORE) == core
    chapters = {p.parent.name for p in root.glob("*/__init__.py")}
    assert set(mp.CHAPTERS) == chapters
    for chapter in mp.CHAPTERS:
        package = getattr(mp, chapter)
        files = {p.stem for p in (root / chapter).glob("*.py") if p.stem != "__init__"}
        files |= {p.parent.name for p in (root / chapter).glob("*/__init__.py")}  # a subpackage, e.g. exercises
        assert set(package.MODULES) == files, chapter
        assert re.search(r"notebooks? \(?\d\d", package.__doc__), f"{chapter}'s docstring names no notebook"
        for name in package.MODULES:
            assert isinstance(getattr(package, name), types.ModuleType)


def test_every_module_is_one_idea_of_at_most_300_lines():
    for path in Path(mp.__file__).parent.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 300, path.name


def test_core_modules_import_no_chapter():
    """The core (data, models, training, measuring, timing) is what every chapter builds on, never the reverse."""
    root = Path(mp.__file__).parent
    for name in mp.CORE:
        for node in ast.walk(ast.parse((root / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("minprune."):
                assert node.module.split(".")[1] not in mp.CHAPTERS, f"{name}.py imports {node.module}"


def test_prune_is_the_function_even_after_its_module_is_imported():
    import minprune.unstructured.prune  # noqa: F401

    assert callable(mp.prune) and not isinstance(mp.prune, types.ModuleType)


def test_unknown_names_are_an_attribute_error():
    try:
        mp.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no attribute 'no_such_thing'" in str(exc)
    else:
        raise AssertionError("mp.no_such_thing did not raise")


def test_importing_and_the_core_loop_load_nothing_heavy():
    script = ("import sys, minprune as mp; m = mp.pretrained('lenet300', progress=False); "
              "mp.prune(m, mp.magnitude_scores(m), 0.5); mp.evaluate(m, mp.load().loader('test', 500)); "
              f"print([h for h in {HEAVY!r} if h in sys.modules])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
