"""The flat API: every exported name resolves, no module is exported, and importing the kit loads nothing heavy."""

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


def test_every_module_is_reachable_and_prune_stays_the_function():
    files = {p.stem for p in Path(mp.__file__).parent.glob("*.py") if not p.stem.startswith("__")}
    assert set(mp._MODULES) == files
    for name in mp._MODULES:
        assert getattr(mp, name) is not None
    import minprune.prune  # noqa: F401  (a late import of the module must not hide the function)

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
