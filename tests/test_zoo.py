import torch

import minprune as mp
from minprune import zoo
from minprune.__main__ import main


def test_pretrained_trains_once_then_loads(monkeypatch):
    recipe = zoo.Recipe(epochs=1)
    monkeypatch.setitem(zoo.BASELINE_RECIPES, "lenet300", recipe)
    first = mp.pretrained("lenet300", progress=False)
    assert first.baseline_meta["test_acc"] > 70  # one epoch on the embedded data is already far above chance
    calls = []
    monkeypatch.setattr(zoo, "train_baseline", lambda *a, **k: calls.append(1))
    second = mp.pretrained("lenet300", progress=False)
    assert not calls and all(torch.equal(first.state_dict()[k], v) for k, v in second.state_dict().items())


def test_damaged_cache_entry_is_retrained(monkeypatch):
    recipe = zoo.Recipe(epochs=1)
    monkeypatch.setitem(zoo.BASELINE_RECIPES, "lenet300", recipe)
    mp.pretrained("lenet300", progress=False)
    path = zoo._cache_file("lenet300", "mnist-small", 0, recipe)
    path.write_bytes(b"garbage")
    model = mp.pretrained("lenet300", progress=False)
    assert mp.count_params(model) == 266_610 and mp.load_model(path)[0] is not None


def test_cached_model_equals_retrained(monkeypatch):
    monkeypatch.setitem(zoo.BASELINE_RECIPES, "lenet300", zoo.Recipe(epochs=1))
    cached = mp.pretrained("lenet300", progress=False)
    fresh = mp.pretrained("lenet300", retrain=True, progress=False)
    assert all(torch.equal(cached.state_dict()[k], v) for k, v in fresh.state_dict().items())


def test_unknown_baseline():
    import pytest

    with pytest.raises(ValueError, match="no baseline recipe"):
        mp.pretrained("alexnet")


def test_demo_command_prints_the_table(monkeypatch, capsys):
    monkeypatch.setitem(zoo.BASELINE_RECIPES, "lenet300", zoo.Recipe(epochs=1))
    assert main(["demo", "--models", "lenet300", "--threads", "1", "--skip-pipeline"]) == 0
    out = capsys.readouterr().out
    assert "lenet300" in out and "266,610" in out and "ms@b64" in out
