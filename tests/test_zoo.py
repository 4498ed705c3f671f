import math
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import minprune as mp
from minprune import zoo
from minprune.__main__ import main
from minprune.assets import baselines_dir
from minprune.distillation import teacher as shift_teacher
from minprune.files import tensors_sha256


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
    with pytest.warns(UserWarning, match=r"cached file cannot be used.*kept as .*\.damaged.*trained again"):
        model = mp.pretrained("lenet300", progress=False)
    assert mp.count_params(model) == 266_610 and mp.load_model(path)[0] is not None
    assert path.with_name(path.name + ".damaged").read_bytes() == b"garbage"


def test_cached_model_equals_retrained(monkeypatch):
    monkeypatch.setitem(zoo.BASELINE_RECIPES, "lenet300", zoo.Recipe(epochs=1))
    cached = mp.pretrained("lenet300", progress=False)
    fresh = mp.pretrained("lenet300", retrain=True, progress=False)
    assert all(torch.equal(cached.state_dict()[k], v) for k, v in fresh.state_dict().items())


def test_unknown_baseline():
    with pytest.raises(ValueError, match="no baseline recipe"):
        mp.pretrained("alexnet")


def test_demo_command_prints_the_table(monkeypatch, capsys):
    monkeypatch.setitem(zoo.BASELINE_RECIPES, "lenet300", zoo.Recipe(epochs=1))
    assert main(["demo", "--models", "lenet300", "--threads", "1", "--skip-pipeline"]) == 0
    out = capsys.readouterr().out
    assert "lenet300" in out and "266,610" in out and "ms@b64" in out


# --- shipped baselines: the same weights on every machine -----------------------------------------------------

def _shipped(arch):
    return baselines_dir() / zoo.baseline_filename(arch, zoo.default_dataset(arch), 0, zoo.BASELINE_RECIPES[arch])


@pytest.mark.parametrize("arch", sorted(zoo.BASELINE_RECIPES))
def test_every_baseline_ships_with_its_recipe(arch):
    model, meta = mp.load_model(_shipped(arch))
    assert meta["recipe"] == asdict(zoo.BASELINE_RECIPES[arch]) and meta["data"] == zoo.default_dataset(arch)
    assert mp.count_params(model) == mp.count_params(mp.build(arch))
    if arch == "chargpt":  # next-character prediction on the documentation topics (103 characters)
        assert meta["test_perplexity"] < 5 and meta["test_bits_per_char"] < 2.5
        assert math.isclose(meta["test_perplexity"], math.exp(meta["test_loss"]))
    else:
        assert meta["test_acc"] > 90


def test_the_language_model_reads_text_and_the_image_models_images():
    assert zoo.default_dataset("chargpt") == "pydoc-text" and zoo.default_dataset("tinyvit") == "mnist-small"
    with pytest.raises(ValueError, match="'tinyvit' reads images; it has no baseline on 'pydoc-text'"):
        mp.pretrained("tinyvit", "pydoc-text")
    with pytest.raises(ValueError, match="unknown data set"):
        mp.pretrained("chargpt", "wikitext")


def test_the_shipped_language_model_writes_english_like_text():
    model = mp.pretrained("chargpt", progress=False)
    text = mp.load("pydoc-text")
    out = text.decode(model.generate(text.encode("The ")[None], 80, temperature=0)[0])
    words = out.split()
    assert out.startswith("The ") and len(words) >= 8
    assert sum(w.strip(".,:;()'\"").isalpha() for w in words) >= len(words) // 2


def test_pretrained_loads_the_shipped_file_and_trains_nothing(monkeypatch, capsys):
    monkeypatch.setattr(zoo, "train_baseline", lambda *a, **k: pytest.fail("a shipped baseline was retrained"))
    model = mp.pretrained("lenet5", progress=False)
    shipped, meta = mp.load_model(_shipped("lenet5"))
    assert all(torch.equal(shipped.state_dict()[k], v) for k, v in model.state_dict().items())
    assert model.baseline_meta == meta and capsys.readouterr().out == ""


def test_shift_trained_teacher_ships(monkeypatch):
    monkeypatch.setattr(shift_teacher, "train_shift_teacher", lambda *a, **k: pytest.fail("the teacher was retrained"))
    teacher = shift_teacher.shift_trained_teacher()
    name = shift_teacher.shift_teacher_filename("lenet5", "mnist-small", epochs=15, max_shift=2, seed=0)
    assert all(torch.equal(mp.load_model(baselines_dir() / name)[0].state_dict()[k], v)
               for k, v in teacher.state_dict().items())


def test_a_baseline_with_no_shipped_file_is_trained_and_says_so(monkeypatch, capsys):
    monkeypatch.setitem(zoo.BASELINE_RECIPES, "lenet300", zoo.Recipe(epochs=1, lr=2e-3))
    mp.pretrained("lenet300", progress=False)
    assert "no shipped file" in capsys.readouterr().out
    mp.pretrained("lenet300", progress=False)  # now cached: loaded silently
    assert capsys.readouterr().out == ""


def test_retrain_writes_the_cache_never_the_shipped_file(monkeypatch):
    before = _shipped("lenet300").read_bytes()
    monkeypatch.setattr(zoo, "train_baseline", lambda arch, *a, **k: (mp.build(arch), {"test_acc": 0.0}))
    mp.pretrained("lenet300", retrain=True, progress=False)
    assert _shipped("lenet300").read_bytes() == before
    assert zoo._cache_file("lenet300", "mnist-small", 0, zoo.BASELINE_RECIPES["lenet300"]).exists()


def test_a_damaged_shipped_file_is_an_error(monkeypatch, tmp_path):
    (tmp_path / _shipped("lenet5").name).write_bytes(b"not a model")
    monkeypatch.setattr(zoo, "baselines_dir", lambda: tmp_path)
    with pytest.raises(mp.CheckpointError, match="not a readable"):
        mp.pretrained("lenet5", progress=False)


def _has_avx2() -> bool:
    try:
        return " avx2 " in f" {Path('/proc/cpuinfo').read_text().split('flags', 1)[1].splitlines()[0]} "
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not _has_avx2(), reason="the reference kernels are x86-64 AVX2")
def test_the_reference_kernels_reproduce_the_shipped_file_bit_for_bit(tmp_path):
    """`make baselines` on any AVX2 x86-64 CPU writes exactly the shipped tensors (LeNet-300-100 checked here)."""
    script = ("import torch; from minprune import zoo; from minprune.checkpoint import tensors_sha256; "
              "torch.set_num_threads(2); print(torch.backends.cpu.get_cpu_capability()); "
              "m, _ = zoo.train_baseline('lenet300', progress=False); print(tensors_sha256(m.state_dict()))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
           "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout.split()
    assert out == ["AVX2", tensors_sha256(mp.checkpoint.read_checkpoint(_shipped("lenet300"))["state_dict"])]
